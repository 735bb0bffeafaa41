//! `method` of a training stage and, for `lora` / `dora` / `qlora`, the adapter keys.

use crate::diag::{Diagnostic, Diagnostics};
use crate::reader::{Named, TableReader};
use crate::schema_lora::*;
use crate::tree::Value;
use crate::validate::selection;

/// The training methods a finetune or distill stage can name.
/// `method = "full"`: every parameter trains (the adapters' names are [`AdapterKind`]'s).
pub const FULL_METHOD: &str = "full";

/// Modules `modules-to-save` may name: trained in full, saved with the adapter.
const SAVABLE: &[&str] = &["lm_head", "embed_tokens"];

/// Reads `method` and the adapter keys; `None` for full training.
/// In a distill stage (`distill`), `alpha` and `init` are spelled `lora-alpha` and `lora-init`.
pub(crate) fn adapter_params(
    r: &mut TableReader<'_>,
    distill: bool,
    d: &mut Diagnostics,
) -> Option<AdapterParams> {
    let (alpha_key, init_key) = if distill { ("lora-alpha", "lora-init") } else { ("alpha", "init") };
    let methods: Vec<&'static str> =
        std::iter::once(FULL_METHOD).chain(AdapterKind::NAMES.iter().map(|(_, n)| *n)).collect();
    let chosen = r.choice("method", &methods, d).map(|c| c.0);
    let kind = match AdapterKind::NAMES.iter().find(|(_, n)| Some(*n) == chosen) {
        Some((k, _)) => *k,
        None => {
            for key in ["r", alpha_key, "dropout", "rslora", init_key, "targets", "ignore", "modules-to-save"]
            {
                if let Some(n) = r.node(key) {
                    d.push(Diagnostic::new(
                        format!(
                            "`{key}` in {} is an adapter setting; set `method = \"lora\"`, \"dora\" or \"qlora\" to use it",
                            r.what()
                        ),
                        n.origin.clone(),
                    ));
                }
            }
            return None;
        }
    };
    let r_rank = r.uint_where("r", 8, "at least 1", |v| v >= 1, d);
    let alpha = r.float_where(alpha_key, r_rank as f64, "> 0", |v| v > 0.0, d);
    let dropout = r.float_where("dropout", 0.0, "in [0, 1)", |v| (0.0..1.0).contains(&v), d);
    let rslora = r.boolean("rslora", d).is_some_and(|b| b.0);
    let init = r.named::<AdapterInit>(init_key, d).map_or(AdapterInit::Default, |v| v.0);
    let select = selection(r, d);
    let targets = match select.targets.as_slice() {
        [one] if one.text == "all-linear" => {
            AdapterTargets::AllLinear(crate::schema::Selection { targets: Vec::new(), ignore: select.ignore })
        }
        [] if select.ignore.is_empty() => AdapterTargets::Default,
        [] => {
            d.push(Diagnostic::new(
                format!(
                    "`ignore` in {} needs `targets` (e.g. `targets = \"all-linear\"`) to subtract from",
                    r.what()
                ),
                select.ignore[0].origin.clone(),
            ));
            AdapterTargets::Default
        }
        _ => AdapterTargets::Selected(select),
    };
    let mut modules_to_save = Vec::new();
    if let Some(n) = r.node("modules-to-save") {
        let items: Vec<_> = match &n.value {
            Value::Array(a) => a.iter().collect(),
            _ => vec![n],
        };
        for item in items {
            match &item.value {
                Value::Str(s) if SAVABLE.contains(&s.trim_start_matches("model.")) => {
                    modules_to_save.push(s.clone())
                }
                _ => {
                    let mut diag = Diagnostic::new(
                        format!("`modules-to-save` entries must be {}", crate::reader::quoted(SAVABLE)),
                        item.origin.clone(),
                    );
                    if let Value::Str(s) = &item.value
                        && let Some(l) = crate::suggest::did_you_mean(s, SAVABLE.iter().copied())
                    {
                        diag = diag.with_label(l);
                    }
                    d.push(diag);
                }
            }
        }
    }
    Some(AdapterParams { kind, r: r_rank, alpha, dropout, rslora, init, targets, modules_to_save })
}

/// Whether a stage keeps the adapters it receives: eval stages and adapter training do; every
/// other stage merges them into the weights first.
fn keeps_adapters(kind: &crate::schema::StageKind) -> bool {
    use crate::schema::StageKind;
    match kind {
        StageKind::Eval(_) => true,
        StageKind::Finetune(t) => t.adapter.is_some(),
        StageKind::Distill(p) => p.train.adapter.is_some(),
        StageKind::Quantize(_) | StageKind::Prune(_) => false,
    }
}

/// The `peft` and `gguf-lora` exports write adapters: the recipe must end with adapters
/// (a LoRA stage or `[model] adapter`, and no merging stage after it).
pub(crate) fn adapter_export_checks(
    r: &crate::schema::Recipe,
    root: &crate::tree::Node,
    d: &mut Diagnostics,
) {
    let Some(e) = &r.export else { return };
    let wants: Vec<&str> = e.formats.iter().filter(|f| f.is_adapter()).map(|f| f.name()).collect();
    if wants.is_empty() {
        return;
    }
    let anchor = root
        .entries()
        .and_then(|es| es.iter().find(|e| e.key == "export"))
        .map_or_else(|| root.origin.clone(), |e| e.node.origin.clone());
    let last_adapter = r.stages.iter().rposition(|s| match &s.kind {
        crate::schema::StageKind::Finetune(t) => t.adapter.is_some(),
        crate::schema::StageKind::Distill(p) => p.train.adapter.is_some(),
        _ => false,
    });
    let from = match (last_adapter, &r.adapter) {
        (Some(i), _) => i + 1,
        (None, Some(_)) => 0,
        (None, None) => {
            d.push(Diagnostic::new(
                format!(
                    "the `{}` export writes LoRA adapters; add a stage with `method = \"lora\"` (or dora/qlora) or `adapter` in [model]",
                    wants[0]
                ),
                anchor,
            ));
            return;
        }
    };
    if let Some(s) = r.stages[from..].iter().find(|s| !keeps_adapters(&s.kind)) {
        d.push(Diagnostic::new(
            format!(
                "stage {} ({}) merges the adapters into the weights, so there is no adapter left for the `{}` export; export the merged model (`safetensors`, `gguf`) or move the stage",
                s.index,
                s.kind.name(),
                wants[0]
            ),
            s.origin.clone(),
        ));
    }
}
