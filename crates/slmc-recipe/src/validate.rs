//! Node tree → [`Recipe`], collecting every problem.

use crate::diag::{Diagnostic, Diagnostics};
use crate::reader::TableReader;
use crate::schema::*;
use crate::suggest::did_you_mean;
use crate::tree::{Node, Value};
use slmc_config::FloatDtype;
use std::path::PathBuf;

/// Validates a parsed recipe document into a [`Recipe`]; every problem goes to `d`.
pub fn recipe(root: &Node, d: &mut Diagnostics) -> Option<Recipe> {
    let mut r = TableReader::new(root, "the recipe", d)?;
    let name = match r.string("name", d) {
        Some((n, _)) if valid_name(&n) => n,
        Some((n, origin)) => {
            d.push(Diagnostic::new(
                format!("`name` must be a non-empty file-name-safe word (letters, digits, - _ .), got `{n}`"),
                origin,
            ));
            String::new()
        }
        None => {
            if r.node("name").is_none() {
                r.missing("name", d);
            }
            String::new()
        }
    };
    let seed = r.uint("seed", d).map_or(0, |(s, _)| s as u64);
    let memory_budget =
        r.string("memory-budget", d).and_then(|(s, origin)| match crate::plan::parse_bytes(&s) {
            Ok(b) => Some(b),
            Err(e) => {
                d.push(Diagnostic::new(format!("`memory-budget`: {e}"), origin));
                None
            }
        });
    let run_dir = r.string("run-dir", d).map(|(s, _)| PathBuf::from(s));
    let (model, adapter) = match r.node("model") {
        Some(n) => model_source(n, "[model]", d),
        None => {
            r.missing("model", d);
            (None, None)
        }
    };
    let teacher = r.node("teacher").and_then(|n| {
        let (teacher, adapter) = model_source(n, "[teacher]", d);
        if let Some(a) = adapter {
            d.push(Diagnostic::new(
                "`adapter` is read in [model] only; merge a teacher's adapter with `slmc export DIR --adapter ADIR` first",
                a.origin,
            ));
        }
        teacher
    });
    let data = r.node("data").and_then(|n| data_spec(n, d));
    let stages = match r.node("stage") {
        Some(Node { value: Value::Array(items), .. }) => {
            items.iter().enumerate().filter_map(|(i, n)| stage(n, i, d)).collect()
        }
        Some(n) => {
            d.push(Diagnostic::new(
                format!("`stage` must be an array of tables ([[stage]]), found {}", n.type_name()),
                n.origin.clone(),
            ));
            vec![]
        }
        None => vec![],
    };
    let export = r.node("export").and_then(|n| export_spec(n, d));
    let gates = r.node("gates").and_then(|n| gates(n, d)).unwrap_or_default();
    r.finish(d);
    let recipe = Recipe {
        name,
        seed,
        run_dir,
        model: model?,
        adapter,
        teacher,
        data,
        stages,
        export,
        gates,
        memory_budget,
    };
    cross_checks(&recipe, root, d);
    Some(recipe)
}

fn valid_name(n: &str) -> bool {
    !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) && !n.starts_with('.')
}

/// A model table and its `adapter` key.
fn model_source(n: &Node, what: &str, d: &mut Diagnostics) -> (Option<ModelSource>, Option<AdapterSource>) {
    let Some(mut r) = TableReader::new(n, what, d) else { return (None, None) };
    let adapter = r.string("adapter", d).map(|(p, origin)| AdapterSource { path: PathBuf::from(p), origin });
    (model_table(r, n, what, d), adapter)
}

fn model_table(mut r: TableReader<'_>, n: &Node, what: &str, d: &mut Diagnostics) -> Option<ModelSource> {
    let path = r.string("path", d);
    let config = r.node("config");
    let tokenizer = r.string("tokenizer", d);
    r.finish(d);
    match (path, config) {
        (Some((p, origin)), None) => Some(ModelSource::Path { path: PathBuf::from(p), origin }),
        (None, Some(c)) => {
            if c.entries().is_none() {
                d.push(Diagnostic::new(
                    format!("`config` in {what} must be a table of config.json keys"),
                    c.origin.clone(),
                ));
                return None;
            }
            let config = c.to_json();
            if let Err(e) = slmc_config::ModelConfig::from_json_str(&config.to_string(), "config") {
                let msg = e.to_string();
                d.push(Diagnostic::new(
                    format!("{what} config: {}", msg.trim_start_matches("config: ")),
                    c.origin.clone(),
                ));
            }
            let Some((tok, _)) = tokenizer else {
                d.push(Diagnostic::new(
                    format!(
                        "{what} builds a model from `config` and needs `tokenizer` (a tokenizer.json path)"
                    ),
                    n.origin.clone(),
                ));
                return None;
            };
            Some(ModelSource::Config { config, tokenizer: PathBuf::from(tok), origin: c.origin.clone() })
        }
        (Some((_, origin)), Some(_)) => {
            d.push(Diagnostic::new(format!("{what} takes either `path` or `config`, not both"), origin));
            None
        }
        (None, None) => {
            d.push(Diagnostic::new(
                format!(
                    "{what} needs `path` (a Hugging Face directory) or `config` (a table of config.json keys)"
                ),
                n.origin.clone(),
            ));
            None
        }
    }
}

fn sources(n: &Node, key: &str, d: &mut Diagnostics) -> Vec<SourceSpec> {
    let one = |n: &Node, d: &mut Diagnostics| -> Option<SourceSpec> {
        match &n.value {
            Value::Str(s) => Some(SourceSpec {
                path: s.clone(),
                text_column: "text".into(),
                ids_column: "input_ids".into(),
                origin: n.origin.clone(),
            }),
            Value::Table(_) => {
                let mut r = TableReader::new(n, format!("[data] {key}"), d)?;
                let path = r.string("path", d);
                let text_column = r.string("text-column", d).map_or("text".into(), |s| s.0);
                let ids_column = r.string("ids-column", d).map_or("input_ids".into(), |s| s.0);
                if path.is_none() && r.node("path").is_none() {
                    r.missing("path", d);
                }
                r.finish(d);
                Some(SourceSpec { path: path?.0, text_column, ids_column, origin: n.origin.clone() })
            }
            _ => {
                d.push(Diagnostic::new(
                    format!("`{key}` in [data] must be a path, a {{ path = … }} table or a list of them"),
                    n.origin.clone(),
                ));
                None
            }
        }
    };
    match &n.value {
        Value::Array(items) => items.iter().filter_map(|i| one(i, d)).collect(),
        _ => one(n, d).into_iter().collect(),
    }
}

fn data_spec(n: &Node, d: &mut Diagnostics) -> Option<DataSpec> {
    let mut r = TableReader::new(n, "[data]", d)?;
    let train = r.node("train").map(|t| sources(t, "train", d)).unwrap_or_default();
    let eval = r.node("eval").map(|t| sources(t, "eval", d)).unwrap_or_default();
    let seq_len = r.uint_where("seq-len", 256, "at least 2", |v| v >= 2, d);
    let eval_fraction = r.float_where("eval-fraction", 0.05, "in [0, 0.5]", |v| (0.0..=0.5).contains(&v), d);
    let rows = crate::validate_data::row_spec(&mut r, d);
    r.finish(d);
    Some(DataSpec { train, eval, seq_len, eval_fraction, rows })
}

fn stage(n: &Node, index: usize, d: &mut Diagnostics) -> Option<Stage> {
    let mut r = TableReader::new(n, format!("stage {} ([[stage]] #{})", index, index + 1), d)?;
    let kind = match r.string("kind", d) {
        Some((k, origin)) => match k.as_str() {
            "finetune" => StageKind::Finetune(crate::validate_train::train_params(&mut r, false, d)),
            "distill" => match crate::validate_distill::distill_params(&mut r, d) {
                Some(p) => StageKind::Distill(p),
                None => {
                    r.finish(d);
                    return None;
                }
            },
            "quantize" => StageKind::Quantize(crate::validate_quantize::quantize_params(&mut r, d)),
            "prune" => match crate::validate_prune::prune_params(&mut r, d) {
                Some(p) => StageKind::Prune(p),
                None => {
                    r.finish(d);
                    return None;
                }
            },
            "eval" => StageKind::Eval(crate::validate_eval::eval_params(&mut r, d)),
            other => {
                let mut diag = Diagnostic::new(
                    format!(
                        "unknown stage kind `{other}`; this build implements {}",
                        crate::reader::quoted(&crate::Kind::names())
                    ),
                    origin,
                );
                if let Some(l) = did_you_mean(other, crate::Kind::names()) {
                    diag = diag.with_label(l);
                }
                d.push(diag);
                return None;
            }
        },
        None => {
            if r.node("kind").is_none() {
                let mut diag = Diagnostic::new(format!("missing `kind` in {}", r.what()), r.origin().clone());
                diag = diag
                    .with_label(format!("expected one of {}", crate::reader::quoted(&crate::Kind::names())));
                d.push(diag);
            }
            return None;
        }
    };
    r.finish(d);
    Some(Stage { index, kind, origin: n.origin.clone() })
}

fn selectors(r: &mut TableReader<'_>, key: &'static str, d: &mut Diagnostics) -> Vec<Selector> {
    let Some(n) = r.node(key) else { return Vec::new() };
    let items: Vec<&Node> = match &n.value {
        Value::Array(a) => a.iter().collect(),
        _ => vec![n],
    };
    let mut out = Vec::new();
    for item in items {
        match &item.value {
            Value::Str(s) => {
                if let Some(re) = s.strip_prefix("re:")
                    && let Err(e) = regex_lite::Regex::new(re)
                {
                    d.push(Diagnostic::new(
                        format!("`{key}`: invalid regular expression `{re}`: {e}"),
                        item.origin.clone(),
                    ));
                    continue;
                }
                out.push(Selector { text: s.clone(), origin: item.origin.clone() });
            }
            _ => d.push(Diagnostic::new(
                format!("`{key}` must be a list of module names, globs or \"re:<regex>\" strings"),
                item.origin.clone(),
            )),
        }
    }
    out
}

/// `calibration-samples`, `calibration-len` and `batch-size` of a stage that calibrates.
pub(crate) fn calibration(r: &mut TableReader<'_>, d: &mut Diagnostics) -> CalibrationParams {
    let samples = r.uint_where("calibration-samples", 128, "at least 1", |v| v >= 1, d);
    let len = match r.uint("calibration-len", d) {
        Some((v, origin)) if v < 2 => {
            d.push(Diagnostic::new(
                format!("`calibration-len` in {} must be at least 2, got {v}", r.what()),
                origin,
            ));
            None
        }
        other => other.map(|v| v.0),
    };
    let batch_size = r.uint_where("batch-size", 8, "at least 1", |v| v >= 1, d);
    CalibrationParams { samples, len, batch_size }
}

/// `targets` and `ignore` of a stage that acts on linear modules.
pub(crate) fn selection(r: &mut TableReader<'_>, d: &mut Diagnostics) -> Selection {
    Selection { targets: selectors(r, "targets", d), ignore: selectors(r, "ignore", d) }
}

fn export_spec(n: &Node, d: &mut Diagnostics) -> Option<ExportSpec> {
    let mut r = TableReader::new(n, "[export]", d)?;
    let mut formats = Vec::new();
    if let Some(f) = r.node("formats") {
        let items: Vec<&Node> = match &f.value {
            Value::Array(a) => a.iter().collect(),
            _ => vec![f],
        };
        for item in items {
            match &item.value {
                Value::Str(s) => match ExportFormat::from_name(s) {
                    Some(f) => formats.push(f),
                    None => {
                        let names: Vec<&str> = <ExportFormat as crate::reader::Named>::spellings();
                        let mut diag = Diagnostic::new(
                            format!(
                                "unknown export format `{s}`; slmc writes `{}` and `{}`",
                                names[..names.len() - 1].join("`, `"),
                                names[names.len() - 1]
                            ),
                            item.origin.clone(),
                        );
                        if let Some(l) = did_you_mean(s, names) {
                            diag = diag.with_label(l);
                        }
                        d.push(diag);
                    }
                },
                _ => d.push(Diagnostic::new("export formats must be strings", item.origin.clone())),
            }
        }
    }
    use slmc_gguf::FileType;
    let gguf_type = match r.string("gguf-type", d) {
        None => None,
        Some((s, origin)) => FileType::from_name(&s).or_else(|| {
            let names: Vec<&str> = FileType::all().map(FileType::name).collect();
            let mut diag = Diagnostic::new(
                format!(
                    "`gguf-type` in [export] must be one of {}, got `{s}`",
                    crate::reader::quoted(&names)
                ),
                origin,
            );
            if let Some(l) = did_you_mean(&s, names.iter().copied()) {
                diag = diag.with_label(l);
            }
            d.push(diag);
            None
        }),
    };
    let requantize = r.boolean("requantize", d).is_some_and(|b| b.0);
    let dtype = match r.string("dtype", d) {
        Some((s, origin)) => match FloatDtype::from_name(&s) {
            Some(t) => Some(t),
            None => {
                d.push(Diagnostic::new(
                    format!("`dtype` in [export] must be float32, float16 or bfloat16, got `{s}`"),
                    origin,
                ));
                None
            }
        },
        None => None,
    };
    r.finish(d);
    Some(ExportSpec { formats, dtype, gguf_type, requantize })
}

fn gates(n: &Node, d: &mut Diagnostics) -> Option<Gates> {
    let mut r = TableReader::new(n, "[gates]", d)?;
    let g = Gates {
        max_ppl: r.float("max-ppl", d).map(|v| v.0),
        max_ppl_increase: r.float("max-ppl-increase", d).map(|v| v.0),
    };
    r.finish(d);
    Some(g)
}

/// Checks that need more than one table.
fn cross_checks(r: &Recipe, root: &Node, d: &mut Diagnostics) {
    let distills = r.stages.iter().any(|s| matches!(s.kind, StageKind::Distill(_)));
    if distills && r.teacher.is_none() {
        d.push(Diagnostic::new(
            "a distill stage needs a [teacher] table with the teacher's `path`",
            root.origin.clone(),
        ));
    }
    quantize_export_checks(r, root, d);
    crate::validate_lora::adapter_export_checks(r, root, d);
    crate::validate_prune::mask_checks(r, d);
    crate::validate_data::checks(r, d);
    let data_free = |k: &StageKind| match k {
        StageKind::Quantize(q) => q.method == QuantMethod::Rtn,
        StageKind::Prune(p) => !p.needs_data(),
        _ => false,
    };
    let needs_data = r.stages.iter().any(|s| !data_free(&s.kind))
        || r.gates.max_ppl.is_some()
        || r.gates.max_ppl_increase.is_some();
    let anchor = root.origin.clone();
    match &r.data {
        None if needs_data => d.push(Diagnostic::new(
            "the stages and gates of this recipe need a [data] table with `train` or `eval`",
            anchor,
        )),
        Some(data) => {
            let trains =
                r.stages.iter().any(|s| matches!(s.kind, StageKind::Finetune(_) | StageKind::Distill(_)));
            let calibrates = r
                .stages
                .iter()
                .find(|s| matches!(&s.kind, StageKind::Quantize(q) if q.method == QuantMethod::Gptq));
            if let Some(s) = calibrates
                && data.train.is_empty()
            {
                d.push(Diagnostic::new(
                    "GPTQ draws its calibration windows from `train` in [data]",
                    s.origin.clone(),
                ));
            }
            let prune_calibrates =
                r.stages.iter().find(|s| matches!(&s.kind, StageKind::Prune(p) if p.needs_data()));
            if let Some(s) = prune_calibrates
                && data.train.is_empty()
            {
                d.push(Diagnostic::new(
                    "this prune stage draws its calibration windows from `train` in [data]",
                    s.origin.clone(),
                ));
            }
            if trains && data.train.is_empty() {
                d.push(Diagnostic::new("finetune and distill stages need `train` in [data]", anchor.clone()));
            }
            if needs_data && data.train.is_empty() && data.eval.is_empty() {
                d.push(Diagnostic::new("[data] needs `train` or `eval`", anchor));
            }
        }
        None => {}
    }
}

/// The exports a quantize stage feeds: GGUF must hold its codes as-is (or `requantize`), GPTQ
/// packing needs a quantize stage with 2/4/8-bit codes, and training after quantizing would
/// invalidate the codes.
fn quantize_export_checks(r: &Recipe, root: &Node, d: &mut Diagnostics) {
    use slmc_gguf::FileType;
    let quantizes: Vec<&Stage> =
        r.stages.iter().filter(|s| matches!(s.kind, StageKind::Quantize(_))).collect();
    if let [_, second, ..] = quantizes.as_slice() {
        d.push(Diagnostic::new(
            "a recipe has at most one quantize stage (its codes are what the exports write)",
            second.origin.clone(),
        ));
    }
    let last_q = r.stages.iter().rposition(|s| matches!(s.kind, StageKind::Quantize(_)));
    if let Some(i) = last_q
        && let Some(s) = r.stages[i..]
            .iter()
            .find(|s| matches!(s.kind, StageKind::Finetune(_) | StageKind::Distill(_) | StageKind::Prune(_)))
    {
        let verb = if matches!(s.kind, StageKind::Prune(_)) { "prune" } else { "train" };
        d.push(Diagnostic::new(
            format!("stage {} ({}) would {verb} the quantized weights of stage {i} and lose their codes; quantize last", s.index, s.kind.name()),
            s.origin.clone(),
        ));
    }
    let Some(e) = &r.export else { return };
    let export_node =
        root.entries().and_then(|es| es.iter().find(|e| e.key == "export")).map(|e| e.node.origin.clone());
    let anchor = export_node.unwrap_or_else(|| root.origin.clone());
    let q = r.last_quantize();
    if e.formats.contains(&ExportFormat::Gguf)
        && let Some(q) = q
        && !e.requantize
    {
        let want = FileType::for_uniform_grid(q.bits, q.group_size, q.sym);
        if want.is_none() || want != r.gguf_type() {
            let chosen = match r.gguf_type() {
                Some(t) => format!("GGUF `{}`", t.name()),
                None => "GGUF's default type (f16; bf16 for a bf16 model)".to_string(),
            };
            let fix = match want {
                Some(t) => format!("set `gguf-type = \"{}\"`", t.name()),
                None => "use bits = 4, group-size = 32 (q4_0 when sym, q4_1 when asym) or bits = 8, group-size = 32, sym (q8_0)".into(),
            };
            d.push(Diagnostic::new(
                format!(
                    "{} cannot hold the {} codes of the quantize stage as-is; {fix}, or set `requantize = true` in [export] to let llama.cpp's quantizer redo them",
                    chosen,
                    q.grid_name()
                ),
                anchor.clone(),
            ));
        }
    }
    if e.formats.contains(&ExportFormat::Gptq) {
        match q {
            None => d.push(Diagnostic::new("the `gptq` export format writes a quantize stage's codes; add a [[stage]] with kind = \"quantize\"", anchor.clone())),
            Some(q) if q.bits == 3 => d.push(Diagnostic::new("the `gptq` export packs 2-, 4- or 8-bit codes (3-bit codes straddle 32-bit words)", anchor.clone())),
            Some(_) => {}
        }
    }
}
