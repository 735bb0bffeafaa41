//! The quantize stage: calibration windows from the training split, the block-by-block driver
//! of `slmc-quant` with record files for resume, per-module metrics, and the stage's outputs
//! (`model/` with the fake-quantized weights in f32, `quant.safetensors` with the exact codes,
//! `calibration.safetensors` with the windows used, for reference implementations to reuse).
//! Masks of an earlier prune stage are kept: pruned weights get the zero point's code.

use super::StageOutcome;
use super::calibration::{WalkLog, interrupted, peak_rss_bytes, solve_warnings, windows};
use crate::PipelineError;
use crate::context::StageContext;
use crate::state::State;
use serde_json::json;
use slmc_quant::{Control, GptqOptions, Grid, Method, QuantizeConfig, quantize};
use slmc_recipe::{QuantMethod, QuantizeParams};

/// The grid and algorithm settings of a recipe stage.
pub(crate) fn config(
    q: &QuantizeParams,
    targets: &[String],
    keep_masks: Vec<(String, Vec<bool>)>,
) -> QuantizeConfig {
    QuantizeConfig {
        method: match q.method {
            QuantMethod::Rtn => Method::Rtn,
            QuantMethod::Gptq => {
                Method::Gptq(GptqOptions { damp: q.damp, block_size: q.block_size, act_order: q.act_order })
            }
        },
        grid: Grid { bits: q.bits, group_size: q.group_size, sym: q.sym, f16_scales: true },
        true_sequential: q.true_sequential,
        targets: targets.iter().cloned().collect(),
        batch_size: q.calibration.batch_size,
        keep_masks: keep_masks.into_iter().collect(),
    }
}

/// Runs a quantize stage on the state's model.
pub(crate) fn run(
    state: State,
    q: &QuantizeParams,
    ctx: &mut StageContext<'_>,
) -> Result<StageOutcome, PipelineError> {
    let model = state.model;
    // The stage's own peak (resident model, calibration activations, Hessians), apart from the
    // loading before it.
    crate::memory::reset_peak_rss();
    let cfg = config(q, &ctx.modules(), state.records.keep_masks());
    let calib = match q.method {
        QuantMethod::Rtn => Vec::new(),
        QuantMethod::Gptq => windows(ctx, &q.calibration, model.config.max_position_embeddings, "GPTQ")?,
    };
    let blocks = ctx.sdir.join("blocks");
    std::fs::create_dir_all(&blocks).map_err(|e| PipelineError::io(&blocks, e))?;
    let ctl = Control { checkpoint_dir: Some(&blocks), interrupt: ctx.interrupt, stop_after_block: None };
    let started = std::time::Instant::now();
    let mut log = WalkLog::new(slmc_recipe::Kind::Quantize);
    let details = |m: &slmc_quant::ModuleReport| {
        let warnings =
            m.detail.map_or_else(Vec::new, |s| solve_warnings(&m.name, s.damp, s.retries, s.dead_columns));
        let s = m.detail;
        let extra = json!({
            "damp": s.map(|s| s.damp), "retries": s.map(|s| s.retries),
            "dead_columns": s.map(|s| s.dead_columns), "gptq_loss": s.map(|s| s.loss),
        });
        (extra, warnings)
    };
    let result = quantize(model, &cfg, &calib, ctl, &mut |e| log.event(ctx, e, &details));
    let (model, records) = result.map_err(|e| match e {
        slmc_quant::QuantError::Interrupted { block } => interrupted(block, &blocks),
        other => other.into(),
    })?;
    let log = log.finish()?;
    let seconds = started.elapsed().as_secs_f64();
    let peak_rss = peak_rss_bytes();
    let mean_err = log.mean_error();
    let summary = format!(
        "stage {}: quantize, {} {} on {} modules in {seconds:.1} s{}{}",
        ctx.index,
        if q.method == QuantMethod::Gptq { "GPTQ" } else { "RTN" },
        q.grid_name(),
        records.len(),
        mean_err.map_or(String::new(), |e| format!(", mean relative output error {e:.2e}")),
        if cfg.keep_masks.is_empty() { "" } else { ", sparsity masks kept" }
    );
    let record = json!({
        "seconds": seconds, "modules": records.len(), "mean_rel_error": mean_err,
        "calibration_windows": calib.len(), "calibration_len": calib.first().map_or(0, Vec::len),
        "peak_rss_bytes": peak_rss,
    });
    let mut kept = state.records;
    kept.quant = Some(records);
    Ok(StageOutcome { state: State { model, records: kept }, changed: true, summary, record, eval: None })
}
