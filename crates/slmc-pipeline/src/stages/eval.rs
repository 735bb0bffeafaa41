//! The eval stage: perplexity of the current model on the held-out stream.

use super::StageOutcome;
use crate::PipelineError;
use crate::context::StageContext;
use crate::evaluation::eval_model;
use crate::state::State;
use serde_json::json;
use slmc_recipe::EvalParams;

/// Measures perplexity; the state passes through unchanged.
pub(crate) fn run(
    state: State,
    e: &EvalParams,
    ctx: &mut StageContext<'_>,
) -> Result<StageOutcome, PipelineError> {
    let r = eval_model(&state.model, ctx.data()?, e, ctx.observer)?;
    ctx.metrics.write(
        &json!({"event": "eval", "stage": ctx.index, "loss": r.mean_nll, "ppl": r.ppl, "tokens": r.tokens}),
    )?;
    let summary = format!("stage {}: eval, perplexity {:.3} over {} tokens", ctx.index, r.ppl, r.tokens);
    Ok(StageOutcome { state, changed: false, summary, record: r.to_json(), eval: Some(r) })
}
