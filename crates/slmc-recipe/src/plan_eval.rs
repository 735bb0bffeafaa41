//! The plan of an eval stage: one window's forward at its widest and its logits.

use crate::plan::*;
use crate::schema::*;

/// Plans eval stage `e`.
pub(crate) fn plan(e: &EvalParams, at: &PlanInput<'_>) -> KindPlan {
    let (model, seq) = (at.model, at.seq);
    let (weights, vocab) = (4 * model.num_params() as u64, model.vocab_size as u64);
    let ctx = e.ctx.unwrap_or(seq);
    // One window's forward at its widest, and its logits with their log-softmax.
    let acts = 4 * ctx as u64 * (forward_values_per_token(model, ctx) + 2 * vocab);
    let rows = at.recipe.data.as_ref().is_some_and(|d| d.rows.is_rows());
    let summary = if rows {
        format!("eval: perplexity over the trained tokens of the held-out rows (seq-len {seq})")
    } else {
        format!("eval: perplexity, window {ctx}, stride {}", e.stride.unwrap_or((ctx / 2).max(1)))
    };
    let memory = Memory { weights, activations: acts, ..Default::default() };
    KindPlan { summary, touched: (0, 0), memory, modules: None, model: None, problems: Vec::new() }
}
