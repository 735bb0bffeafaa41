//! Importance scores of prunable units (docs/algorithms.md §6.2–6.4): Minitron's activation
//! importance from one forward pass over calibration windows, and a data-free weight-magnitude
//! fallback ([`super::magnitude::magnitude`]).
//!
//! Aggregation is Minitron's "batch = L2, seq = mean": for activations `A[B, S, D]` of one
//! forward batch, `Σ_b (mean_s |A[b, s, :]|)²` is accumulated over every batch and the square
//! root taken at the end. Per unit:
//!
//! * **MLP channel** `j` of a layer: the aggregate of `down_proj`'s input, channel `j`;
//! * **query head** `h`: the aggregate of `o_proj`'s input viewed as `[heads, head_dim]`, then the
//!   L2 norm over `head_dim` (KV groups score as the L2 norm of their heads' scores);
//! * **hidden channel** `e`: `Σ` over every `input_layernorm` and `post_attention_layernorm`
//!   output of that norm's own aggregate (square root per norm, then the sum);
//! * **layer** (block influence, ShortGPT / Minitron depth): `Σ` over batches of
//!   `1 − mean_{b,s} cos(h_in, h_out)`, with `h_in`/`h_out` the block's raw input and output
//!   (not through the final norm).
//!
//! The pass walks the model block by block, as the quantizer does: the windows are embedded once
//! and only one block's activations are resident at a time.

use crate::PruneError;
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use slmc_model::CausalLm;
use slmc_model::rope::RopeTables;

/// How the scores were obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportanceMethod {
    /// Minitron activation importance over calibration windows.
    Activation {
        /// Calibration windows.
        windows: usize,
        /// Tokens per window.
        seq_len: usize,
    },
    /// Weight magnitudes (no data).
    Magnitude,
}

/// Importance of every prunable unit of one model; higher = more important.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Importance {
    /// Where the scores come from.
    pub method: ImportanceMethod,
    /// `[layer][query head]`.
    pub heads: Vec<Vec<f64>>,
    /// `[layer][MLP channel]`.
    pub mlp: Vec<Vec<f64>>,
    /// `[hidden channel]`.
    pub hidden: Vec<f64>,
    /// `[layer]`: block influence (activation) or the norm of what the block writes to the
    /// residual stream (magnitude). Low ⇒ removable.
    pub layers: Vec<f64>,
}

impl Importance {
    /// Score of each KV group of `layer`: the L2 norm of its query heads' scores.
    pub fn kv_groups(&self, layer: usize, num_kv_heads: usize) -> Vec<f64> {
        let heads = &self.heads[layer];
        let group = heads.len() / num_kv_heads.max(1);
        heads.chunks(group.max(1)).map(|g| g.iter().map(|s| s * s).sum::<f64>().sqrt()).collect()
    }

    /// Checks that the scores fit a model configured by `config` and are finite.
    pub fn check(&self, config: &slmc_model::ModelConfig) -> Result<(), PruneError> {
        let l = config.num_layers;
        let fits = self.heads.len() == l
            && self.mlp.len() == l
            && self.layers.len() == l
            && self.hidden.len() == config.hidden_size
            && self.heads.iter().all(|h| h.len() == config.num_heads)
            && self.mlp.iter().all(|m| m.len() == config.intermediate_size);
        if !fits {
            return Err(PruneError::Input(
                "the importance scores were computed for a model of another shape".into(),
            ));
        }
        let all = self.heads.iter().chain(&self.mlp).flatten().chain(&self.hidden).chain(&self.layers);
        if all.into_iter().any(|s| !s.is_finite()) {
            return Err(PruneError::Numerical("an importance score is NaN or infinite".into()));
        }
        Ok(())
    }
}

/// Running `Σ_b (mean_s |A[b, s, :]|)²` of one activation site.
struct Aggregate(Vec<f64>);

impl Aggregate {
    fn new(width: usize) -> Self {
        Self(vec![0.0; width])
    }

    /// Adds the batch `a: [B, S, D]`.
    fn add(&mut self, a: Tensor<3>) {
        let [_, _, d] = a.dims();
        let per_batch = a.abs().mean_dim(1).square().sum_dim(0).reshape([d]);
        for (acc, v) in self.0.iter_mut().zip(to_vec(per_batch)) {
            *acc += f64::from(v);
        }
    }

    /// The square roots.
    fn finish(self) -> Vec<f64> {
        self.0.into_iter().map(f64::sqrt).collect()
    }
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 data")
}

/// `1 − mean_{b,s} cos(x, y)` over the last dimension (torch's `cosine_similarity`, eps 1e-8).
fn one_minus_mean_cos(x: Tensor<3>, y: Tensor<3>) -> f64 {
    let dot = (x.clone() * y.clone()).sum_dim(2);
    let norms = (x.square().sum_dim(2) * y.square().sum_dim(2)).sqrt().clamp_min(1e-8);
    let mean: f32 = (dot / norms).mean().into_scalar();
    1.0 - f64::from(mean)
}

/// Minitron activation importance of `model` over calibration windows `calib` (token ids, all
/// the same length, no padding), `batch_size` windows per forward pass. `on_progress(done,
/// total)` is called after each decoder layer.
pub fn collect(
    model: &CausalLm,
    calib: &[Vec<u32>],
    batch_size: usize,
    on_progress: &mut dyn FnMut(usize, usize),
) -> Result<Importance, PruneError> {
    let c = &model.config;
    let seq = calib.first().map_or(0, Vec::len);
    if seq == 0 || calib.iter().any(|w| w.len() != seq) {
        return Err(PruneError::Input(
            "activation importance needs calibration windows, all of the same non-zero length".into(),
        ));
    }
    if batch_size == 0 {
        return Err(PruneError::Input("the importance batch size must be at least 1".into()));
    }
    if let Some(t) = calib.iter().flatten().find(|&&t| t as usize >= c.vocab_size) {
        return Err(PruneError::Input(format!(
            "calibration token id {t} is outside the vocabulary ({})",
            c.vocab_size
        )));
    }
    let device = model.device();
    let rope = RopeTables::for_model(c, 0, seq, &device);
    let mut xs: Vec<Tensor<3>> = calib
        .chunks(batch_size)
        .map(|batch| {
            let ids: Vec<i32> = batch.iter().flatten().map(|&t| t as i32).collect();
            let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [batch.len(), seq]), &device);
            model.embed(ids)
        })
        .collect();
    let total = model.layers.len();
    let mut hidden = vec![0.0; c.hidden_size];
    let (mut heads, mut mlp, mut layers) = (Vec::new(), Vec::new(), Vec::new());
    for (i, layer) in model.layers.iter().enumerate() {
        let mut norm_in = Aggregate::new(c.hidden_size);
        let mut norm_post = Aggregate::new(c.hidden_size);
        let mut context = Aggregate::new(c.q_dim());
        let mut channels = Aggregate::new(c.intermediate_size);
        let mut influence = 0.0;
        for x in xs.iter_mut() {
            let a = layer.input_layernorm.forward(x.clone());
            norm_in.add(a.clone());
            let ctx = layer.self_attn.context(a, &rope, None);
            context.add(ctx.clone());
            let attn = layer.self_attn.out_proj().forward(ctx);
            let h = layer.attn_residual(x.clone(), attn.clone());
            let m = layer.mlp_input(x.clone(), h.clone());
            norm_post.add(m.clone());
            let act = layer.mlp.hidden(m);
            channels.add(act.clone());
            let out = layer.output(x.clone(), attn, h, layer.mlp.out_proj().forward(act));
            influence += one_minus_mean_cos(x.clone(), out.clone());
            *x = out;
        }
        for (acc, v) in hidden.iter_mut().zip(norm_in.finish().into_iter().zip(norm_post.finish())) {
            *acc += v.0 + v.1;
        }
        let per_dim = context.finish();
        heads.push(per_dim.chunks(c.head_dim).map(|h| h.iter().map(|v| v * v).sum::<f64>().sqrt()).collect());
        mlp.push(channels.finish());
        layers.push(influence);
        on_progress(i + 1, total);
    }
    let importance = Importance {
        method: ImportanceMethod::Activation { windows: calib.len(), seq_len: seq },
        heads,
        mlp,
        hidden,
        layers,
    };
    importance.check(c)?;
    Ok(importance)
}
