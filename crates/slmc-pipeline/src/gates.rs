//! The recipe's `[gates]`: checks on the final model that make `slmc run` exit 3 when they fail.

use crate::evaluation::{EvalResult, FULL_STREAM};
use slmc_recipe::{EvalParams, Gates, Stage, StageKind};

/// Whether the recipe has a gate (then the final model must be evaluated).
pub(crate) fn any(g: &Gates) -> bool {
    g.max_ppl.is_some() || g.max_ppl_increase.is_some()
}

/// Each gate's description and whether it passed, for the final model's perplexity `fe` and the
/// input model's `baseline`.
pub(crate) fn check(g: &Gates, fe: EvalResult, baseline: Option<EvalResult>) -> Vec<(String, bool)> {
    let mut gates = Vec::new();
    if let Some(max) = g.max_ppl {
        gates.push((format!("perplexity {:.3} ≤ max-ppl {max}", fe.ppl), fe.ppl <= max));
    }
    if let (Some(max_inc), Some(b)) = (g.max_ppl_increase, baseline) {
        let inc = fe.ppl / b.ppl - 1.0;
        gates.push((
            format!(
                "perplexity {:.3} vs input {:.3}: {:+.2}% (max-ppl-increase {:+.2}%)",
                fe.ppl,
                b.ppl,
                inc * 100.0,
                max_inc * 100.0
            ),
            inc <= max_inc,
        ));
    }
    gates
}

/// The protocol the gated perplexity is measured with: that of the last eval stage when no stage
/// that changes the model follows it (its result is the final perplexity), else the whole
/// held-out stream. The input model's baseline is measured the same way, so a gate compares the
/// same tokens.
pub(crate) fn protocol(stages: &[&Stage]) -> EvalParams {
    let mut last = None;
    for s in stages {
        last = match &s.kind {
            StageKind::Eval(e) => Some(e.clone()),
            _ => None,
        };
    }
    last.unwrap_or(FULL_STREAM)
}
