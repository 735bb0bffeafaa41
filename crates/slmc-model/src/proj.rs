//! The decoder's linear projection, `y = x·W + b`, with an optional low-rank adapter
//! (LoRA / rsLoRA / DoRA, `docs/algorithms.md` §8.1–8.3) and an optional frozen NF4 base (QLoRA).
//!
//! The parameter paths are Hugging Face's (`….q_proj.weight`, `….q_proj.bias`); the adapter's
//! factors live under `….q_proj.lora.{a,b,magnitude}`, which [`crate::weights`] never reads or
//! writes as model tensors.

use crate::kernels::linear;
use crate::model::in_dtype;
use burn::module::{Module, Param};
use burn::prelude::*;
use burn::tensor::Distribution;
use slmc_formats::nf4::Nf4Tensor;
use std::sync::Arc;

/// A low-rank adapter on one projection: `Δy = scale · dropout(x)·A·B` (burn layout: `A: [in, r]`,
/// `B: [r, out]`; PEFT's `lora_A` / `lora_B` are their transposes). With DoRA, the output is
/// rescaled per output channel by `magnitude / ‖W + scale·A·B‖` (the norm taken per output
/// channel over the inputs, detached from the gradient as in PEFT and the paper).
#[derive(Module, Debug)]
pub struct LoraBranch {
    /// `A`, `[in, r]`.
    pub a: Param<Tensor<2>>,
    /// `B`, `[r, out]`.
    pub b: Param<Tensor<2>>,
    /// DoRA's magnitude vector `m`, `[out]`.
    pub magnitude: Option<Param<Tensor<1>>>,
    /// The factor on `A·B` (`alpha / r`, or `alpha / √r` for rsLoRA).
    pub scale: f64,
    /// Dropout probability on the adapter's input while training.
    pub dropout: f64,
}

/// A frozen base weight held as NF4 (QLoRA) and dequantized each time the projection runs.
#[derive(Debug, Clone)]
pub struct PackedWeight {
    /// The codes, in Hugging Face layout `[out, in]`.
    pub nf4: Arc<Nf4Tensor>,
}

/// A linear projection (see the module docs).
#[derive(Module, Debug)]
pub struct Proj {
    /// `W`, `[in, out]` (the transpose of Hugging Face's `[out, in]`). Empty (`[0, 0]`) while the
    /// base is [`Proj::packed`].
    pub weight: Param<Tensor<2>>,
    /// `b`, `[out]`.
    pub bias: Option<Param<Tensor<1>>>,
    /// The adapter, if one is attached.
    pub lora: Option<LoraBranch>,
    /// The NF4 base, when the weight is stored quantized.
    #[module(skip)]
    pub packed: Option<PackedWeight>,
}

impl Proj {
    /// A plain projection.
    pub fn new(weight: Tensor<2>, bias: Option<Tensor<1>>) -> Self {
        Self {
            weight: Param::from_tensor(weight),
            bias: bias.map(Param::from_tensor),
            lora: None,
            packed: None,
        }
    }

    /// The base weight `[in, out]`, dequantized if it is stored as NF4.
    pub fn base_weight(&self) -> Tensor<2> {
        match &self.packed {
            None => self.weight.val(),
            Some(p) => {
                let [out, inp] = p.nf4.shape();
                let device = self.weight.val().device();
                Tensor::<2>::from_data(TensorData::new(p.nf4.dequantize(), [out, inp]), &device).transpose()
            }
        }
    }

    /// `[in, out]` of the base weight.
    pub fn dims(&self) -> [usize; 2] {
        match &self.packed {
            None => self.weight.val().dims(),
            Some(p) => {
                let [out, inp] = p.nf4.shape();
                [inp, out]
            }
        }
    }

    /// Applies the projection to `[batch, seq, in]`. The weights are cast to the activations'
    /// dtype (bf16 compute over f32 master weights: the cast is part of the graph, so the
    /// gradients reach the f32 parameters).
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let dtype = x.dtype();
        let bias = self.bias.as_ref().map(|b| in_dtype(b.val(), dtype));
        let Some(lora) = &self.lora else {
            return linear(x, in_dtype(self.base_weight(), dtype), bias);
        };
        if dtype != burn::tensor::DType::F32 {
            // Adapters compute in f32 (PEFT upcasts the adapter path too).
            return self.forward(x.cast(burn::tensor::DType::F32)).cast(dtype);
        }
        let w = self.base_weight();
        let a = lora.a.val();
        let training = a.is_autodiff() && lora.dropout > 0.0;
        let xd = if training { dropout(x.clone(), lora.dropout) } else { x.clone() };
        let delta = linear(linear(xd.clone(), a.clone(), None), lora.b.val(), None) * lora.scale;
        let Some(m) = &lora.magnitude else {
            return linear(x, w, bias) + delta;
        };
        // DoRA: f = m / ‖W + s·A·B‖ per output channel (norm detached);
        // y = base(x) + (f − 1)·(x_d·W) + f·Δ, as PEFT computes it.
        let v = (w.clone() + a.matmul(lora.b.val()) * lora.scale).detach();
        let norm = v.square().sum_dim(0).sqrt(); // [1, out]
        let f = (m.val().unsqueeze::<2>() / norm).unsqueeze::<3>(); // [1, 1, out]
        if !training {
            // Without dropout both products are x·W: y = f·(x·W + Δ) + b, one product.
            let y = (linear(x, w, None) + delta) * f;
            return match bias {
                Some(b) => y + b.unsqueeze::<3>(),
                None => y,
            };
        }
        let base = linear(x, w.clone(), bias);
        base + linear(xd, w, None) * (f.clone() - 1.0) + delta * f
    }

    /// `W + scale·A·B` (DoRA: rescaled per output channel), `[in, out]`: the weight that gives
    /// the adapted projection's outputs without the adapter.
    pub fn merged_weight(&self) -> Tensor<2> {
        let w = self.base_weight();
        let Some(lora) = &self.lora else { return w };
        let v = w + lora.a.val().matmul(lora.b.val()) * lora.scale;
        match &lora.magnitude {
            None => v,
            Some(m) => {
                let norm = v.clone().square().sum_dim(0).sqrt();
                v * (m.val().unsqueeze::<2>() / norm)
            }
        }
    }

    /// Folds the adapter (and an NF4 base) into a dense weight; the projection is plain after.
    pub fn merge(self) -> Self {
        let weight = self.merged_weight();
        Self { weight: self.weight.map(|_| weight), bias: self.bias, lora: None, packed: None }
    }
}

/// Inverted dropout: zeroes each value with probability `p` and scales the rest by `1 / (1 − p)`.
fn dropout(x: Tensor<3>, p: f64) -> Tensor<3> {
    let keep = Tensor::<3>::random(x.dims(), Distribution::Bernoulli(1.0 - p), &x.device());
    x * keep / (1.0 - p)
}
