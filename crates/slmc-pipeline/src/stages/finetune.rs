//! The finetune stage: full fine-tuning, or LoRA / DoRA / QLoRA adapters on the frozen model,
//! with cross-entropy on the training sequences.

use super::training::{options, train_logged};
use super::{StageOutcome, adapters};
use crate::PipelineError;
use crate::context::StageContext;
use crate::state::State;
use serde_json::json;
use slmc_model::lora;
use slmc_recipe::TrainParams;
use slmc_train::{CrossEntropy, TrainData};

/// Trains every parameter of the model, or adapters on it.
pub(crate) fn run(
    state: State,
    params: &TrainParams,
    ctx: &mut StageContext<'_>,
) -> Result<StageOutcome, PipelineError> {
    let data = ctx.data()?;
    let train_seqs = ctx.train("finetune")?;
    // Views over the same token files: the prepared data stays with the runner.
    let train_data = TrainData { train: train_seqs.view()?, eval: Some(data.eval.view()?) };
    let keep = state.records.keep_masks();
    let opts = options(params, &keep, ctx)?;
    let (model, method) = match &params.adapter {
        None => (adapters::merge_for(state.model, ctx, "full fine-tuning"), "full".to_string()),
        Some(a) => {
            let model = adapters::prepare(state.model, a, ctx)?;
            let trained = lora::trainable_parameters(&model, &a.modules_to_save);
            (model, format!("{} ({trained} trainable parameters)", a.kind.name()))
        }
    };
    // The training loop's own peak (weights, gradients, optimizer state, activations), apart from
    // loading and saving.
    crate::memory::reset_peak_rss();
    let model = super::training::for_training(model, params.precision);
    let model = train_logged(model, &train_data, &opts, &mut CrossEntropy, ctx)?;
    let train_peak_rss = crate::memory::peak_rss_bytes();
    let model = adapters::finish(super::training::after_training(model));
    let summary = format!(
        "stage {}: finetune {method}, {} steps{}",
        ctx.index,
        params.steps,
        if keep.is_empty() { "" } else { " (sparse: pruned weights stay zero)" }
    );
    Ok(StageOutcome {
        state: State { model, records: state.records },
        changed: true,
        summary,
        record: json!({ "train_peak_rss_bytes": train_peak_rss }),
        eval: None,
    })
}
