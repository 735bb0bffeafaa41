//! `kind = "prune"` stages: the keys each `method` takes, checked with every problem reported.

use crate::diag::{Diagnostic, Diagnostics};
use crate::reader::TableReader;
use crate::schema::*;
use crate::schema_prune::*;
use crate::validate::{calibration, selection};
use slmc_config::prune_shape::{TargetSizes, Targets};

/// The prune methods a recipe can name.
pub const PRUNE_METHODS: &[&str] = &["magnitude", "wanda", "sparsegpt", "width", "depth"];

/// Reads a prune stage's keys (after `kind`); `None` when `method` is missing or unknown.
pub(crate) fn prune_params(r: &mut TableReader<'_>, d: &mut Diagnostics) -> Option<PruneParams> {
    let Some((method, _)) = r.choice("method", PRUNE_METHODS, d) else {
        if r.node("method").is_none() {
            r.missing("method", d);
        }
        return None;
    };
    let method = match method {
        "width" => PruneMethod::Width { targets: width_targets(r, d), importance: importance(r, d) },
        "depth" => {
            let layers = r.uint_where("num-hidden-layers", 1, "at least 1", |v| v >= 1, d);
            let layers = r.node("num-hidden-layers").map(|_| layers);
            let targets = match (layers, keep_fraction(r, d)) {
                (Some(l), None) => {
                    Targets::Sizes(TargetSizes { num_hidden_layers: Some(l), ..Default::default() })
                }
                (None, Some(k)) => Targets::KeepDepth(k),
                _ => {
                    d.push(Diagnostic::new(
                        format!(
                            "{} (method = \"depth\") needs exactly one of `num-hidden-layers` or `keep`",
                            r.what()
                        ),
                        r.origin().clone(),
                    ));
                    Targets::KeepDepth(0.5)
                }
            };
            PruneMethod::Depth { targets, importance: importance(r, d) }
        }
        algorithm => {
            let sparsity = sparsity_target(r, d);
            let algorithm = match algorithm {
                "magnitude" => MaskAlgorithm::Magnitude(magnitude_scope(r, sparsity, d)),
                "wanda" => MaskAlgorithm::Wanda,
                _ => MaskAlgorithm::SparseGpt,
            };
            let owl = owl(r, d);
            if owl.is_some() && matches!(sparsity, SparsityTarget::NofM { .. }) {
                d.push(Diagnostic::new(
                    format!(
                        "`owl` in {} sets per-layer ratios; it cannot be combined with a `pattern`",
                        r.what()
                    ),
                    r.origin().clone(),
                ));
            }
            let damp = r.float_where("damp", 0.01, "in (0, 1)", |v| v > 0.0 && v < 1.0, d);
            let block_size =
                r.uint_where("block-size", 128, "a positive multiple of 8", |b| b > 0 && b % 8 == 0, d);
            PruneMethod::Unstructured { algorithm, sparsity, owl, damp, block_size, select: selection(r, d) }
        }
    };
    Some(PruneParams { method, calibration: calibration(r, d) })
}

/// `sparsity = 0.5` or `pattern = "2:4"` (exactly one).
fn sparsity_target(r: &mut TableReader<'_>, d: &mut Diagnostics) -> SparsityTarget {
    let ratio = r.float("sparsity", d);
    let pattern = r.string("pattern", d);
    match (ratio, pattern) {
        (Some((v, _)), None) if v > 0.0 && v <= 0.95 => SparsityTarget::Ratio(v),
        (Some((v, origin)), None) => {
            d.push(Diagnostic::new(
                format!("`sparsity` in {} must be in (0, 0.95], got {v}", r.what()),
                origin,
            ));
            SparsityTarget::Ratio(0.5)
        }
        (None, Some((p, origin))) => match p.as_str() {
            "2:4" => SparsityTarget::NofM { n: 2, m: 4 },
            "4:8" => SparsityTarget::NofM { n: 4, m: 8 },
            _ => {
                let mut diag = Diagnostic::new(
                    format!("`pattern` in {} must be \"2:4\" or \"4:8\" (kept:group), got `{p}`", r.what()),
                    origin,
                );
                if let Some(l) = crate::suggest::did_you_mean(&p, ["2:4", "4:8"]) {
                    diag = diag.with_label(l);
                }
                d.push(diag);
                SparsityTarget::NofM { n: 2, m: 4 }
            }
        },
        (Some(_), Some((_, origin))) => {
            d.push(Diagnostic::new(
                format!(
                    "{} sets both `sparsity` and `pattern`; an N:M pattern fixes the sparsity, keep one",
                    r.what()
                ),
                origin,
            ));
            SparsityTarget::NofM { n: 2, m: 4 }
        }
        (None, None) => {
            d.push(Diagnostic::new(
                format!(
                    "{} needs `sparsity` (a fraction, e.g. 0.5) or `pattern` (\"2:4\" or \"4:8\")",
                    r.what()
                ),
                r.origin().clone(),
            ));
            SparsityTarget::Ratio(0.5)
        }
    }
}

/// `scope = "row" | "layer"` of a magnitude stage with a `sparsity` ratio (an N:M pattern is per
/// row by definition, so it takes no scope).
fn magnitude_scope(r: &mut TableReader<'_>, sparsity: SparsityTarget, d: &mut Diagnostics) -> MagnitudeScope {
    let scope = r.named::<MagnitudeScope>("scope", d);
    if let (Some((_, origin)), SparsityTarget::NofM { .. }) = (&scope, sparsity) {
        d.push(Diagnostic::new(
            format!(
                "`scope` in {} chooses where a `sparsity` ratio applies; a `pattern` is per row",
                r.what()
            ),
            origin.clone(),
        ));
    }
    scope.map_or(MagnitudeScope::Row, |s| s.0)
}

/// `owl = { lambda = 0.08, m = 5 }`.
fn owl(r: &mut TableReader<'_>, d: &mut Diagnostics) -> Option<Owl> {
    let n = r.node("owl")?;
    let mut t = TableReader::new(n, format!("`owl` of {}", r.what()), d)?;
    let lambda = t.float_where("lambda", 0.08, "in (0, 0.5)", |v| v > 0.0 && v < 0.5, d);
    let m = t.float_where("m", 5.0, "> 1", |v| v > 1.0, d);
    t.finish(d);
    Some(Owl { lambda, m })
}

/// `importance = "activation" | "magnitude"`.
fn importance(r: &mut TableReader<'_>, d: &mut Diagnostics) -> ImportanceSource {
    r.named::<ImportanceSource>("importance", d).map_or(ImportanceSource::Activation, |v| v.0)
}

/// `keep` (a fraction of parameters or layers, in (0, 1)).
fn keep_fraction(r: &mut TableReader<'_>, d: &mut Diagnostics) -> Option<f64> {
    let present = r.node("keep").is_some();
    let v = r.float_where("keep", 0.5, "in (0, 1)", |v| v > 0.0 && v < 1.0, d);
    present.then_some(v)
}

/// The sizes a width prune reaches: explicit config sizes or `keep`, not both.
fn width_targets(r: &mut TableReader<'_>, d: &mut Diagnostics) -> Targets {
    let mut size = |key: &'static str, d: &mut Diagnostics| {
        let present = r.node(key).is_some();
        let v = r.uint_where(key, 1, "at least 1", |v| v >= 1, d);
        present.then_some(v)
    };
    let num_attention_heads = size("num-attention-heads", d);
    let num_key_value_heads = size("num-key-value-heads", d);
    let intermediate_size = size("intermediate-size", d);
    let hidden_size = size("hidden-size", d);
    let sizes = TargetSizes {
        num_attention_heads,
        num_key_value_heads,
        intermediate_size,
        hidden_size,
        num_hidden_layers: None,
    };
    let keep = keep_fraction(r, d);
    let explicit = sizes != TargetSizes::default();
    if explicit == keep.is_some() {
        d.push(Diagnostic::new(
            format!(
                "{} (method = \"width\") needs `keep` (a fraction of parameters) or target sizes (`num-attention-heads`, `num-key-value-heads`, `intermediate-size`, `hidden-size`), not both",
                r.what()
            ),
            r.origin().clone(),
        ));
    }
    keep.map_or(Targets::Sizes(sizes), Targets::KeepWidth)
}

/// Rules for the stages around an unstructured prune stage: one per recipe (its masks are the
/// records later stages keep), no structural change after it (the masks would no longer fit), and
/// a distill stage after it must train the pruned model itself (`init = "current"`).
pub(crate) fn mask_checks(r: &Recipe, d: &mut Diagnostics) {
    let masked: Vec<&Stage> =
        r.stages.iter().filter(|s| matches!(&s.kind, StageKind::Prune(p) if p.is_unstructured())).collect();
    if let [_, second, ..] = masked.as_slice() {
        d.push(Diagnostic::new(
            "a recipe has at most one unstructured prune stage (its masks are what later stages keep)",
            second.origin.clone(),
        ));
    }
    let Some(first) = masked.first() else { return };
    for s in r.stages.iter().filter(|s| s.index > first.index) {
        match &s.kind {
            StageKind::Prune(p) if !p.is_unstructured() => d.push(Diagnostic::new(
                format!(
                    "stage {} removes heads, channels or layers after the unstructured prune of stage {}, whose masks would no longer fit; prune structurally first",
                    s.index, first.index
                ),
                s.origin.clone(),
            )),
            StageKind::Distill(dp) if dp.init != StudentInit::Current => d.push(Diagnostic::new(
                format!(
                    "stage {} builds a new student, dropping the pruned model of stage {}; use init = \"current\" to distill into it (its zeros are kept)",
                    s.index, first.index
                ),
                s.origin.clone(),
            )),
            _ => {}
        }
    }
}
