//! The training engine as stages use it: resume bookkeeping in `metrics.jsonl`, and every step and
//! evaluation logged and passed on to the observer.

use crate::PipelineError;
use crate::context::StageContext;
use crate::events::Event;
use serde_json::json;
use slmc_recipe::TrainParams;
use slmc_train::{TrainData, TrainOptions, train};
use std::path::PathBuf;

/// The stage's checkpoint directory. When it holds a checkpoint, the run resumes from it and the
/// lines the interrupted run logged after that step are dropped from `metrics.jsonl`.
pub(crate) fn checkpoint_dir(ctx: &StageContext<'_>) -> Result<PathBuf, PipelineError> {
    let ckpt = ctx.sdir.join("checkpoints");
    if let Some((step, _)) = slmc_train::checkpoint::list(&ckpt).pop() {
        ctx.metrics.truncate_stage_after(ctx.index, step)?;
    }
    Ok(ckpt)
}

/// Training options of a stage with recipe parameters `params`; `keep_masks` (from an earlier
/// prune stage) hold pruned weights at zero.
pub(crate) fn options<'a, 'c: 'a>(
    params: &'a TrainParams,
    keep_masks: &'a [(String, Vec<bool>)],
    ctx: &StageContext<'c>,
) -> Result<TrainOptions<'a>, PipelineError> {
    Ok(TrainOptions {
        params,
        seed: ctx.seed(),
        checkpoint_dir: checkpoint_dir(ctx)?,
        interrupt: ctx.options.interrupt,
        kill_after: None,
        keep_masks: (!keep_masks.is_empty()).then_some(keep_masks),
    })
}

/// Runs the training engine, writing its steps and evaluations to `metrics.jsonl` and passing
/// every event to the observer.
pub(crate) fn train_logged<M: slmc_train::TrainModel>(
    model: M,
    data: &TrainData,
    opts: &TrainOptions<'_>,
    objective: &mut dyn slmc_train::StepLoss<M>,
    ctx: &mut StageContext<'_>,
) -> Result<M, PipelineError> {
    let index = ctx.index;
    let metrics = ctx.metrics;
    let observer = &mut *ctx.observer;
    let mut write_err = None;
    let model = train(model, data, opts, objective, &mut |e| {
        let line = match e {
            slmc_train::Event::Step { step, loss, lr, grad_norm, tokens_seen, tokens_per_s, .. } => {
                Some(json!({
                "event": "step", "stage": index, "step": step, "loss": loss, "lr": lr, "grad_norm": grad_norm,
                "tokens_seen": tokens_seen, "tokens_per_s": tokens_per_s}))
            }
            slmc_train::Event::Eval { step, loss } => {
                Some(json!({"event": "eval", "stage": index, "step": step, "loss": loss, "ppl": loss.exp()}))
            }
            _ => None,
        };
        if let Some(l) = line
            && let Err(err) = metrics.write(&l)
        {
            write_err = Some(err);
        }
        observer.event(&Event::Train(e.clone()));
    })?;
    if let Some(e) = write_err {
        return Err(e);
    }
    Ok(model)
}
