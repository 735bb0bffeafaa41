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
    let data = ctx.data()?;
    // The evaluation's own peak (resident model, one window's activations), apart from loading.
    crate::memory::reset_peak_rss();
    let r = eval_model(&state.model, data, e, ctx.observer)?;
    let peak_rss = crate::memory::peak_rss_bytes();
    ctx.metrics.log(&crate::metrics::MetricLine::Eval {
        stage: ctx.index,
        step: None,
        loss: r.mean_nll,
        ppl: r.ppl,
        tokens: Some(r.tokens),
    })?;
    let summary = format!("stage {}: eval, perplexity {:.3} over {} tokens", ctx.index, r.ppl, r.tokens);
    let mut record = r.to_json();
    if let Some(m) = record.as_object_mut() {
        m.insert("peak_rss_bytes".into(), json!(peak_rss));
    }
    Ok(StageOutcome { state, changed: false, summary, record, eval: Some(r) })
}
