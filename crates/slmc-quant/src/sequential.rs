//! The layer-wise driver of algorithms.md §0.2: calibration windows are embedded once, then one
//! decoder block at a time has its linear modules quantized (GPTQ: from Hessians of their inputs,
//! one true-sequential group after another, each group seeing the already-quantized earlier
//! groups) and the quantized block produces the next block's inputs. Only the calibration
//! activations of the current block (its input, attention context and residual) and one site's
//! Hessian are alive at a time; walking the sites in forward order with those cached costs about
//! one forward pass of the block, not one per group.
//!
//! Finished blocks are saved as record files, so an interrupted run resumes from the last
//! finished block with identical codes.

use crate::QuantError;
use crate::gptq::{GptqOptions, GptqStats, gptq, relative_output_error, rtn};
use crate::grid::Grid;
use crate::hessian::Hessian;
use crate::record::{Records, load_records, save_records};
use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;
use slmc_model::layers::{DecoderLayer, Site};
use slmc_model::rope::RopeTables;
use slmc_model::weights::transpose;
use slmc_model::{Arch, CausalLm};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

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
}

/// One module's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleReport {
    /// Module name.
    pub name: String,
    /// `[out, in]`.
    pub shape: [usize; 2],
    /// Wall time of the solve.
    pub seconds: f64,
    /// Output error on the calibration inputs relative to the output energy (GPTQ only).
    pub rel_error: Option<f64>,
    /// GPTQ details (damping used, retries, dead columns).
    pub stats: Option<GptqStats>,
}

/// Progress of [`quantize`].
#[derive(Debug)]
pub enum QuantEvent<'a> {
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
    Module(&'a ModuleReport),
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
pub(crate) fn weight_values(lin: &Linear) -> (Vec<f32>, usize, usize) {
    let w = lin.weight.val();
    let [cols, rows] = w.dims();
    (w.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 weights"), rows, cols)
}

fn set_weight(lin: &mut Linear, wt: Vec<f32>, cols: usize, rows: usize, device: &Device) {
    let id = lin.weight.id;
    let mut p = Param::from_tensor(Tensor::<2>::from_data(TensorData::new(wt, [cols, rows]), device));
    p.id = id;
    lin.weight = p;
}

/// Replaces the weights of the recorded modules by their fake-quantized values.
pub fn apply_records(model: &mut CausalLm, records: &Records) -> Result<(), QuantError> {
    let device = model.device();
    for (name, rec) in records {
        let n_layers = model.layers.len();
        let lin = split_name(name)
            .filter(|(l, _)| *l < n_layers)
            .and_then(|(l, module)| model.layers[l].linear_mut(module))
            .ok_or_else(|| {
                QuantError::Input(format!("`{name}` is not a decoder linear module of this model"))
            })?;
        let [cols, rows] = lin.weight.val().dims();
        if [rows, cols] != [rec.rows, rec.cols] {
            return Err(QuantError::Record {
                name: name.clone(),
                reason: format!("record is {}x{} but the weight is {rows}x{cols}", rec.rows, rec.cols),
            });
        }
        set_weight(lin, transpose(&rec.dequantize(), rows, cols), cols, rows, &device);
    }
    Ok(())
}

/// `model.layers.3.mlp.down_proj` → `(3, "mlp.down_proj")`.
pub(crate) fn split_name(name: &str) -> Option<(usize, &str)> {
    let rest = name.strip_prefix("model.layers.")?;
    let (i, module) = rest.split_once('.')?;
    Some((i.parse().ok()?, module))
}

/// Quantizes the `targets` of `model`, block by block, on calibration windows `calib` (all the
/// same length; unused by RTN). Returns the model with fake-quantized weights and the records.
pub fn quantize(
    mut model: CausalLm,
    cfg: &QuantizeConfig,
    calib: &[Vec<u32>],
    ctl: Control<'_>,
    on: &mut dyn FnMut(QuantEvent<'_>),
) -> Result<(CausalLm, Records), QuantError> {
    let known: BTreeSet<String> = model.config.linear_modules().into_iter().collect();
    if let Some(bad) = cfg.targets.iter().find(|t| !known.contains(*t)) {
        return Err(QuantError::Input(format!("`{bad}` is not a quantizable module of this model")));
    }
    let device = model.device();
    let needs_data = matches!(cfg.method, Method::Gptq(_));
    let seq = calib.first().map_or(0, Vec::len);
    if needs_data && (calib.is_empty() || seq < 1 || calib.iter().any(|c| c.len() != seq)) {
        return Err(QuantError::Input("GPTQ needs calibration windows, all of the same length".into()));
    }
    let vocab = model.config.vocab_size;
    if let Some(t) = calib.iter().flatten().find(|&&t| t as usize >= vocab) {
        return Err(QuantError::Input(format!(
            "calibration token id {t} is outside the vocabulary ({vocab})"
        )));
    }
    let c = model.config.clone();
    let rope = RopeTables::new(&c.rope, c.rotary_dim(), 0, seq.max(1), &device);
    let mut inps: Vec<Tensor<3>> = if needs_data {
        calib
            .chunks(cfg.batch_size.max(1))
            .map(|batch| {
                let ids: Vec<i32> = batch.iter().flatten().map(|&t| t as i32).collect();
                model
                    .embed_tokens
                    .forward(Tensor::<2, Int>::from_data(TensorData::new(ids, [batch.len(), seq]), &device))
            })
            .collect()
    } else {
        Vec::new()
    };
    let total = model.layers.len();
    let mut records = Records::new();
    let mut resumed = 0;
    for i in 0..total {
        let ckpt = ctl.checkpoint_dir.map(|d| d.join(format!("block-{i:04}.safetensors")));
        let restored = match ckpt.as_ref().filter(|p| p.is_file()) {
            Some(p) if resumed == i => Some(load_records(p)?),
            _ => None,
        };
        let fresh = restored.is_none();
        let block_records = match restored {
            Some(recs) => {
                if let Some(name) = recs.keys().find(|n| split_name(n).is_none_or(|(l, _)| l != i)) {
                    let reason = format!("not a module of block {i}");
                    return Err(QuantError::Record { name: name.clone(), reason });
                }
                apply_records(&mut model, &recs)?;
                resumed += 1;
                recs
            }
            None => {
                if resumed > 0 && resumed == i {
                    on(QuantEvent::Resumed { blocks: resumed });
                }
                on(QuantEvent::Block { index: i, total });
                let t0 = Instant::now();
                let (recs, next) = quantize_block(
                    &mut model.layers[i],
                    i,
                    cfg,
                    c.arch,
                    std::mem::take(&mut inps),
                    &rope,
                    on,
                )?;
                if let Some(p) = &ckpt {
                    save_records(&recs, p)?;
                }
                on(QuantEvent::BlockDone { index: i, total, seconds: t0.elapsed().as_secs_f64() });
                inps = next;
                recs
            }
        };
        records.extend(block_records);
        if !fresh && needs_data && i + 1 < total {
            let layer = &model.layers[i];
            inps = inps.into_iter().map(|x| layer.forward(x, &rope, None)).collect();
        }
        let stop =
            ctl.stop_after_block == Some(i) || ctl.interrupt.is_some_and(|f| f.load(Ordering::Relaxed));
        if fresh && stop && i + 1 < total {
            return Err(QuantError::Interrupted { block: i });
        }
    }
    Ok((model, records))
}

/// Activations of one calibration batch inside the block being quantized: its input `x`, and
/// once computed, the attention context (input of `o_proj`) and the residual stream after
/// attention `h`. Each is computed after the modules it depends on are final, so one walk over
/// the sites in forward order costs about one forward pass of the block.
struct BatchActs {
    x: Tensor<3>,
    context: Option<Tensor<3>>,
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
            let h = acts.x.clone() + layer.self_attn.o_proj.forward(ctx);
            acts.h = Some(h.clone());
            layer.post_attention_layernorm.forward(h)
        }
        Site::MlpHidden => {
            let h = acts.h.clone().expect("MlpInput precedes MlpHidden");
            layer.mlp.hidden(layer.post_attention_layernorm.forward(h))
        }
    }
}

/// Quantizes one block in place and returns its records and the next block's inputs.
fn quantize_block(
    layer: &mut DecoderLayer,
    index: usize,
    cfg: &QuantizeConfig,
    arch: Arch,
    inps: Vec<Tensor<3>>,
    rope: &RopeTables,
    on: &mut dyn FnMut(QuantEvent<'_>),
) -> Result<(Records, Vec<Tensor<3>>), QuantError> {
    let gptq_opts = match cfg.method {
        Method::Gptq(o) => Some(o),
        Method::Rtn => None,
    };
    // True-sequential: one site at a time, each seeing the already-quantized earlier ones.
    // Otherwise every Hessian comes from the unquantized block.
    let groups: Vec<Vec<Site>> = match (gptq_opts, cfg.true_sequential) {
        (Some(_), true) => Site::ALL.iter().map(|s| vec![*s]).collect(),
        _ => vec![Site::ALL.to_vec()],
    };
    let device = layer.input_layernorm.weight.val().device();
    let mut acts: Vec<BatchActs> =
        inps.into_iter().map(|x| BatchActs { x, context: None, h: None }).collect();
    let mut out = Records::new();
    for group in &groups {
        let modules: Vec<(Site, &str, String)> = group
            .iter()
            .flat_map(|&s| s.modules(arch).iter().map(move |m| (s, *m, format!("model.layers.{index}.{m}"))))
            .filter(|(_, _, name)| cfg.targets.contains(name))
            .collect();
        let mut hessians: HashMap<Site, Vec<f64>> = HashMap::new();
        if gptq_opts.is_some() {
            for &site in group {
                let wanted = modules.iter().find(|(s, _, _)| *s == site);
                let mut h = wanted.map(|(_, m, _)| {
                    Hessian::new(layer.linear(m).expect("listed module").weight.val().dims()[0])
                });
                for a in acts.iter_mut() {
                    let input = site_input(layer, site, a, rope);
                    if let Some(h) = h.as_mut() {
                        h.add(&input);
                    }
                }
                if let Some(h) = h {
                    hessians.insert(site, h.mean());
                }
            }
        }
        for (site, m, name) in modules {
            let t0 = Instant::now();
            let (wt, rows, cols) = weight_values(layer.linear(m).expect("listed module"));
            if wt.iter().any(|v| !v.is_finite()) {
                return Err(QuantError::Numerical(format!(
                    "{name}: the weight holds NaN or infinite values"
                )));
            }
            let (rec, stats) = match gptq_opts {
                None => (rtn(&wt, rows, cols, cfg.grid), None),
                Some(opts) => {
                    let (rec, stats) = gptq(&wt, rows, cols, &hessians[&site], cfg.grid, opts)
                        .map_err(|e| QuantError::Numerical(format!("{name}: {e}")))?;
                    (rec, Some(stats))
                }
            };
            let deq_t = transpose(&rec.dequantize(), rows, cols);
            let rel_error = hessians.get(&site).map(|h| relative_output_error(&wt, &deq_t, rows, cols, h));
            if rel_error.is_some_and(|e| !e.is_finite()) {
                return Err(QuantError::Numerical(format!(
                    "{name}: the quantized output error is not finite"
                )));
            }
            set_weight(layer.linear_mut(m).expect("listed module"), deq_t, cols, rows, &device);
            let report = ModuleReport {
                name: name.clone(),
                shape: [rows, cols],
                seconds: t0.elapsed().as_secs_f64(),
                rel_error,
                stats,
            };
            on(QuantEvent::Module(&report));
            out.insert(name, rec);
        }
    }
    // The next block's inputs, from the quantized block. With true-sequential GPTQ the cached
    // residual `h` was computed after q/k/v/o were final; otherwise run the whole block.
    let reuse_h = gptq_opts.is_some() && cfg.true_sequential;
    let next = acts
        .into_iter()
        .map(|a| match (reuse_h, a.h) {
            (true, Some(h)) => h.clone() + layer.mlp.forward(layer.post_attention_layernorm.forward(h)),
            _ => layer.forward(a.x, rope, None),
        })
        .collect();
    Ok((out, next))
}
