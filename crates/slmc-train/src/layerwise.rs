//! Layer-wise gradient checkpointing: the forward pass keeps only each decoder layer's input;
//! the backward pass recomputes one layer at a time and backpropagates through it alone. Peak
//! memory holds one layer's activations (and, for QLoRA, one layer's dequantized weights)
//! instead of the whole network's, for one extra forward pass of compute — what
//! `gradient_checkpointing=True` does in transformers, and what the QLoRA recipe uses.
//!
//! Dropout draws the same masks in both passes: the device RNG is reseeded before each layer
//! from the step's seed.

use crate::chunked::{ChunkLoss, LayerTerms, collect, head_chunks, merge};
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::prelude::*;
use slmc_model::CausalLm;
use slmc_model::rope::RopeTables;

fn layer_seed(seed: u64, layer: usize) -> u64 {
    seed ^ (layer as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The loss (its value) of `inputs` under `model`, whose language model is `lm` (on an autodiff
/// device), and the gradients of every trainable parameter of `model`, computed layer by layer.
/// The vocabulary loss `loss` runs over chunks of `chunk` positions of the final-norm hidden
/// states ([`crate::chunked::head_chunks`]); `terms` add losses on decoder-layer outputs
/// (hidden-state distillation), whose gradients enter the backward pass at that layer. `seed`
/// fixes the dropout masks of this micro-batch.
pub fn loss_and_grads<M: Module>(
    model: &M,
    lm: &CausalLm,
    inputs: Tensor<2, Int>,
    chunk: usize,
    loss: &ChunkLoss<'_>,
    terms: &LayerTerms<'_>,
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
    // The terms on the output of decoder layer `l`, i.e. on the input kept for layer `l + 1` (or
    // for the final norm).
    let mut value = 0.0f32;
    let mut terms_on = |l: usize, out: &Tensor<3>, acc: Tensor<1>| {
        let mut acc = acc;
        for (slot, _) in terms.layers.iter().enumerate().filter(|(_, t)| **t == l) {
            let term = (terms.term)(slot, slmc_model::model::to_f32(out.clone()));
            value += term.clone().into_scalar::<f32>();
            acc = acc + term;
        }
        acc
    };
    // Head: final norm, then the LM head and the loss chunk by chunk.
    let last = lm.layers.len();
    let h = xs.pop().expect("the embeddings are always kept").require_grad();
    let hn = slmc_model::model::to_f32(lm.final_norm().forward(h.clone()));
    let (head_value, mut total, head_upstream) = head_chunks(model, lm, hn.clone(), chunk, loss);
    let mut backprop = (hn * head_upstream).sum();
    if last > 0 {
        backprop = terms_on(last - 1, &h, backprop);
    }
    let mut grads = backprop.backward();
    let mut upstream = h.grad(&grads).expect("the loss depends on the last hidden state");
    collect(&mut grads, model, &mut total);
    // Layers, last to first: recompute, backpropagate the upstream gradient.
    for (l, layer) in lm.layers.iter().enumerate().rev() {
        device.seed(layer_seed(seed, l));
        let x = xs.pop().expect("one input per layer").require_grad();
        let y = layer.forward(x.clone(), &rope, None);
        let mut backprop = slmc_model::model::to_f32((y * upstream).sum());
        if l > 0 {
            backprop = terms_on(l - 1, &x, backprop);
        }
        let mut grads = backprop.backward();
        upstream = x.grad(&grads).expect("a layer's output depends on its input");
        collect(&mut grads, model, &mut total);
    }
    // Embeddings, when they train (modules-to-save).
    if embedded.is_tracked() {
        let mut grads = slmc_model::model::to_f32((embedded * upstream).sum()).backward();
        let mut part = GradientsParams::from_module(&mut grads, model);
        merge(model, &mut part, &mut total);
    }
    (value + head_value, total)
}
