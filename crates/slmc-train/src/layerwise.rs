//! Layer-wise gradient checkpointing: the forward pass keeps only each decoder layer's input;
//! the backward pass recomputes one layer at a time and backpropagates through it alone. Peak
//! memory holds one layer's activations (and, for QLoRA, one layer's dequantized weights)
//! instead of the whole network's, for one extra forward pass of compute — what
//! `gradient_checkpointing=True` does in transformers, and what the QLoRA recipe uses.
//!
//! Dropout draws the same masks in both passes: the device RNG is reseeded before each layer
//! from the step's seed.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::Gradients;
use slmc_model::CausalLm;
use slmc_model::rope::RopeTables;

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

fn collect<M: Module>(grads: &mut Gradients, module: &M, total: &mut GradientsParams) {
    let mut part = GradientsParams::from_module(grads, module);
    module.visit(&mut Merge { src: &mut part, dst: total });
}

fn layer_seed(seed: u64, layer: usize) -> u64 {
    seed ^ (layer as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The loss (its value) of `inputs` under `lm` (on an autodiff device) and the gradients of every trainable
/// parameter, computed layer by layer. `head_loss` turns the logits `[B, T, V]` into the scalar
/// loss (already scaled for gradient accumulation). `seed` fixes the dropout masks of this
/// micro-batch.
pub fn loss_and_grads(
    lm: &CausalLm,
    inputs: Tensor<2, Int>,
    head_loss: &dyn Fn(Tensor<3>) -> Tensor<1>,
    seed: u64,
) -> (f32, GradientsParams) {
    let device = lm.device();
    let [_, seq] = inputs.dims();
    let c = &lm.config;
    let rope = RopeTables::for_model(c, 0, seq, &device);
    // Forward: keep each layer's input, detached (no graph survives a layer).
    let embedded = lm.embed(inputs.clone());
    let plain = lm.valid();
    let plain_rope = RopeTables::for_model(c, 0, seq, &device.clone().without_autodiff());
    let mut x = embedded.clone().inner();
    let mut xs = vec![Tensor::from_inner(x.clone())];
    for (l, layer) in plain.layers.iter().enumerate() {
        device.seed(layer_seed(seed, l));
        x = layer.forward(x, &plain_rope, None);
        xs.push(Tensor::from_inner(x.clone()));
    }
    let mut total = GradientsParams::new();
    // Head: final norm, LM head, loss.
    let h = xs.pop().expect("the embeddings are always kept").require_grad();
    let loss = head_loss(lm.lm_logits(lm.final_norm().forward(h.clone())));
    let value: f32 = loss.clone().into_scalar();
    let mut grads = loss.backward();
    let mut upstream = h.grad(&grads).expect("the loss depends on the last hidden state");
    collect(&mut grads, lm.final_norm(), &mut total);
    if let Some(head) = &lm.lm_head {
        collect(&mut grads, head, &mut total);
    }
    collect(&mut grads, &lm.embed_tokens, &mut total); // tied embeddings
    // Layers, last to first: recompute, backpropagate the upstream gradient.
    for (l, layer) in lm.layers.iter().enumerate().rev() {
        device.seed(layer_seed(seed, l));
        let x = xs.pop().expect("one input per layer").require_grad();
        let y = layer.forward(x.clone(), &rope, None);
        let mut grads = (y * upstream).sum().backward();
        upstream = x.grad(&grads).expect("a layer's output depends on its input");
        collect(&mut grads, layer, &mut total);
    }
    // Embeddings, when they train (modules-to-save).
    if embedded.is_tracked() {
        let mut grads = (embedded * upstream).sum().backward();
        collect(&mut grads, &lm.embed_tokens, &mut total);
    }
    (value, total)
}
