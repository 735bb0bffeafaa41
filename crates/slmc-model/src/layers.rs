//! Building blocks of the decoder: grouped-query attention (separate or fused q/k/v, optional
//! QK-norm, soft-capping, per-layer RoPE), the gated (SwiGLU / GeGLU) or plain MLP and the
//! decoder layer in its three wirings (sequential, sandwich, parallel).

use crate::config::{Activation, Arch, BlockKind, LayerRope};
use crate::kernels;
use crate::kernels::attention::AttnParams;
pub use crate::norm::Norm;
use crate::proj::Proj;
use crate::rope::RopeTables;
use burn::module::Module;
use burn::prelude::*;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

/// Where a decoder layer's linear modules read their input: the activations the quantizer
/// collects Hessians of. The order is the true-sequential order of GPTQ (one group after another).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Site {
    /// Normed input of `q_proj`/`k_proj`/`v_proj` (or the fused `qkv_proj`).
    AttnInput,
    /// Attention output entering `o_proj`.
    AttnOutput,
    /// Normed input of `gate_proj`/`up_proj` (or the fused `gate_up_proj`).
    MlpInput,
    /// `silu(gate) * up` entering `down_proj`.
    MlpHidden,
}

impl Site {
    /// Every site, in forward (true-sequential) order.
    pub const ALL: [Site; 4] = [Site::AttnInput, Site::AttnOutput, Site::MlpInput, Site::MlpHidden];

    /// The module names (relative to the layer, e.g. `self_attn.q_proj`) fed by this site in
    /// architecture `arch` (separate or fused projections).
    pub fn modules(self, arch: Arch) -> &'static [&'static str] {
        arch.layer_linears()[self as usize]
    }
}

/// Per-layer key/value cache entry: `[batch, kv_heads, positions, head_dim]` each.
#[derive(Debug, Clone)]
pub struct LayerKv {
    /// Cached keys (already rotated).
    pub k: Tensor<4>,
    /// Cached values.
    pub v: Tensor<4>,
}

/// Multi-head attention with grouped key/value heads. Field names are the Hugging Face module
/// names; Phi-3 has one fused `qkv_proj` (output `[q | k | v]`) instead of `q_proj`, `k_proj`
/// and `v_proj`, and Phi-2 calls the output projection `dense`.
#[derive(Module, Debug)]
pub struct Attention {
    /// Query projection (separate layout).
    pub q_proj: Option<Proj>,
    /// Key projection (separate layout).
    pub k_proj: Option<Proj>,
    /// Value projection (separate layout).
    pub v_proj: Option<Proj>,
    /// Fused projection (Phi-3 layout).
    pub qkv_proj: Option<Proj>,
    /// Output projection.
    pub o_proj: Option<Proj>,
    /// Output projection (Phi-2's name).
    pub dense: Option<Proj>,
    /// Per-head norm of the queries before RoPE (Qwen3, Gemma 3).
    pub q_norm: Option<Norm>,
    /// Per-head norm of the keys before RoPE.
    pub k_norm: Option<Norm>,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads.
    pub num_kv_heads: usize,
    /// Per-head width.
    pub head_dim: usize,
    /// Sliding window (0 = attend to every earlier position).
    pub window: usize,
    /// Softmax scale, soft-cap and rotary table of this layer.
    #[module(skip)]
    pub spec: AttentionSpec,
}

/// The non-parameter settings of an [`Attention`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionSpec {
    /// Factor on `q·kᵀ`.
    pub scale: f64,
    /// `cap · tanh(s / cap)` on the scores before the mask.
    pub softcap: Option<f64>,
    /// The rotary table the layer applies.
    pub rope: LayerRope,
}

impl Attention {
    /// `x: [batch, seq, hidden]` at positions `start..start+seq`; `cache` holds the keys and
    /// values of positions `0..start` and is extended in place.
    pub fn forward(&self, x: Tensor<3>, rope: &RopeTables, cache: Option<&mut Option<LayerKv>>) -> Tensor<3> {
        self.out_proj().forward(self.context(x, rope, cache))
    }

    /// The output projection (`o_proj`, or Phi-2's `dense`).
    pub fn out_proj(&self) -> &Proj {
        self.o_proj.as_ref().or(self.dense.as_ref()).expect("CausalLm::new sets o_proj or dense")
    }

    /// The attention output before `o_proj` (`[batch, seq, heads · head_dim]`): the input the
    /// quantizer needs for `o_proj`.
    pub fn context(&self, x: Tensor<3>, rope: &RopeTables, cache: Option<&mut Option<LayerKv>>) -> Tensor<3> {
        let [b, s, _] = x.dims();
        let (nh, nkv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let (q, k, v) = match (&self.qkv_proj, &self.q_proj, &self.k_proj, &self.v_proj) {
            (Some(qkv_proj), ..) => {
                let qkv = qkv_proj.forward(x);
                (
                    qkv.clone().narrow(2, 0, nh * hd),
                    qkv.clone().narrow(2, nh * hd, nkv * hd),
                    qkv.narrow(2, (nh + nkv) * hd, nkv * hd),
                )
            }
            (None, Some(q), Some(k), Some(v)) => (q.forward(x.clone()), k.forward(x.clone()), v.forward(x)),
            _ => unreachable!("CausalLm::new always sets qkv_proj or all of q/k/v_proj"),
        };
        let heads = |t: Tensor<3>, n: usize| t.reshape([b, s, n, hd]).swap_dims(1, 2);
        let (mut q, mut k) = (heads(q, nh), heads(k, nkv));
        if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
            (q, k) = (qn.forward(q), kn.forward(k));
        }
        let (q, mut k) = match rope.for_layer(self.spec.rope) {
            Some(table) => (table.apply(q), table.apply(k)),
            None => (q, k),
        };
        let mut v = heads(v, nkv);
        if let Some(slot) = cache {
            if let Some(past) = slot.take() {
                k = Tensor::cat(vec![past.k, k], 2);
                v = Tensor::cat(vec![past.v, v], 2);
            }
            *slot = Some(LayerKv { k: k.clone(), v: v.clone() });
        }
        let total = k.dims()[2];
        if kernels::enabled("attention")
            && kernels::on_flex(&q)
            && kernels::on_flex(&k)
            && kernels::on_flex(&v)
        {
            let params = AttnParams {
                scale: self.spec.scale as f32,
                softcap: self.spec.softcap.unwrap_or(0.0) as f32,
                window: self.window,
                offset: total - s,
            };
            return kernels::attention(q, k, v, params).reshape([b, s, nh * hd]);
        }
        let (k, v) = (repeat_kv(k, nh / nkv), repeat_kv(v, nh / nkv));
        if !kernels::burn_attention_is_faithful(&q.device()) {
            return composed_attention(q, k, v, self.spec.scale, self.spec.softcap, self.window)
                .swap_dims(1, 2)
                .reshape([b, s, nh * hd]);
        }
        let mask = self.window_mask(s, total, &q.device());
        let options = AttentionModuleOptions {
            scale: Some(self.spec.scale),
            softcap: self.spec.softcap,
            is_causal: mask.is_none(),
        };
        attention(q, k, v, mask, None, options).swap_dims(1, 2).reshape([b, s, nh * hd])
    }

    /// A boolean mask (true = hidden) for `seq` queries at the end of `total` keys when a sliding
    /// window actually hides something; `None` means plain causal attention.
    fn window_mask(&self, seq: usize, total: usize, device: &Device) -> Option<Tensor<4, Bool>> {
        if self.window == 0 || total <= self.window {
            return None;
        }
        Some(hidden_mask(seq, total, self.window, device).unsqueeze::<4>())
    }
}

/// Causal (sliding-window, soft-capped) attention of `q: [b, h, s, d]` at the last `s` of the
/// `total` positions of `k`, `v: [b, h, total, d]`, written with burn's primitive operations,
/// for backends whose fused `attention` does not follow burn's contract. burn-tch 0.22.1 hands
/// the call to libtorch's `scaled_dot_product_attention`, which drops `softcap`, reads burn's
/// boolean mask (true = hidden) as torch's (true = attend), and aligns `is_causal` at the top left
/// (wrong whenever `s < total`, as in generation with a KV cache).
fn composed_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    scale: f64,
    softcap: Option<f64>,
    window: usize,
) -> Tensor<4> {
    let [_, _, s, _] = q.dims();
    let total = k.dims()[2];
    let mut scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(scale);
    if let Some(cap) = softcap {
        scores = scores.div_scalar(cap).tanh().mul_scalar(cap);
    }
    let hide = hidden_mask(s, total, window, &scores.device()).unsqueeze::<4>().expand(scores.dims());
    burn::tensor::activation::softmax(scores.mask_fill(hide, f32::NEG_INFINITY), 3).matmul(v)
}

/// `[seq, total]`, true where the query at position `total − seq + i` must not see key `j`:
/// later keys, and with a sliding `window > 0` keys `window` or more positions back
/// (transformers: key j is visible iff j ≤ q and j > q − window).
fn hidden_mask(seq: usize, total: usize, window: usize, device: &Device) -> Tensor<2, Bool> {
    let offset = total - seq;
    let hide: Vec<bool> = (0..seq)
        .flat_map(|qi| {
            let qpos = offset + qi;
            (0..total).map(move |kpos| kpos > qpos || (window > 0 && qpos - kpos >= window))
        })
        .collect();
    Tensor::<2, Bool>::from_data(TensorData::new(hide, [seq, total]), device)
}

/// Repeats each key/value head `n` times along the head dimension (grouped-query attention).
fn repeat_kv(x: Tensor<4>, n: usize) -> Tensor<4> {
    if n == 1 {
        return x;
    }
    let [b, h, s, d] = x.dims();
    x.unsqueeze_dim::<5>(2).expand([b, h, n, s, d]).reshape([b, h * n, s, d])
}

/// The feed-forward block: gated `down(act(gate(x)) * up(x))` (SwiGLU / GeGLU), with Phi-3's
/// fused `gate_up_proj` (output `[gate | up]`) instead of `gate_proj` and `up_proj`, or Phi-2's
/// plain `fc2(act(fc1(x)))`.
#[derive(Module, Debug)]
pub struct Mlp {
    /// Gate projection (through the activation; separate layout).
    pub gate_proj: Option<Proj>,
    /// Up projection (separate layout).
    pub up_proj: Option<Proj>,
    /// Fused projection (Phi-3 layout).
    pub gate_up_proj: Option<Proj>,
    /// Down projection.
    pub down_proj: Option<Proj>,
    /// Input projection of the plain MLP (Phi-2).
    pub fc1: Option<Proj>,
    /// Output projection of the plain MLP (Phi-2).
    pub fc2: Option<Proj>,
    /// The activation.
    #[module(skip)]
    pub activation: Activation,
}

impl Mlp {
    /// Applies the block to `[batch, seq, hidden]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.out_proj().forward(self.hidden(x))
    }

    /// The output projection (`down_proj`, or Phi-2's `fc2`).
    pub fn out_proj(&self) -> &Proj {
        self.down_proj.as_ref().or(self.fc2.as_ref()).expect("CausalLm::new sets down_proj or fc2")
    }

    /// The input of the output projection: `act(gate(x)) * up(x)`, or `act(fc1(x))`.
    pub fn hidden(&self, x: Tensor<3>) -> Tensor<3> {
        let act = |t: Tensor<3>| match self.activation {
            Activation::Silu => kernels::silu(t),
            Activation::GeluTanh => gelu_tanh(t),
        };
        let (gate, up) = match (&self.gate_up_proj, &self.gate_proj, &self.up_proj, &self.fc1) {
            (Some(gate_up_proj), ..) => {
                let gu = gate_up_proj.forward(x);
                let i = gu.dims()[2] / 2;
                (gu.clone().narrow(2, 0, i), gu.narrow(2, i, i))
            }
            (None, Some(gate), Some(up), _) => (gate.forward(x.clone()), up.forward(x)),
            (None, None, None, Some(fc1)) => return act(fc1.forward(x)),
            _ => unreachable!("CausalLm::new sets gate_up_proj, gate_proj and up_proj, or fc1"),
        };
        match self.activation {
            Activation::Silu => kernels::swiglu(gate, up),
            Activation::GeluTanh => gelu_tanh(gate) * up,
        }
    }
}

/// GELU, tanh approximation (`gelu_pytorch_tanh`, `gelu_new`):
/// `x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³)))`.
fn gelu_tanh(x: Tensor<3>) -> Tensor<3> {
    let k = (2.0 / std::f64::consts::PI).sqrt();
    let inner = (x.clone() + x.clone().powi_scalar(3) * 0.044715) * k;
    x * (inner.tanh() + 1.0) * 0.5
}

/// One pre-norm decoder layer (wired as [`DecoderLayer::block`] says).
#[derive(Module, Debug)]
pub struct DecoderLayer {
    /// Norm before attention (Phi-2: before attention and MLP).
    pub input_layernorm: Norm,
    /// Attention.
    pub self_attn: Attention,
    /// Norm before the MLP (Llama); norm of the attention output (Gemma 2/3); none (Phi-2).
    pub post_attention_layernorm: Option<Norm>,
    /// Norm before the MLP (Gemma 2/3).
    pub pre_feedforward_layernorm: Option<Norm>,
    /// Norm of the MLP output (Gemma 2/3).
    pub post_feedforward_layernorm: Option<Norm>,
    /// Feed-forward block.
    pub mlp: Mlp,
    /// Norm and residual wiring.
    #[module(skip)]
    pub block: BlockKind,
    /// Factor on each residual branch (Granite; 1 elsewhere).
    #[module(skip)]
    pub residual_multiplier: f64,
}

impl DecoderLayer {
    /// Applies the layer.
    pub fn forward(&self, x: Tensor<3>, rope: &RopeTables, cache: Option<&mut Option<LayerKv>>) -> Tensor<3> {
        let normed = self.input_layernorm.forward(x.clone());
        let attn = self.self_attn.forward(normed.clone(), rope, cache);
        if self.block == BlockKind::Parallel {
            // The MLP reads the same normed input; transformers sums attn + mlp, then the residual.
            return attn + self.mlp.forward(normed) + x;
        }
        self.forward_from_attn(x, attn)
    }

    /// The layer output from its input `x` and the attention output `attn` (after the output
    /// projection): the rest of [`DecoderLayer::forward`].
    pub fn forward_from_attn(&self, x: Tensor<3>, attn: Tensor<3>) -> Tensor<3> {
        let h = self.attn_residual(x.clone(), attn.clone());
        let mlp = self.mlp.forward(self.mlp_input(x.clone(), h.clone()));
        self.output(x, attn, h, mlp)
    }

    /// The layer output from its input `x`, the attention output `attn`, the residual stream
    /// after attention `h` ([`DecoderLayer::attn_residual`]) and the MLP output.
    pub fn output(&self, x: Tensor<3>, attn: Tensor<3>, h: Tensor<3>, mlp: Tensor<3>) -> Tensor<3> {
        if self.block == BlockKind::Parallel {
            // transformers sums attn + mlp first, then the residual.
            return attn + mlp + x;
        }
        self.mlp_residual(h, mlp)
    }

    /// The residual stream after attention, given the layer input and the attention output
    /// (`o_proj`'s result). Not meaningful for the parallel block, whose MLP reads the input.
    pub fn attn_residual(&self, x: Tensor<3>, attn: Tensor<3>) -> Tensor<3> {
        match (self.block, &self.post_attention_layernorm) {
            (BlockKind::Sandwich, Some(n)) => x + n.forward(attn),
            _ => x + self.scaled(attn),
        }
    }

    /// The MLP's input, given the layer input `x` and the residual stream after attention `h`.
    pub fn mlp_input(&self, x: Tensor<3>, h: Tensor<3>) -> Tensor<3> {
        match self.block {
            BlockKind::Sequential => self.norm(&self.post_attention_layernorm).forward(h),
            BlockKind::Sandwich => self.norm(&self.pre_feedforward_layernorm).forward(h),
            BlockKind::Parallel => self.input_layernorm.forward(x),
        }
    }

    /// The layer output, given `h` and the MLP output (sequential and sandwich blocks).
    fn mlp_residual(&self, h: Tensor<3>, mlp: Tensor<3>) -> Tensor<3> {
        match (self.block, &self.post_feedforward_layernorm) {
            (BlockKind::Sandwich, Some(n)) => h + n.forward(mlp),
            _ => h + self.scaled(mlp),
        }
    }

    fn scaled(&self, branch: Tensor<3>) -> Tensor<3> {
        if self.residual_multiplier == 1.0 { branch } else { branch * self.residual_multiplier }
    }

    fn norm<'a>(&self, n: &'a Option<Norm>) -> &'a Norm {
        n.as_ref().expect("CausalLm::new creates the norms its block kind uses")
    }

    /// The linear module at `name` (relative to the layer: `self_attn.q_proj`, `mlp.down_proj`…).
    pub fn linear(&self, name: &str) -> Option<&Proj> {
        let (a, m) = (&self.self_attn, &self.mlp);
        match name {
            "self_attn.q_proj" => a.q_proj.as_ref(),
            "self_attn.k_proj" => a.k_proj.as_ref(),
            "self_attn.v_proj" => a.v_proj.as_ref(),
            "self_attn.qkv_proj" => a.qkv_proj.as_ref(),
            "self_attn.o_proj" => a.o_proj.as_ref(),
            "self_attn.dense" => a.dense.as_ref(),
            "mlp.gate_proj" => m.gate_proj.as_ref(),
            "mlp.up_proj" => m.up_proj.as_ref(),
            "mlp.gate_up_proj" => m.gate_up_proj.as_ref(),
            "mlp.down_proj" => m.down_proj.as_ref(),
            "mlp.fc1" => m.fc1.as_ref(),
            "mlp.fc2" => m.fc2.as_ref(),
            _ => None,
        }
    }

    /// Mutable [`DecoderLayer::linear`].
    pub fn linear_mut(&mut self, name: &str) -> Option<&mut Proj> {
        let (a, m) = (&mut self.self_attn, &mut self.mlp);
        match name {
            "self_attn.q_proj" => a.q_proj.as_mut(),
            "self_attn.k_proj" => a.k_proj.as_mut(),
            "self_attn.v_proj" => a.v_proj.as_mut(),
            "self_attn.qkv_proj" => a.qkv_proj.as_mut(),
            "self_attn.o_proj" => a.o_proj.as_mut(),
            "self_attn.dense" => a.dense.as_mut(),
            "mlp.gate_proj" => m.gate_proj.as_mut(),
            "mlp.up_proj" => m.up_proj.as_mut(),
            "mlp.gate_up_proj" => m.gate_up_proj.as_mut(),
            "mlp.down_proj" => m.down_proj.as_mut(),
            "mlp.fc1" => m.fc1.as_mut(),
            "mlp.fc2" => m.fc2.as_mut(),
            _ => None,
        }
    }
}
