//! One module per stage kind. Each takes the state the previous stage left (model + records) and
//! the run's [`StageContext`], and returns the new state with its result.

mod adapters;
mod calibration;
mod distill;
mod eval;
mod finetune;
mod prune;
mod prune_structured;
mod quantize;
mod training;

use crate::PipelineError;
use crate::context::StageContext;
use crate::evaluation::EvalResult;
use crate::state::State;
use slmc_recipe::StageKind;

/// What a stage did.
pub(crate) struct StageOutcome {
    /// The state for the next stage.
    pub state: State,
    /// Whether the model or records changed (the runner saves the state into the stage directory).
    pub changed: bool,
    /// One-line result.
    pub summary: String,
    /// Details for `done.json` (the summary is added).
    pub record: serde_json::Value,
    /// A perplexity measured on the stage's output, if any.
    pub eval: Option<EvalResult>,
}

/// Runs one stage.
pub(crate) fn run(
    kind: &StageKind,
    state: State,
    ctx: &mut StageContext<'_>,
) -> Result<StageOutcome, PipelineError> {
    match kind {
        StageKind::Finetune(p) => finetune::run(state, p, ctx),
        StageKind::Distill(p) => distill::run(state, p, ctx),
        StageKind::Quantize(p) => {
            let model = adapters::merge_for(state.model, ctx, "quantizing");
            quantize::run(State { model, ..state }, p, ctx)
        }
        StageKind::Eval(p) => eval::run(state, p, ctx),
        StageKind::Prune(p) => {
            let model = adapters::merge_for(state.model, ctx, "pruning");
            prune::run(State { model, ..state }, p, ctx)
        }
    }
}

/// The number of optimizer steps of a kind that trains (for progress bars).
pub(crate) fn steps(kind: &StageKind) -> Option<usize> {
    match kind {
        StageKind::Finetune(p) => Some(p.steps),
        StageKind::Distill(p) => Some(p.train.steps),
        StageKind::Quantize(_) | StageKind::Eval(_) | StageKind::Prune(_) => None,
    }
}
