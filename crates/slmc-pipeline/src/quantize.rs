//! The quantize stage: calibration windows from the training split, the block-by-block driver
//! of `slmc-quant` with record files for resume, per-module metrics, and the stage's outputs
//! (`model/` with the fake-quantized weights in f32, `quant.safetensors` with the exact codes,
//! `calibration.safetensors` with the windows used, for reference implementations to reuse).

use crate::PipelineError;
use crate::events::{Event, Observer};
use crate::metrics::MetricsLog;
use crate::runner::{Prepared, RunOptions};
use serde_json::json;
use slmc_model::CausalLm;
use slmc_quant::{Control, GptqOptions, Grid, Method, QuantEvent, QuantizeConfig, Records, quantize};
use slmc_recipe::{QuantMethod, QuantizeParams};
use std::path::Path;

/// What one quantize stage did.
pub(crate) struct QuantOutcome {
    /// The model with fake-quantized weights.
    pub model: CausalLm,
    /// Exact codes.
    pub records: Records,
    /// One-line summary.
    pub summary: String,
    /// Details for done.json.
    pub record: serde_json::Value,
}

/// The grid and algorithm settings of a recipe stage.
pub(crate) fn config(q: &QuantizeParams, targets: &[String]) -> QuantizeConfig {
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
        batch_size: q.batch_size,
    }
}

fn write_calibration(path: &Path, windows: &[Vec<u32>]) -> Result<(), PipelineError> {
    let len = windows.first().map_or(0, Vec::len);
    let bytes: Vec<u8> = windows.iter().flatten().flat_map(|&t| (t as i32).to_le_bytes()).collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::I32, vec![windows.len(), len], &bytes)
            .map_err(|e| PipelineError::io(path, format!("{e:?}")))?;
    let data = safetensors::serialize(vec![("input_ids", view)], None)
        .map_err(|e| PipelineError::io(path, format!("{e:?}")))?;
    Ok(slmc_formats::fsutil::atomic_write(path, &data)?)
}

/// Runs a quantize stage on `model`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    model: CausalLm,
    q: &QuantizeParams,
    targets: &[String],
    index: usize,
    seed: u64,
    data: Option<&Prepared>,
    sdir: &Path,
    metrics: &MetricsLog,
    options: &RunOptions<'_>,
    observer: &mut dyn Observer,
) -> Result<QuantOutcome, PipelineError> {
    let cfg = config(q, targets);
    let calib = match q.method {
        QuantMethod::Rtn => Vec::new(),
        QuantMethod::Gptq => {
            let (d, train) = data
                .and_then(|d| Some((d, d.train.as_ref()?)))
                .ok_or_else(|| PipelineError::Recipe("GPTQ needs [data] train".into()))?;
            let len = q.calibration_len.unwrap_or(d.seq_len).min(model.config.max_position_embeddings);
            let windows = slmc_data::calibration_samples(train, q.samples, len, seed)?;
            write_calibration(&sdir.join("calibration.safetensors"), &windows)?;
            windows
        }
    };
    let blocks = sdir.join("blocks");
    std::fs::create_dir_all(&blocks).map_err(|e| PipelineError::io(&blocks, e))?;
    let ctl = Control { checkpoint_dir: Some(&blocks), interrupt: options.interrupt, stop_after_block: None };
    let started = std::time::Instant::now();
    let mut write_err = None;
    let mut errors = Vec::new();
    let mut block = 0;
    let mut on = |e: QuantEvent<'_>| {
        let line = match e {
            QuantEvent::Resumed { blocks } => {
                observer.event(&Event::Info(format!("resuming: {blocks} block(s) already quantized")));
                None
            }
            QuantEvent::Block { index: b, total } => {
                block = b;
                observer.event(&Event::QuantBlock { index: b, total });
                None
            }
            QuantEvent::Module(m) => {
                if let Some(s) = m.stats
                    && s.retries > 0
                {
                    observer.event(&Event::Warning(format!(
                        "{}: Cholesky failed {} time(s); dampening raised to {:.3} of the mean diagonal",
                        m.name, s.retries, s.damp
                    )));
                }
                if let Some(s) = m.stats
                    && s.dead_columns > 0
                {
                    observer.event(&Event::Warning(format!(
                        "{}: {} input column(s) never active on the calibration data (weights set to 0)",
                        m.name, s.dead_columns
                    )));
                }
                errors.extend(m.rel_error);
                observer.event(&Event::QuantModule {
                    name: m.name.clone(),
                    seconds: m.seconds,
                    rel_error: m.rel_error,
                });
                Some(json!({
                    "event": "quantize", "stage": index, "block": block, "module": m.name, "shape": m.shape,
                    "seconds": m.seconds, "rel_error": m.rel_error,
                    "damp": m.stats.map(|s| s.damp), "retries": m.stats.map(|s| s.retries),
                    "dead_columns": m.stats.map(|s| s.dead_columns), "gptq_loss": m.stats.map(|s| s.loss),
                }))
            }
            QuantEvent::BlockDone { index: b, total, seconds } => Some(
                json!({"event": "quantize_block", "stage": index, "block": b, "blocks": total, "seconds": seconds}),
            ),
        };
        if let Some(l) = line
            && let Err(err) = metrics.write(&l)
        {
            write_err = Some(err);
        }
    };
    let (model, records) = quantize(model, &cfg, &calib, ctl, &mut on).map_err(|e| match e {
        slmc_quant::QuantError::Interrupted { block } => PipelineError::Recipe(format!(
            "interrupted after block {block}; its records are in {}: run the same command again to resume",
            blocks.display()
        )),
        other => other.into(),
    })?;
    if let Some(e) = write_err {
        return Err(e);
    }
    let seconds = started.elapsed().as_secs_f64();
    let peak_rss = peak_rss_bytes();
    let mean_err =
        if errors.is_empty() { None } else { Some(errors.iter().sum::<f64>() / errors.len() as f64) };
    let summary = format!(
        "stage {index}: quantize, {} {} on {} modules in {seconds:.1} s{}",
        if q.method == QuantMethod::Gptq { "GPTQ" } else { "RTN" },
        q.grid_name(),
        records.len(),
        mean_err.map_or(String::new(), |e| format!(", mean relative output error {e:.2e}"))
    );
    let record = json!({
        "summary": summary, "seconds": seconds, "modules": records.len(), "mean_rel_error": mean_err,
        "calibration_windows": calib.len(), "calibration_len": calib.first().map_or(0, Vec::len),
        "peak_rss_bytes": peak_rss,
    });
    Ok(QuantOutcome { model, records, summary, record })
}

/// The process's peak resident memory so far (Linux `VmHWM`), measured when quantization ends and
/// before the stage writes its outputs.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
