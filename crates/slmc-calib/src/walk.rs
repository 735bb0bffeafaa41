//! The block-by-block walk. Only the calibration activations of the current block (its input,
//! attention context and residual) and one site's Hessian are alive at a time; walking the sites
//! in forward order with those cached costs about one forward pass of the block, not one per
//! true-sequential group.

use crate::CalibError;
use crate::hessian::{ColumnNorms, Hessian};
use crate::linalg::relative_output_error;
use burn::module::Param;
use burn::prelude::*;
use slmc_model::layers::{DecoderLayer, Site};
use slmc_model::proj::Proj;
use slmc_model::rope::RopeTables;
use slmc_model::{Arch, CausalLm};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// One module handed to a [`Solver`].
#[derive(Debug)]
pub struct ModuleInput<'a> {
    /// Full module name (`model.layers.3.mlp.down_proj`).
    pub name: &'a str,
    /// Where its input comes from.
    pub site: Site,
    /// Block index.
    pub block: usize,
    /// The current weight in burn's `[in, out]` layout (`[cols, rows]`).
    pub wt: &'a [f32],
    /// Output features.
    pub rows: usize,
    /// Input features.
    pub cols: usize,
    /// Mean `X Xᵀ` of its calibration inputs (`[cols, cols]`), when the solver needs data and
    /// not only [`ModuleInput::norms`].
    pub hessian: Option<&'a [f64]>,
    /// Mean `x_j²` per input feature (the Hessian's diagonal), when the solver needs data.
    pub norms: Option<&'a [f64]>,
}

/// What a solver made of one module.
#[derive(Debug, Clone)]
pub struct Solved<R, D> {
    /// The new weight, `[in, out]` layout.
    pub wt: Vec<f32>,
    /// The exact record (codes, mask…) the stage keeps.
    pub record: R,
    /// Solver-specific details for the progress report.
    pub detail: D,
}

/// The records of one finished block, by full module name.
pub type Block<R> = BTreeMap<String, R>;

/// An algorithm run on every target module by [`walk`].
pub trait Solver {
    /// The exact result kept per module.
    type Record;
    /// Per-module details reported as progress.
    type Detail;
    /// The solver's error type.
    type Error: From<CalibError>;

    /// Whether it reads calibration inputs (Hessians); `false` for data-free methods.
    fn needs_data(&self) -> bool;
    /// Whether each site's Hessian must come from the block with the earlier sites already
    /// solved (true-sequential); otherwise all come from the block as it entered.
    fn sequential(&self) -> bool;
    /// Whether it reads only the per-feature input norms ([`ModuleInput::norms`]): the walk then
    /// skips the `XᵀX` products, and measures each module's output error on the first
    /// calibration batch only.
    fn norms_only(&self) -> bool {
        false
    }
    /// Solves one module.
    fn solve(&mut self, m: &ModuleInput<'_>) -> Result<Solved<Self::Record, Self::Detail>, Self::Error>;
    /// The weight (`[in, out]`) a record restores on resume; `original` is the weight before.
    fn restore(&self, record: &Self::Record, original: &[f32]) -> Result<Vec<f32>, Self::Error>;
    /// Writes a finished block's records (its resume point).
    fn save_block(&self, block: &Block<Self::Record>, path: &Path) -> Result<(), Self::Error>;
    /// Reads a block file [`Solver::save_block`] wrote.
    fn load_block(&self, path: &Path) -> Result<Block<Self::Record>, Self::Error>;
    /// What of a finished block's record stays in memory once its block file is written (by
    /// default all of it; a solver may drop what only resuming needs).
    fn retain(&self, record: Self::Record) -> Self::Record {
        record
    }
}

/// One module's outcome.
#[derive(Debug, Clone)]
pub struct ModuleReport<D> {
    /// Module name.
    pub name: String,
    /// Its decoder block.
    pub block: usize,
    /// `[out, in]`.
    pub shape: [usize; 2],
    /// Wall time of the solve.
    pub seconds: f64,
    /// Output error on the calibration inputs relative to the output energy (with data; on the
    /// first calibration batch for a [`Solver::norms_only`] solver).
    pub rel_error: Option<f64>,
    /// The solver's details.
    pub detail: D,
}

/// Progress of [`walk`].
#[derive(Debug)]
pub enum CalibEvent<'a, D> {
    /// Blocks restored from record files of an earlier run.
    Resumed {
        /// How many.
        blocks: usize,
    },
    /// A block starts.
    Block {
        /// 0-based index.
        index: usize,
        /// Number of blocks.
        total: usize,
    },
    /// A module is done.
    Module(&'a ModuleReport<D>),
    /// A block is done and saved.
    BlockDone {
        /// 0-based index.
        index: usize,
        /// Number of blocks.
        total: usize,
        /// Wall time of the block.
        seconds: f64,
    },
}

/// Where finished blocks go, and when to stop early.
#[derive(Debug, Default, Clone, Copy)]
pub struct Control<'a> {
    /// Directory of `block-NNNN.safetensors` record files (resume point); `None` = no resume.
    pub checkpoint_dir: Option<&'a Path>,
    /// Set (by Ctrl-C) to stop after the current block.
    pub interrupt: Option<&'a AtomicBool>,
    /// Stop after this block as if interrupted (tests of resume).
    pub stop_after_block: Option<usize>,
}

/// A linear weight in burn's `[in, out]` layout, with `rows` = out and `cols` = in.
pub fn weight_values(lin: &Proj) -> (Vec<f32>, usize, usize) {
    let w = lin.weight.val();
    let [cols, rows] = w.dims();
    (w.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 weights"), rows, cols)
}

/// Replaces a linear's weight by `wt` (`[in, out]` = `[cols, rows]`), keeping its parameter id.
pub fn set_linear_weight(lin: &mut Proj, wt: Vec<f32>, cols: usize, rows: usize, device: &Device) {
    let id = lin.weight.id;
    let mut p = Param::from_tensor(Tensor::<2>::from_data(TensorData::new(wt, [cols, rows]), device));
    p.id = id;
    lin.weight = p;
}

pub use slmc_config::hf_config::split_layer_name as split_name;

/// Runs `solver` on the `targets` of `model` (full module names from
/// `ModelConfig::linear_modules`), block by block, on calibration windows `calib` (all the same
/// length; unused by data-free solvers). Returns the model with every target's weight replaced
/// by the solver's and the records of all targets.
pub fn walk<S: Solver>(
    mut model: CausalLm,
    solver: &mut S,
    targets: &BTreeSet<String>,
    calib: &[Vec<u32>],
    batch_size: usize,
    ctl: Control<'_>,
    on: &mut dyn FnMut(CalibEvent<'_, S::Detail>),
) -> Result<(CausalLm, Block<S::Record>), S::Error> {
    let known: BTreeSet<String> = model.config.linear_modules().into_iter().collect();
    if let Some(bad) = targets.iter().find(|t| !known.contains(*t)) {
        return Err(
            CalibError::Input(format!("`{bad}` is not a linear module of this model's decoder")).into()
        );
    }
    let device = model.device();
    let needs_data = solver.needs_data();
    let seq = calib.first().map_or(0, Vec::len);
    if needs_data && (calib.is_empty() || seq < 1 || calib.iter().any(|c| c.len() != seq)) {
        return Err(CalibError::Input("calibration needs windows, all of the same length".into()).into());
    }
    let vocab = model.config.vocab_size;
    if let Some(t) = calib.iter().flatten().find(|&&t| t as usize >= vocab) {
        return Err(CalibError::Input(format!(
            "calibration token id {t} is outside the vocabulary ({vocab})"
        ))
        .into());
    }
    let c = model.config.clone();
    let rope = RopeTables::for_model(&c, 0, seq.max(1), &device);
    let mut inps: Vec<Tensor<3>> = if needs_data {
        calib
            .chunks(batch_size.max(1))
            .map(|batch| {
                let ids: Vec<i32> = batch.iter().flatten().map(|&t| t as i32).collect();
                model.embed(Tensor::<2, Int>::from_data(TensorData::new(ids, [batch.len(), seq]), &device))
            })
            .collect()
    } else {
        Vec::new()
    };
    let total = model.layers.len();
    let mut records = Block::new();
    let mut resumed = 0;
    for i in 0..total {
        let ckpt = ctl.checkpoint_dir.map(|d| d.join(format!("block-{i:04}.safetensors")));
        let restored = match ckpt.as_ref().filter(|p| p.is_file()) {
            Some(p) if resumed == i => Some(solver.load_block(p)?),
            _ => None,
        };
        let fresh = restored.is_none();
        let block_records = match restored {
            Some(recs) => {
                restore_block(&mut model, solver, i, &recs)?;
                resumed += 1;
                recs
            }
            None => {
                if resumed > 0 && resumed == i {
                    on(CalibEvent::Resumed { blocks: resumed });
                }
                on(CalibEvent::Block { index: i, total });
                let t0 = Instant::now();
                let (recs, next) = solve_block(
                    &mut model.layers[i],
                    i,
                    solver,
                    targets,
                    c.arch,
                    std::mem::take(&mut inps),
                    &rope,
                    on,
                )?;
                if let Some(p) = &ckpt {
                    solver.save_block(&recs, p)?;
                }
                on(CalibEvent::BlockDone { index: i, total, seconds: t0.elapsed().as_secs_f64() });
                inps = next;
                recs
            }
        };
        records.extend(block_records.into_iter().map(|(n, r)| (n, solver.retain(r))));
        if !fresh && needs_data && i + 1 < total {
            let layer = &model.layers[i];
            inps = inps.into_iter().map(|x| layer.forward(x, &rope, None)).collect();
        }
        let stop =
            ctl.stop_after_block == Some(i) || ctl.interrupt.is_some_and(|f| f.load(Ordering::Relaxed));
        if fresh && stop && i + 1 < total {
            return Err(CalibError::Interrupted { block: i }.into());
        }
    }
    Ok((model, records))
}

/// Puts the weights of a block file back into block `index` of `model`.
fn restore_block<S: Solver>(
    model: &mut CausalLm,
    solver: &S,
    index: usize,
    recs: &Block<S::Record>,
) -> Result<(), S::Error> {
    let device = model.device();
    for (name, rec) in recs {
        if split_name(name).is_none_or(|(l, _)| l != index) {
            return Err(CalibError::Input(format!("{name}: not a module of block {index}")).into());
        }
        let lin = model.decoder_linear_mut(name).ok_or_else(|| {
            CalibError::Input(format!("`{name}` is not a decoder linear module of this model"))
        })?;
        let (wt, rows, cols) = weight_values(lin);
        let new = solver.restore(rec, &wt)?;
        if new.len() != wt.len() {
            return Err(CalibError::Input(format!(
                "{name}: the record holds {} weights but the module has {rows}x{cols}",
                new.len()
            ))
            .into());
        }
        set_linear_weight(lin, new, cols, rows, &device);
    }
    Ok(())
}

/// Activations of one calibration batch inside the block being solved: its input `x`, and once
/// computed, the attention context (input of `o_proj`), the attention output `attn` and the
/// residual stream after attention `h`. Each is computed after the modules it depends on are
/// final.
struct BatchActs {
    x: Tensor<3>,
    context: Option<Tensor<3>>,
    attn: Option<Tensor<3>>,
    h: Option<Tensor<3>>,
}

/// The input of `site` for one batch (computing and caching what later sites reuse).
fn site_input(layer: &DecoderLayer, site: Site, acts: &mut BatchActs, rope: &RopeTables) -> Tensor<3> {
    match site {
        Site::AttnInput => layer.input_layernorm.forward(acts.x.clone()),
        Site::AttnOutput => {
            let ctx = layer.self_attn.context(layer.input_layernorm.forward(acts.x.clone()), rope, None);
            acts.context = Some(ctx.clone());
            ctx
        }
        Site::MlpInput => {
            let ctx = acts.context.clone().expect("AttnOutput precedes MlpInput");
            let attn = layer.self_attn.out_proj().forward(ctx);
            let h = layer.attn_residual(acts.x.clone(), attn.clone());
            acts.attn = Some(attn);
            acts.h = Some(h.clone());
            layer.mlp_input(acts.x.clone(), h)
        }
        Site::MlpHidden => {
            let h = acts.h.clone().expect("MlpInput precedes MlpHidden");
            layer.mlp.hidden(layer.mlp_input(acts.x.clone(), h))
        }
    }
}

/// A solved block's records and the next block's inputs.
type SolvedBlock<S> = (Block<<S as Solver>::Record>, Vec<Tensor<3>>);

/// Solves one block in place and returns its records and the next block's inputs.
#[allow(clippy::too_many_arguments)]
fn solve_block<S: Solver>(
    layer: &mut DecoderLayer,
    index: usize,
    solver: &mut S,
    targets: &BTreeSet<String>,
    arch: Arch,
    inps: Vec<Tensor<3>>,
    rope: &RopeTables,
    on: &mut dyn FnMut(CalibEvent<'_, S::Detail>),
) -> Result<SolvedBlock<S>, S::Error> {
    let needs_data = solver.needs_data();
    let sequential = needs_data && solver.sequential();
    // True-sequential: one site at a time, each seeing the already-solved earlier ones.
    // Otherwise every Hessian comes from the block as it entered.
    let groups: Vec<Vec<Site>> =
        if sequential { Site::ALL.iter().map(|s| vec![*s]).collect() } else { vec![Site::ALL.to_vec()] };
    let device = layer.input_layernorm.weight.val().device();
    let mut acts: Vec<BatchActs> =
        inps.into_iter().map(|x| BatchActs { x, context: None, attn: None, h: None }).collect();
    let mut out = Block::new();
    for group in &groups {
        let modules: Vec<(Site, &str, String)> = group
            .iter()
            .flat_map(|&s| s.modules(arch).iter().map(move |m| (s, *m, format!("model.layers.{index}.{m}"))))
            .filter(|(_, _, name)| targets.contains(name))
            .collect();
        // Per site: the Hessian (all batches; the first batch only for a norms-only solver, for
        // the output error) and the per-feature norms.
        let norms_only = solver.norms_only();
        let mut hessians: HashMap<Site, Vec<f64>> = HashMap::new();
        let mut norms: HashMap<Site, Vec<f64>> = HashMap::new();
        if needs_data {
            for &site in group {
                let wanted = modules.iter().find(|(s, _, _)| *s == site);
                let cols = wanted.map(|(_, m, _)| layer.linear(m).expect("listed module").dims()[0]);
                let mut h = cols.map(Hessian::new);
                let mut n = cols.filter(|_| norms_only).map(ColumnNorms::new);
                for (i, a) in acts.iter_mut().enumerate() {
                    let input = site_input(layer, site, a, rope);
                    if let Some(h) = h.as_mut().filter(|_| !norms_only || i == 0) {
                        h.add(&input);
                    }
                    if let Some(n) = n.as_mut() {
                        n.add(&input);
                    }
                }
                if let Some(h) = h {
                    let mean = h.mean();
                    let c = cols.expect("set with h");
                    let diag = match &n {
                        Some(n) => n.mean(),
                        None => (0..c).map(|j| mean[j * c + j]).collect(),
                    };
                    norms.insert(site, diag);
                    hessians.insert(site, mean);
                }
            }
        }
        for (site, m, name) in modules {
            let t0 = Instant::now();
            let (wt, rows, cols) = weight_values(layer.linear(m).expect("listed module"));
            if wt.iter().any(|v| !v.is_finite()) {
                return Err(CalibError::Numerical(format!(
                    "{name}: the weight holds NaN or infinite values"
                ))
                .into());
            }
            let h = hessians.get(&site).map(Vec::as_slice);
            let input = ModuleInput {
                name: &name,
                site,
                block: index,
                wt: &wt,
                rows,
                cols,
                hessian: h.filter(|_| !norms_only),
                norms: norms.get(&site).map(Vec::as_slice),
            };
            let solved = solver.solve(&input)?;
            if solved.wt.len() != wt.len() || solved.wt.iter().any(|v| !v.is_finite()) {
                return Err(CalibError::Numerical(format!("{name}: the solver returned a bad weight")).into());
            }
            let rel_error = h.map(|h| relative_output_error(&wt, &solved.wt, rows, cols, h));
            if rel_error.is_some_and(|e| !e.is_finite()) {
                return Err(CalibError::Numerical(format!("{name}: the output error is not finite")).into());
            }
            set_linear_weight(layer.linear_mut(m).expect("listed module"), solved.wt, cols, rows, &device);
            let report = ModuleReport {
                name: name.clone(),
                block: index,
                shape: [rows, cols],
                seconds: t0.elapsed().as_secs_f64(),
                rel_error,
                detail: solved.detail,
            };
            on(CalibEvent::Module(&report));
            out.insert(name, solved.record);
        }
    }
    // The next block's inputs, from the solved block. With true-sequential solving the cached
    // attention output was computed after q/k/v/o were final; otherwise run the whole block.
    let next = acts
        .into_iter()
        .map(|a| match (sequential, a.attn) {
            (true, Some(attn)) => layer.forward_from_attn(a.x, attn),
            _ => layer.forward(a.x, rope, None),
        })
        .collect();
    Ok((out, next))
}
