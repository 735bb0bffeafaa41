//! The pruner of the layer-wise calibration walk (`slmc-calib`, docs/algorithms.md §1.2): magnitude,
//! Wanda or SparseGPT on every target module, one decoder block at a time, each block's
//! statistics taken from the already-pruned earlier blocks. Finished blocks are saved (masks, and
//! SparseGPT's error-compensated weights), so an interrupted run resumes from the last finished
//! block with identical masks.

use crate::PruneError;
use crate::magnitude::{MagnitudeScope, magnitude};
use crate::mask::Mask;
use crate::owl::{ScoredLinear, outlier_ratio, owl_layer_sparsity};
use crate::records::{Masks, load_masks, save_masks};
use crate::sparsegpt::{SparseGptOptions, SparseGptStats, sparsegpt};
use crate::target::Sparsity;
use crate::wanda::wanda;
use slmc_calib::{Block, CalibEvent, Control, ModuleInput, Solved, Solver, walk};
use slmc_formats::FormatError;
use slmc_formats::record_file::{RecordFile, RecordTensor, read_bytes, write_records};
use slmc_model::CausalLm;
use slmc_model::weights::transpose;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// How weights are chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Algorithm {
    /// Smallest `|w|` (no data), compared within this group.
    Magnitude(MagnitudeScope),
    /// Smallest `|w| · ‖x_j‖` per output row.
    Wanda,
    /// SparseGPT with these settings.
    SparseGpt(SparseGptOptions),
}

/// What to prune and how.
#[derive(Debug, Clone, PartialEq)]
pub struct PruneConfig {
    /// The algorithm.
    pub algorithm: Algorithm,
    /// The target of every module (an N:M pattern, or the ratio of blocks without their own).
    pub sparsity: Sparsity,
    /// Per-block ratios (OWL), overriding an unstructured `sparsity` block by block.
    pub layer_ratios: Option<Vec<f64>>,
    /// Module names to prune (`model.layers.3.self_attn.q_proj`).
    pub targets: BTreeSet<String>,
    /// Calibration windows per forward pass.
    pub batch_size: usize,
}

/// Per-module details of a prune.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PruneDetail {
    /// Fraction of the module's weights that are zero now.
    pub sparsity: f64,
    /// SparseGPT's statistics.
    pub stats: Option<SparseGptStats>,
}

/// One module's outcome.
pub type ModuleReport = slmc_calib::ModuleReport<PruneDetail>;

/// Progress of [`prune`].
pub type PruneEvent<'a> = CalibEvent<'a, PruneDetail>;

/// One pruned module: its mask and, for SparseGPT, the updated weight (`[in, out]`).
#[derive(Debug, Clone)]
pub struct Pruned {
    mask: Mask,
    weight: Option<Vec<f32>>,
}

struct Pruner<'a> {
    cfg: &'a PruneConfig,
}

impl Pruner<'_> {
    fn target(&self, block: usize) -> Sparsity {
        match (&self.cfg.layer_ratios, self.cfg.sparsity) {
            (Some(r), Sparsity::Unstructured(_)) => Sparsity::Unstructured(r[block]),
            _ => self.cfg.sparsity,
        }
    }
}

impl Solver for Pruner<'_> {
    type Record = Pruned;
    type Detail = PruneDetail;
    type Error = PruneError;

    fn needs_data(&self) -> bool {
        !matches!(self.cfg.algorithm, Algorithm::Magnitude(_))
    }

    fn sequential(&self) -> bool {
        // Every linear of a block is scored from the block as it entered (the references' rule for
        // Wanda and SparseGPT); the pruned block feeds the next.
        false
    }

    fn norms_only(&self) -> bool {
        // Wanda scores |W|·‖x_j‖: no Hessian products needed (as llm-compressor accumulates).
        self.cfg.algorithm == Algorithm::Wanda
    }

    fn solve(&mut self, m: &ModuleInput<'_>) -> Result<Solved<Pruned, PruneDetail>, PruneError> {
        let w = transpose(m.wt, m.cols, m.rows);
        let target = self.target(m.block);
        let with_name = |e: PruneError| match e {
            PruneError::Input(s) => PruneError::Input(format!("{}: {s}", m.name)),
            PruneError::Numerical(s) => PruneError::Numerical(format!("{}: {s}", m.name)),
            other => other,
        };
        let hessian = || {
            m.hessian
                .ok_or_else(|| PruneError::Input(format!("{}: this method needs calibration data", m.name)))
        };
        let (mut new_w, mask, stats) = match self.cfg.algorithm {
            Algorithm::Magnitude(scope) => {
                (w.clone(), magnitude(&w, m.rows, m.cols, target, scope).map_err(with_name)?, None)
            }
            Algorithm::Wanda => {
                let norms = m.norms.ok_or_else(|| {
                    PruneError::Input(format!("{}: this method needs calibration data", m.name))
                })?;
                (w.clone(), wanda(&w, m.rows, m.cols, norms, target).map_err(with_name)?, None)
            }
            Algorithm::SparseGpt(opts) => {
                let (nw, mask, stats) =
                    sparsegpt(&w, m.rows, m.cols, hessian()?, target, opts).map_err(with_name)?;
                (nw, mask, Some(stats))
            }
        };
        mask.apply(&mut new_w)?;
        let wt = transpose(&new_w, m.rows, m.cols);
        let detail = PruneDetail { sparsity: mask.sparsity(), stats };
        let weight = stats.map(|_| wt.clone());
        Ok(Solved { wt, record: Pruned { mask, weight }, detail })
    }

    fn restore(&self, record: &Pruned, original: &[f32]) -> Result<Vec<f32>, PruneError> {
        if let Some(w) = &record.weight {
            return Ok(w.clone());
        }
        let mut wt = original.to_vec();
        record.mask.apply_transposed(&mut wt)?;
        Ok(wt)
    }

    fn save_block(&self, block: &Block<Pruned>, path: &Path) -> Result<(), PruneError> {
        // The weights first: a block file exists only once everything it needs is on disk.
        let weights: BTreeMap<&String, &Vec<f32>> =
            block.iter().filter_map(|(n, p)| Some((n, p.weight.as_ref()?))).collect();
        if !weights.is_empty() {
            save_weights(&weights, &weights_path(path))?;
        }
        save_masks(&block.iter().map(|(n, p)| (n.clone(), p.mask.clone())).collect(), path)
    }

    fn retain(&self, record: Pruned) -> Pruned {
        // SparseGPT's weights are in the model and the block file; only the mask is handed on.
        Pruned { weight: None, ..record }
    }

    fn load_block(&self, path: &Path) -> Result<Block<Pruned>, PruneError> {
        let masks = load_masks(path)?;
        let mut weights = match self.cfg.algorithm {
            Algorithm::SparseGpt(_) => load_weights(&weights_path(path))?,
            _ => BTreeMap::new(),
        };
        masks
            .into_iter()
            .map(|(name, mask)| {
                let weight = weights.remove(&name);
                if matches!(self.cfg.algorithm, Algorithm::SparseGpt(_)) && weight.is_none() {
                    return Err(PruneError::Mask {
                        name: weights_path(path).display().to_string(),
                        reason: format!("no weights for {name}"),
                    });
                }
                if weight.as_ref().is_some_and(|w| w.len() != mask.rows() * mask.cols()) {
                    return Err(PruneError::Mask { name, reason: "weights and mask sizes differ".into() });
                }
                Ok((name, Pruned { mask, weight }))
            })
            .collect()
    }
}

/// `block-0003.safetensors` → `block-0003.weights.safetensors`.
fn weights_path(block: &Path) -> PathBuf {
    block.with_extension("weights.safetensors")
}

fn save_weights(weights: &BTreeMap<&String, &Vec<f32>>, path: &Path) -> Result<(), PruneError> {
    let tensors: Vec<RecordTensor> =
        weights.iter().map(|(n, w)| RecordTensor::f32(*n, vec![w.len()], w)).collect();
    Ok(write_records(path, &tensors, None)?)
}

fn load_weights(path: &Path) -> Result<BTreeMap<String, Vec<f32>>, PruneError> {
    let bytes = read_bytes(path)?;
    let file = RecordFile::parse(path, &bytes, None)?;
    Ok(file
        .names()
        .into_iter()
        .map(|n| Ok((n.clone(), file.f32s(&n, 1)?.1)))
        .collect::<Result<_, FormatError>>()?)
}

/// Prunes the `targets` of `model`, block by block, on calibration windows `calib` (all the same
/// length; unused by magnitude). Returns the model with the pruned (and, for SparseGPT,
/// error-compensated) weights and the mask of every target.
pub fn prune(
    model: CausalLm,
    cfg: &PruneConfig,
    calib: &[Vec<u32>],
    ctl: Control<'_>,
    on: &mut dyn FnMut(PruneEvent<'_>),
) -> Result<(CausalLm, Masks), PruneError> {
    if let (Some(r), Sparsity::Unstructured(_)) = (&cfg.layer_ratios, cfg.sparsity)
        && r.len() != model.layers.len()
    {
        return Err(PruneError::Input(format!("{} layer ratios for {} layers", r.len(), model.layers.len())));
    }
    let (model, block) = walk(model, &mut Pruner { cfg }, &cfg.targets, calib, cfg.batch_size, ctl, on)?;
    Ok((model, block.into_iter().map(|(n, p)| (n, p.mask)).collect()))
}

/// Collects each module's input norms (the Hessian diagonal) on the model as it is.
struct NormCollector;

impl Solver for NormCollector {
    type Record = Vec<f64>;
    type Detail = ();
    type Error = PruneError;

    fn needs_data(&self) -> bool {
        true
    }

    fn sequential(&self) -> bool {
        false
    }

    fn norms_only(&self) -> bool {
        true
    }

    fn solve(&mut self, m: &ModuleInput<'_>) -> Result<Solved<Vec<f64>, ()>, PruneError> {
        let n = m.norms.ok_or_else(|| PruneError::Input("OWL needs calibration data".into()))?;
        let norms = n.iter().map(|v| v.max(0.0).sqrt()).collect();
        Ok(Solved { wt: m.wt.to_vec(), record: norms, detail: () })
    }

    fn restore(&self, _: &Vec<f64>, original: &[f32]) -> Result<Vec<f32>, PruneError> {
        Ok(original.to_vec())
    }

    fn save_block(&self, _: &Block<Vec<f64>>, _: &Path) -> Result<(), PruneError> {
        Ok(())
    }

    fn load_block(&self, path: &Path) -> Result<Block<Vec<f64>>, PruneError> {
        Err(PruneError::Input(format!("{}: norm collection keeps no block files", path.display())))
    }
}

/// OWL per-block sparsities (docs/algorithms.md §5.5) for an average of `target`: one dense pass over
/// the calibration windows collects each target's input norms, each block's outlier ratio of
/// its Wanda scores `|W|·‖x‖` (outliers above `m` × the mean) is mapped to `[target − λ,
/// target + λ]`, blocks with more outliers keeping more weights.
pub fn owl_ratios(
    model: CausalLm,
    targets: &BTreeSet<String>,
    calib: &[Vec<u32>],
    batch_size: usize,
    target: f64,
    lambda: f64,
    m: f64,
) -> Result<(CausalLm, Vec<f64>), PruneError> {
    let (model, norms) =
        walk(model, &mut NormCollector, targets, calib, batch_size, Control::default(), &mut |_| {})?;
    let mut ratios = Vec::with_capacity(model.layers.len());
    for l in 0..model.layers.len() {
        let prefix = format!("model.layers.{l}.");
        let weights: Vec<(Vec<f32>, usize, usize, &Vec<f64>)> = norms
            .iter()
            .filter(|(n, _)| n.starts_with(&prefix))
            .map(|(n, col_norms)| {
                let lin = model.decoder_linear(n).expect("walked module");
                let (wt, rows, cols) = slmc_calib::weight_values(lin);
                (transpose(&wt, cols, rows), rows, cols, col_norms)
            })
            .collect();
        let linears: Vec<ScoredLinear<'_>> = weights
            .iter()
            .map(|(w, rows, cols, col_norms)| ScoredLinear { w, rows: *rows, cols: *cols, col_norms })
            .collect();
        ratios.push(if linears.is_empty() { 0.0 } else { outlier_ratio(&linears, m)? });
    }
    Ok((model, owl_layer_sparsity(&ratios, target, lambda)?))
}
