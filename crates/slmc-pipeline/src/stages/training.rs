//! The training engine as stages use it: every step and
//! evaluation logged and passed on to the observer.

use crate::PipelineError;
use crate::context::StageContext;
use crate::events::Event;
use crate::metrics::MetricLine;
use burn::tensor::DType;
use serde_json::json;
use slmc_model::CausalLm;
use slmc_model::model::cast_parameters;
use slmc_recipe::{Precision, TrainParams};
use slmc_train::{TrainData, TrainOptions, train};

/// The model as a stage with `precision` trains it: `bf16-mixed` computes activations in bf16
/// over the f32 master weights (AdamW state f32, norms/softmax/losses f32); `bf16` also holds the
/// weights in bf16.
pub(crate) fn for_training(model: CausalLm, precision: Precision) -> CausalLm {
    match precision {
        Precision::F32 => model,
        Precision::Bf16Mixed => model.with_compute_dtype(DType::BF16),
        Precision::Bf16 => cast_parameters(model, DType::BF16).with_compute_dtype(DType::BF16),
    }
}

/// A frozen teacher for a stage with `precision`: held and run in bf16 unless the stage is f32.
pub(crate) fn teacher_for(model: CausalLm, precision: Precision) -> CausalLm {
    match precision {
        Precision::F32 => model,
        _ => cast_parameters(model, DType::BF16).with_compute_dtype(DType::BF16),
    }
}

/// The trained model back in f32 for the stages and exports after it.
pub(crate) fn after_training(model: CausalLm) -> CausalLm {
    cast_parameters(model, DType::F32).with_compute_dtype(DType::F32)
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
        // Resumes from its newest checkpoint; the resumed steps supersede the interrupted run's
        // lines in `metrics.jsonl` (see `MetricsLog::write`).
        checkpoint_dir: ctx.sdir.join("checkpoints"),
        interrupt: ctx.interrupt,
        kill_after: None,
        layerwise: params.activation_checkpointing,
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
    write_data_order(data, opts, &ctx.sdir)?;
    let index = ctx.index;
    let metrics = ctx.metrics;
    let observer = &mut *ctx.observer;
    let mut write_err = None;
    let model = train(model, data, opts, objective, &mut |e| {
        let line = match e {
            slmc_train::Event::Step { step, loss, lr, grad_norm, tokens_seen, tokens_per_s, .. } => {
                Some(MetricLine::Step {
                    stage: index,
                    step: *step as u64,
                    loss: f64::from(*loss),
                    lr: *lr,
                    grad_norm: *grad_norm,
                    tokens_seen: *tokens_seen,
                    tokens_per_s: *tokens_per_s,
                })
            }
            slmc_train::Event::Eval { step, loss } => Some(MetricLine::Eval {
                stage: index,
                step: Some(*step as u64),
                loss: *loss,
                ppl: loss.exp(),
                tokens: None,
            }),
            _ => None,
        };
        if let Some(l) = line
            && let Err(err) = metrics.log(&l)
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

/// Writes `data-order.json`: the training sequences each optimizer step draws, in order (indices
/// into the stage's training split, `per_step` of them a step), so that another tool (the
/// reference runs in `scripts/`) can train on exactly the same batches.
fn write_data_order(
    data: &TrainData,
    opts: &TrainOptions<'_>,
    sdir: &std::path::Path,
) -> Result<(), PipelineError> {
    let p = opts.params;
    let per_step = p.batch_size * p.grad_accum;
    let mut order = slmc_data::Order::new(data.train.len(), opts.seed);
    let positions: Vec<usize> = (0..(p.steps * per_step) as u64).map(|i| order.at(i)).collect();
    let doc = json!({
        "sequences": data.train.len(),
        "tokens_per_sequence": data.train.seq_len() + 1,
        "per_step": per_step,
        "batch_size": p.batch_size,
        "steps": p.steps,
        "order": positions,
    });
    slmc_formats::fsutil::atomic_write(&sdir.join("data-order.json"), doc.to_string().as_bytes())?;
    Ok(())
}
