//! The quantizer of the layer-wise calibration walk (`slmc-calib`, docs/algorithms.md §1.2): RTN or
//! GPTQ on every target module, one decoder block at a time, with GPTQ's Hessians from the
//! already-quantized earlier groups when true-sequential. Finished blocks are saved as record
//! files, so an interrupted run resumes from the last finished block with identical codes.

use crate::QuantError;
use crate::gptq::{GptqOptions, GptqStats, gptq_masked, rtn};
use crate::grid::Grid;
use crate::record::{QuantRecord, Records, load_records, save_records};
use slmc_calib::{Block, CalibEvent, ModuleInput, Solved, Solver, set_linear_weight, walk, weight_values};
use slmc_model::CausalLm;
use slmc_model::weights::transpose;
use std::collections::BTreeSet;
use std::path::Path;

pub use slmc_calib::Control;

/// The quantization algorithm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    /// Round to nearest (needs no calibration data).
    Rtn,
    /// GPTQ with these settings.
    Gptq(GptqOptions),
}

/// What to quantize and how.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizeConfig {
    /// The algorithm.
    pub method: Method,
    /// The grid every target is quantized on.
    pub grid: Grid,
    /// Quantize q/k/v, then o, then gate/up, then down, re-running the block in between (GPTQ).
    pub true_sequential: bool,
    /// Module names to quantize (`model.layers.3.self_attn.q_proj`), from
    /// `ModelConfig::linear_modules`.
    pub targets: BTreeSet<String>,
    /// Calibration windows per forward pass.
    pub batch_size: usize,
    /// Sparsity masks to keep, by module (row-major `[out, in]`, true = non-zero): pruned weights
    /// get the zero point's code and stay exactly 0.
    pub keep_masks: std::collections::BTreeMap<String, Vec<bool>>,
}

/// One module's outcome (GPTQ details: damping used, retries, dead columns).
pub type ModuleReport = slmc_calib::ModuleReport<Option<GptqStats>>;

/// Progress of [`quantize`].
pub type QuantEvent<'a> = CalibEvent<'a, Option<GptqStats>>;

/// RTN or GPTQ as a solver of the calibration walk.
struct Quantizer<'a> {
    cfg: &'a QuantizeConfig,
}

impl Solver for Quantizer<'_> {
    type Record = QuantRecord;
    type Detail = Option<GptqStats>;
    type Error = QuantError;

    fn needs_data(&self) -> bool {
        matches!(self.cfg.method, Method::Gptq(_))
    }

    fn sequential(&self) -> bool {
        self.cfg.true_sequential
    }

    fn solve(&mut self, m: &ModuleInput<'_>) -> Result<Solved<QuantRecord, Option<GptqStats>>, QuantError> {
        let keep = self.cfg.keep_masks.get(m.name).map(Vec::as_slice);
        let (record, detail) = match (self.cfg.method, m.hessian) {
            (Method::Gptq(opts), Some(h)) => {
                let (rec, stats) = gptq_masked(m.wt, m.rows, m.cols, h, self.cfg.grid, opts, keep)
                    .map_err(|e| QuantError::Numerical(format!("{}: {e}", m.name)))?;
                (rec, Some(stats))
            }
            (Method::Gptq(_), None) => {
                return Err(QuantError::Input(format!("{}: GPTQ needs calibration data", m.name)));
            }
            // Round to nearest maps an exact 0 to the zero point: pruned weights stay 0.
            (Method::Rtn, _) => (rtn(m.wt, m.rows, m.cols, self.cfg.grid), None),
        };
        Ok(Solved { wt: transpose(&record.dequantize(), m.rows, m.cols), record, detail })
    }

    fn restore(&self, record: &QuantRecord, original: &[f32]) -> Result<Vec<f32>, QuantError> {
        if record.rows * record.cols != original.len() {
            return Err(QuantError::Record {
                name: "block file".into(),
                reason: format!(
                    "record is {}x{} but the weight has {} values",
                    record.rows,
                    record.cols,
                    original.len()
                ),
            });
        }
        Ok(transpose(&record.dequantize(), record.rows, record.cols))
    }

    fn save_block(&self, block: &Block<QuantRecord>, path: &Path) -> Result<(), QuantError> {
        save_records(block, path)
    }

    fn load_block(&self, path: &Path) -> Result<Block<QuantRecord>, QuantError> {
        load_records(path)
    }
}

/// Replaces the weights of the recorded modules by their fake-quantized values.
pub fn apply_records(model: &mut CausalLm, records: &Records) -> Result<(), QuantError> {
    let device = model.device();
    for (name, rec) in records {
        let lin = model.decoder_linear_mut(name).ok_or_else(|| {
            QuantError::Input(format!("`{name}` is not a decoder linear module of this model"))
        })?;
        let (_, rows, cols) = weight_values(lin);
        if [rows, cols] != [rec.rows, rec.cols] {
            return Err(QuantError::Record {
                name: name.clone(),
                reason: format!("record is {}x{} but the weight is {rows}x{cols}", rec.rows, rec.cols),
            });
        }
        set_linear_weight(lin, transpose(&rec.dequantize(), rows, cols), cols, rows, &device);
    }
    Ok(())
}

/// Quantizes the `targets` of `model`, block by block, on calibration windows `calib` (all the
/// same length; unused by RTN). Returns the model with fake-quantized weights and the records.
pub fn quantize(
    model: CausalLm,
    cfg: &QuantizeConfig,
    calib: &[Vec<u32>],
    ctl: Control<'_>,
    on: &mut dyn FnMut(QuantEvent<'_>),
) -> Result<(CausalLm, Records), QuantError> {
    walk(model, &mut Quantizer { cfg }, &cfg.targets, calib, cfg.batch_size, ctl, on)
}
