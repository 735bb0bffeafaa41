//! Chunked vocabulary losses: the LM head and every token-level loss over it (cross-entropy, the
//! KD divergences, the top-K cache loss) run over chunks of at most `chunk` flattened positions,
//! each chunk backpropagated on its own, so that `[batch, seq, vocab]` logits, their softmax
//! copies and their gradients never exist whole — for the student nor for a live teacher
//! (torchtune's chunked output losses, with the backward pass chunked as well).
//!
//! How: the trunk runs to the final-norm hidden states `h: [B, T, H]`; for each chunk of rows of
//! `h` (a detached leaf), the head's logits and the chunk's share of the loss are built and
//! differentiated, giving the head parameters' gradients and `∂L/∂h` for those rows; the trunk is
//! then differentiated once through `Σ h · ∂L/∂h` (plus any loss terms on intermediate layers).
//! The loss is a token mean, so the chunks' shares add up to it and the gradients are exactly the
//! unchunked ones up to f32 summation order.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::Gradients;
use slmc_model::CausalLm;
use std::ops::Range;

/// The loss share of one chunk: student logits `[N, V]` for the flattened positions `range` of
/// the batch (row-major over `[B, T]`) → a scalar, already divided by the batch's normaliser
/// (and by the gradient-accumulation divisor), so that the shares of all chunks sum to the loss.
pub type ChunkLoss<'a> = dyn Fn(Tensor<2>, Range<usize>) -> Tensor<1> + 'a;

/// Loss terms on intermediate decoder-layer outputs (hidden-state distillation).
pub struct LayerTerms<'a> {
    /// The decoder layers (0-based) whose outputs the terms read, one per term.
    pub layers: Vec<usize>,
    /// The term of slot `i` on the output `[B, T, H]` of `layers[i]`, as it enters the loss
    /// (weighted and divided by the accumulation divisor).
    pub term: &'a dyn Fn(usize, Tensor<3>) -> Tensor<1>,
}

impl LayerTerms<'_> {
    /// No intermediate terms.
    pub fn none() -> LayerTerms<'static> {
        LayerTerms { layers: Vec::new(), term: &|_, _| unreachable!("no layer terms") }
    }
}

/// Per-token weights of a batch flattened to `[B·T]`, and the normaliser of the token mean (the
/// number of tokens, or of trained tokens when weights are given).
pub struct TokenMean {
    weights: Option<Tensor<1>>,
    norm: f32,
}

impl TokenMean {
    /// The mean over all `n` positions (`weights: None`) or over those of weight 1.
    pub fn new(n: usize, weights: Option<Tensor<2>>) -> Self {
        match weights {
            None => Self { weights: None, norm: n as f32 },
            Some(w) => {
                let norm: f32 = w.clone().sum().into_scalar();
                Self { weights: Some(w.reshape([n])), norm }
            }
        }
    }

    /// The chunk's share of the mean: `Σ values · weight / normaliser` over positions `range`,
    /// `values: [N]` being the per-token losses of those positions.
    pub fn share(&self, values: Tensor<1>, range: Range<usize>) -> Tensor<1> {
        let sum = match &self.weights {
            None => values.sum(),
            Some(w) => (values * w.clone().narrow(0, range.start, range.len())).sum(),
        };
        sum / self.norm
    }
}

/// Moves the gradients of `module`'s parameters from `src` into `dst`, adding to any already
/// there.
struct Merge<'a> {
    src: &'a mut GradientsParams,
    dst: &'a mut GradientsParams,
}

impl ModuleVisitor for Merge<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        if let Some(g) = self.src.remove::<D>(p.id) {
            let g = match self.dst.remove::<D>(p.id) {
                Some(prev) => prev + g,
                None => g,
            };
            self.dst.register::<D>(p.id, g);
        }
    }
}

/// Adds the gradients `grads` holds for `module`'s parameters into `total`.
pub(crate) fn collect<M: Module>(grads: &mut Gradients, module: &M, total: &mut GradientsParams) {
    let mut part = GradientsParams::from_module(grads, module);
    merge(module, &mut part, total);
}

/// Adds `part`'s gradients of `module`'s parameters into `total`.
pub(crate) fn merge<M: Module>(module: &M, part: &mut GradientsParams, total: &mut GradientsParams) {
    module.visit(&mut Merge { src: part, dst: total });
}

/// Logits `[N, V]` of the hidden-state rows `h: [N, H]`.
pub fn head_logits(lm: &CausalLm, h: Tensor<2>) -> Tensor<2> {
    let [n, _] = h.dims();
    let logits = lm.lm_logits(h.unsqueeze_dim::<3>(0));
    let v = logits.dims()[2];
    logits.reshape([n, v])
}

/// The head part of a step: the loss value over every chunk of at most `chunk` positions of the
/// final-norm hidden states `hn: [B, T, H]` (0 = one chunk), the gradients of `model`'s parameters
/// the head uses (LM head, or the tied embeddings), and `∂L/∂hn` (a plain tensor). Only one
/// chunk's logits and graph exist at a time.
pub fn head_chunks<M: Module>(
    model: &M,
    lm: &CausalLm,
    hn: Tensor<3>,
    chunk: usize,
    loss: &ChunkLoss<'_>,
) -> (f32, GradientsParams, Tensor<3>) {
    let [b, t, hd] = hn.dims();
    let n = b * t;
    let chunk = if chunk == 0 { n } else { chunk.min(n) };
    let flat = hn.inner().reshape([n, hd]);
    let mut total = GradientsParams::new();
    let mut value = 0.0f32;
    let mut parts = Vec::with_capacity(n.div_ceil(chunk));
    for start in (0..n).step_by(chunk) {
        let len = chunk.min(n - start);
        let rows = Tensor::from_inner(flat.clone().narrow(0, start, len)).require_grad();
        let share = loss(head_logits(lm, rows.clone()), start..start + len);
        value += share.clone().into_scalar::<f32>();
        let mut grads = share.backward();
        parts.push(rows.grad(&grads).expect("the loss depends on every hidden state"));
        collect(&mut grads, model, &mut total);
    }
    (value, total, Tensor::cat(parts, 0).reshape([b, t, hd]))
}

/// Loss value and gradients of every trainable parameter of `model` (whose language model is
/// `lm`, on an autodiff device) for `inputs`, with the vocabulary loss `loss` computed over chunks
/// of `chunk` positions ([`head_chunks`]) and `terms` on intermediate layer outputs.
pub fn loss_and_grads<M: Module>(
    model: &M,
    lm: &CausalLm,
    inputs: Tensor<2, Int>,
    chunk: usize,
    loss: &ChunkLoss<'_>,
    terms: &LayerTerms<'_>,
) -> (f32, GradientsParams) {
    let (hn, hidden) = lm.hidden_with_layers(inputs, &terms.layers);
    // With bf16 activations the head and the losses run in f32 (the cast is in the graph).
    let hn = slmc_model::model::to_f32(hn);
    let (mut value, head, upstream) = head_chunks(model, lm, hn.clone(), chunk, loss);
    let mut trunk_loss = (hn * upstream).sum();
    for (slot, h) in hidden.into_iter().enumerate() {
        let term = (terms.term)(slot, h);
        value += term.clone().into_scalar::<f32>();
        trunk_loss = trunk_loss + term;
    }
    let mut grads = GradientsParams::from_grads(trunk_loss.backward(), model);
    let mut head = head;
    merge(model, &mut head, &mut grads);
    (value, grads)
}
