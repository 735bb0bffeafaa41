//! What quantize and prune stages share: calibration windows from the training split (kept in
//! the stage directory for reference implementations to reuse), the calibration walk's events
//! turned into progress and `metrics.jsonl` lines, and the peak memory they report.

use crate::PipelineError;
use crate::context::StageContext;
use crate::events::Event;
use crate::metrics::{BlockLine, MetricLine, ModuleLine};
use serde_json::Value;
use slmc_calib::{CalibEvent, ModuleReport};
use slmc_formats::record_file::{RecordTensor, write_records};
use slmc_recipe::{CalibrationParams, Kind};
use std::path::Path;

/// Draws the stage's calibration windows (seeded, from the training split) and writes them to
/// `calibration.safetensors` in the stage directory.
pub(crate) fn windows(
    ctx: &StageContext<'_>,
    c: &CalibrationParams,
    max_len: usize,
    what: &str,
) -> Result<Vec<Vec<u32>>, PipelineError> {
    let (d, train) = ctx
        .data
        .and_then(|d| Some((d, d.train.as_ref()?)))
        .ok_or_else(|| PipelineError::Recipe(format!("{what} needs [data] train")))?;
    let train = train.packed().ok_or_else(|| {
        PipelineError::Recipe(format!(
            "{what} draws calibration windows from packed text, and the training data are instruction rows"
        ))
    })?;
    let len = c.len.unwrap_or(d.seq_len).min(max_len);
    let windows = slmc_data::calibration_samples(train, c.samples, len, ctx.seed())?;
    write_calibration(&ctx.sdir.join("calibration.safetensors"), &windows)?;
    Ok(windows)
}

fn write_calibration(path: &Path, windows: &[Vec<u32>]) -> Result<(), PipelineError> {
    let len = windows.first().map_or(0, Vec::len);
    let bytes: Vec<u8> = windows.iter().flatten().flat_map(|&t| (t as i32).to_le_bytes()).collect();
    let ids = RecordTensor {
        name: "input_ids".into(),
        dtype: safetensors::Dtype::I32,
        shape: vec![windows.len(), len],
        data: bytes,
    };
    Ok(write_records(path, &[ids], None)?)
}

/// Logs a calibration walk: progress events, one `metrics.jsonl` line per module and per block,
/// and the relative output errors for the stage summary.
pub(crate) struct WalkLog {
    /// The stage kind (quantize or prune): its name is the event name of its lines.
    pub kind: Kind,
    /// Relative output errors of the modules solved in this run.
    pub errors: Vec<f64>,
    /// The first failed write to `metrics.jsonl`.
    pub write_err: Option<PipelineError>,
}

/// A stage's per-module extras: its `metrics.jsonl` fields and the parts of its summary line.
pub(crate) type ModuleDetails<D> = dyn Fn(&ModuleReport<D>) -> (Value, Vec<String>);

impl WalkLog {
    /// A log for a stage of `kind`.
    pub fn new(kind: Kind) -> Self {
        Self { kind, errors: Vec::new(), write_err: None }
    }

    /// Handles one event of the walk; `details` gives a module's solver-specific fields (merged
    /// into its metrics line) and the warnings to show.
    pub fn event<D>(&mut self, ctx: &mut StageContext<'_>, e: CalibEvent<'_, D>, details: &ModuleDetails<D>) {
        let kind = self.kind;
        let line = match e {
            CalibEvent::Resumed { blocks } => {
                let done = if kind == Kind::Quantize { "quantized" } else { "pruned" };
                ctx.observer.event(&Event::Info(format!("resuming: {blocks} block(s) already {done}")));
                None
            }
            CalibEvent::Block { index, total } => {
                ctx.observer.event(&Event::CalibBlock { kind, index, total });
                None
            }
            CalibEvent::Module(m) => {
                let (extra, warnings) = details(m);
                for w in warnings {
                    ctx.observer.event(&Event::Warning(w));
                }
                self.errors.extend(m.rel_error);
                let sparsity = extra.get("sparsity").and_then(Value::as_f64);
                ctx.observer.event(&Event::CalibModule {
                    name: m.name.clone(),
                    seconds: m.seconds,
                    rel_error: m.rel_error,
                    sparsity,
                });
                let line = ModuleLine {
                    stage: ctx.index,
                    block: m.block,
                    module: m.name.clone(),
                    shape: m.shape,
                    seconds: m.seconds,
                    rel_error: m.rel_error,
                    details: match extra {
                        Value::Object(x) => x,
                        _ => Default::default(),
                    },
                };
                Some(if kind == Kind::Quantize {
                    MetricLine::Quantize(line)
                } else {
                    MetricLine::Prune(line)
                })
            }
            CalibEvent::BlockDone { index, total, seconds } => {
                let line = BlockLine { stage: ctx.index, block: index, blocks: total, seconds };
                Some(if kind == Kind::Quantize {
                    MetricLine::QuantizeBlock(line)
                } else {
                    MetricLine::PruneBlock(line)
                })
            }
        };
        if let Some(l) = line
            && let Err(err) = ctx.metrics.log(&l)
        {
            self.write_err.get_or_insert(err);
        }
    }

    /// The mean relative output error of the modules solved in this run.
    pub fn mean_error(&self) -> Option<f64> {
        (!self.errors.is_empty()).then(|| self.errors.iter().sum::<f64>() / self.errors.len() as f64)
    }

    /// The first write error, if any.
    pub fn finish(self) -> Result<Self, PipelineError> {
        match self.write_err {
            Some(e) => Err(e),
            None => Ok(Self { write_err: None, ..self }),
        }
    }
}

/// Warnings about one module's Hessian solve (GPTQ, SparseGPT): raised dampening after Cholesky
/// failures, and input columns never active on the calibration data.
pub(crate) fn solve_warnings(name: &str, damp: f64, retries: u32, dead_columns: usize) -> Vec<String> {
    let mut warnings = Vec::new();
    if retries > 0 {
        warnings.push(format!(
            "{name}: Cholesky failed {retries} time(s); dampening raised to {damp:.3} of the mean diagonal"
        ));
    }
    if dead_columns > 0 {
        warnings.push(format!(
            "{name}: {dead_columns} input column(s) never active on the calibration data (weights set to 0)"
        ));
    }
    warnings
}

pub(crate) use crate::memory::peak_rss_bytes;

/// The error of an interrupted walk, telling where its finished blocks are.
pub(crate) fn interrupted(block: usize, blocks: &Path) -> PipelineError {
    PipelineError::Recipe(format!(
        "interrupted after block {block}; its records are in {}: run the same command again to resume",
        blocks.display()
    ))
}
