//! The causal language model: embeddings, decoder layers, final norm and LM head.
//!
//! Module field names mirror the Hugging Face module names, so a burn parameter path such as
//! `layers.3.self_attn.q_proj.weight` is the Hugging Face tensor name without the `model.`
//! prefix (see [`crate::weights::hf_name`]).

use crate::config::{BlockKind, ModelConfig, NormKind};
use crate::kernels::linear;
use crate::layers::{Attention, AttentionSpec, DecoderLayer, LayerKv, Mlp, Norm};
use crate::proj::Proj;
use crate::rope::RopeTables;
use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::nn::Embedding;
use burn::prelude::*;
use burn::tensor::DType;

/// A decoder-only causal LM (every supported family; see [`crate::config::Features`]).
#[derive(Module, Debug)]
pub struct CausalLm {
    /// Token embeddings `[vocab, hidden]`.
    pub embed_tokens: Embedding,
    /// Decoder layers.
    pub layers: Vec<DecoderLayer>,
    /// Final norm (`model.norm`).
    pub norm: Option<Norm>,
    /// Final norm under Phi-2's name (`model.final_layernorm`).
    pub final_layernorm: Option<Norm>,
    /// Output projection; `None` when tied to the embeddings.
    pub lm_head: Option<Proj>,
    /// The output bias of a tied head (Phi-2 ties only the weight; Hugging Face `lm_head.bias`).
    pub lm_head_bias: Option<Param<Tensor<1>>>,
    /// The configuration the model was built from.
    #[module(skip)]
    pub config: ModelConfig,
    /// The settings of the attached LoRA adapters ([`crate::lora::attach`]), if any.
    #[module(skip)]
    pub lora_config: Option<slmc_formats::adapter::LoraConfig>,
    /// The dtype activations are computed in ([`CausalLm::with_compute_dtype`]); logits are
    /// returned in f32 whatever it is.
    #[module(skip)]
    pub compute_dtype: DType,
}

/// Keys and values of every layer for the positions processed so far.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<Option<LayerKv>>,
    len: usize,
}

impl KvCache {
    /// An empty cache for `model`.
    pub fn new(model: &CausalLm) -> Self {
        Self { layers: vec![None; model.layers.len()], len: 0 }
    }

    /// Number of positions cached.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// How a new model's weights are filled.
#[derive(Debug, Clone, Copy)]
pub enum Init {
    /// Uninitialised memory, to be overwritten by a loader.
    Empty,
    /// Normal(0, std) matrices, norm weights 1, biases 0 (the transformers initialisation),
    /// drawn from a host RNG seeded by `seed`, so the result does not depend on other threads
    /// using the device's global RNG.
    Normal {
        /// Standard deviation of weight matrices (transformers' `initializer_range`, 0.02).
        std: f64,
        /// Seed of the draw.
        seed: u64,
    },
}

/// `n` Normal(0, std) values from a seeded RNG (Box–Muller).
pub(crate) fn normal_values(n: usize, std: f64, rng: &mut rand::rngs::StdRng) -> Vec<f32> {
    use rand::RngExt;
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt() * std;
        let t = 2.0 * std::f64::consts::PI * u2;
        out.push((r * t.cos()) as f32);
        out.push((r * t.sin()) as f32);
    }
    out.truncate(n);
    out
}

pub use slmc_config::hf_config::split_layer_name;

impl CausalLm {
    /// The decoder linear module with Hugging Face name `name`
    /// (`model.layers.3.mlp.down_proj`), if the model has it.
    pub fn decoder_linear(&self, name: &str) -> Option<&Proj> {
        let (l, module) = split_layer_name(name)?;
        self.layers.get(l)?.linear(module)
    }

    /// [`CausalLm::decoder_linear`], mutable.
    pub fn decoder_linear_mut(&mut self, name: &str) -> Option<&mut Proj> {
        let (l, module) = split_layer_name(name)?;
        self.layers.get_mut(l)?.linear_mut(module)
    }

    /// Builds a model with the shapes `config` describes.
    pub fn new(config: &ModelConfig, init: Init, device: &Device) -> Self {
        let c = config;
        let rng =
            std::cell::RefCell::new(<rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(match init {
                Init::Normal { seed, .. } => seed,
                Init::Empty => 0,
            }));
        let matrix = |rows: usize, cols: usize| -> Tensor<2> {
            match init {
                Init::Empty => Tensor::empty([rows, cols], device),
                Init::Normal { std, .. } => Tensor::from_data(
                    TensorData::new(normal_values(rows * cols, std, &mut rng.borrow_mut()), [rows, cols]),
                    device,
                ),
            }
        };
        let vector = |n: usize, fill: f32| -> Tensor<1> {
            match init {
                Init::Empty => Tensor::empty([n], device),
                Init::Normal { .. } => Tensor::full([n], fill, device),
            }
        };
        // burn's Linear stores [in, out].
        let lin = |d_in: usize, d_out: usize, bias: bool| {
            Proj::new(matrix(d_in, d_out), bias.then(|| vector(d_out, 0.0)))
        };
        let f = &c.features;
        let norm_of = |kind: NormKind, n: usize| {
            let fill = if kind == NormKind::RmsUnitOffset { 0.0 } else { 1.0 };
            Norm::new(
                kind,
                vector(n, fill),
                (kind == NormKind::Layer).then(|| vector(n, 0.0)),
                c.rms_norm_eps,
            )
        };
        let norm = |n: usize| norm_of(f.norm, n);
        let (h, i) = (c.hidden_size, c.intermediate_size);
        let fused = c.arch.fused_projections();
        let plain_mlp = c.arch.ungated_mlp();
        let separate = !fused;
        let phi = c.arch == crate::config::Arch::Phi;
        let layers = (0..c.num_layers)
            .map(|l| DecoderLayer {
                input_layernorm: norm(h),
                self_attn: Attention {
                    q_proj: separate.then(|| lin(h, c.q_dim(), c.qkv_bias)),
                    k_proj: separate.then(|| lin(h, c.kv_dim(), c.qkv_bias)),
                    v_proj: separate.then(|| lin(h, c.kv_dim(), c.qkv_bias)),
                    qkv_proj: fused.then(|| lin(h, c.q_dim() + 2 * c.kv_dim(), c.qkv_bias)),
                    o_proj: (!phi).then(|| lin(c.q_dim(), h, c.o_bias)),
                    dense: phi.then(|| lin(c.q_dim(), h, c.o_bias)),
                    q_norm: f.qk_norm.map(|k| norm_of(k, c.head_dim)),
                    k_norm: f.qk_norm.map(|k| norm_of(k, c.head_dim)),
                    num_heads: c.num_heads,
                    num_kv_heads: c.num_kv_heads,
                    head_dim: c.head_dim,
                    window: c.sliding_windows.get(l).copied().flatten().unwrap_or(0),
                    spec: AttentionSpec {
                        scale: f.attention_scale,
                        softcap: f.attn_softcap,
                        rope: c.layer_rope(l),
                    },
                },
                post_attention_layernorm: (f.block != BlockKind::Parallel).then(|| norm(h)),
                pre_feedforward_layernorm: (f.block == BlockKind::Sandwich).then(|| norm(h)),
                post_feedforward_layernorm: (f.block == BlockKind::Sandwich).then(|| norm(h)),
                mlp: Mlp {
                    gate_proj: (separate && !plain_mlp).then(|| lin(h, i, c.mlp_bias)),
                    up_proj: (separate && !plain_mlp).then(|| lin(h, i, c.mlp_bias)),
                    gate_up_proj: fused.then(|| lin(h, 2 * i, c.mlp_bias)),
                    down_proj: (!plain_mlp).then(|| lin(i, h, c.mlp_bias)),
                    fc1: plain_mlp.then(|| lin(h, i, c.mlp_bias)),
                    fc2: plain_mlp.then(|| lin(i, h, c.mlp_bias)),
                    activation: f.activation,
                },
                block: f.block,
                residual_multiplier: f.residual_multiplier,
            })
            .collect();
        let model = Self {
            embed_tokens: Embedding { weight: Param::from_tensor(matrix(c.vocab_size, h)) },
            layers,
            norm: (!phi).then(|| norm(h)),
            final_layernorm: phi.then(|| norm(h)),
            lm_head: (!c.tie_word_embeddings).then(|| lin(h, c.vocab_size, f.lm_head_bias)),
            lm_head_bias: (c.tie_word_embeddings && f.lm_head_bias)
                .then(|| Param::from_tensor(vector(c.vocab_size, 0.0))),
            config: config.clone(),
            lora_config: None,
            compute_dtype: DType::F32,
        };
        model.with_stable_param_ids()
    }

    /// Renumbers parameters 1, 2, 3… in module order. Optimizer state is keyed by parameter id,
    /// so stable ids let a training run saved to disk resume with its AdamW moments.
    pub fn with_stable_param_ids(self) -> Self {
        struct Renumber(u64);
        impl ModuleMapper for Renumber {
            fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
                self.0 += 1;
                // `from_tensor` keeps the parameter trainable once the model moves to autodiff.
                let mut renumbered = Param::from_tensor(p.val());
                renumbered.id = ParamId::from(self.0);
                renumbered
            }
        }
        self.map(&mut Renumber(0))
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.embed_tokens.weight.val().device()
    }

    /// Logits `[batch, seq, vocab]` for token ids `[batch, seq]` starting at position 0.
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        self.lm_logits(self.hidden(ids, None))
    }

    /// Logits for `ids` continuing the sequence held in `cache`, which is extended.
    pub fn forward_cached(&self, ids: Tensor<2, Int>, cache: &mut KvCache) -> Tensor<3> {
        self.lm_logits(self.hidden(ids, Some(cache)))
    }

    /// Final-norm hidden states `[batch, seq, hidden]`.
    pub fn hidden(&self, ids: Tensor<2, Int>, cache: Option<&mut KvCache>) -> Tensor<3> {
        let [_, seq] = ids.dims();
        let start = cache.as_ref().map_or(0, |c| c.len);
        let rope = RopeTables::for_model(&self.config, start, seq, &self.device());
        let mut x = self.embed(ids);
        match cache {
            None => {
                for layer in &self.layers {
                    x = layer.forward(x, &rope, None);
                }
            }
            Some(cache) => {
                for (layer, slot) in self.layers.iter().zip(cache.layers.iter_mut()) {
                    x = layer.forward(x, &rope, Some(slot));
                }
                cache.len += seq;
            }
        }
        self.final_norm().forward(x)
    }

    /// Token embeddings, scaled as the architecture does (Gemma √hidden, Granite's multiplier).
    pub fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let x = in_dtype(self.embed_tokens.forward(ids), self.compute_dtype);
        let m = self.config.features.embedding_multiplier;
        if m == 1.0 { x } else { x * m }
    }

    /// Computes activations in `dtype` (bf16 or f16: mixed precision). The parameters keep their
    /// own dtype (f32 master weights, or a model cast with [`cast_parameters`]) and are cast where
    /// they are used; norms and attention softmax run in f32, and the logits come back in f32.
    pub fn with_compute_dtype(mut self, dtype: DType) -> Self {
        self.compute_dtype = dtype;
        self
    }

    /// The final norm (`model.norm`, or Phi-2's `model.final_layernorm`).
    pub fn final_norm(&self) -> &Norm {
        self.norm.as_ref().or(self.final_layernorm.as_ref()).expect("CausalLm::new creates a final norm")
    }

    /// Logits and the hidden states after the decoder layers in `layers` (0-based; in that order),
    /// for distillation's hidden-state matching.
    pub fn forward_with_hidden(&self, ids: Tensor<2, Int>, layers: &[usize]) -> (Tensor<3>, Vec<Tensor<3>>) {
        let (h, hidden) = self.hidden_with_layers(ids, layers);
        (self.lm_logits(h), hidden)
    }

    /// [`CausalLm::forward_with_hidden`] without the LM head: the final-norm hidden states and
    /// the outputs of the decoder layers in `layers` (in f32, as distillation compares them).
    pub fn hidden_with_layers(&self, ids: Tensor<2, Int>, layers: &[usize]) -> (Tensor<3>, Vec<Tensor<3>>) {
        let [_, seq] = ids.dims();
        let rope = RopeTables::for_model(&self.config, 0, seq, &self.device());
        let mut x = self.embed(ids);
        let mut kept: Vec<Option<Tensor<3>>> = vec![None; layers.len()];
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x, &rope, None);
            for (slot, _) in layers.iter().enumerate().filter(|(_, l)| **l == i) {
                kept[slot] = Some(x.clone());
            }
        }
        let hidden =
            kept.into_iter().map(|h| to_f32(h.expect("layer index checked by the caller"))).collect();
        (self.final_norm().forward(x), hidden)
    }

    /// Projects hidden states to vocabulary logits (through the embeddings when tied).
    /// Then Granite divides by `logits_scaling` and Gemma 2 soft-caps.
    pub fn lm_logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        let f = &self.config.features;
        let dtype = hidden.dtype();
        let mut logits = match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => linear(
                hidden,
                in_dtype(self.embed_tokens.weight.val(), dtype).transpose(),
                self.lm_head_bias.as_ref().map(|b| in_dtype(b.val(), dtype)),
            ),
        };
        logits = to_f32(logits);
        if f.logits_scaling != 1.0 {
            logits = logits / f.logits_scaling;
        }
        if let Some(cap) = f.final_softcap {
            logits = (logits / cap).tanh() * cap;
        }
        logits
    }
}

/// `module` with every floating-point parameter cast to `dtype` (a frozen teacher held in bf16,
/// or pure-bf16 training); parameter ids are kept.
pub fn cast_parameters<M: Module>(module: M, dtype: DType) -> M {
    struct Cast(DType);
    impl ModuleMapper for Cast {
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let dtype = self.0;
            p.map(|t| in_dtype(t, dtype))
        }
    }
    module.map(&mut Cast(dtype))
}

/// `t` in `dtype` (cast only when it differs).
pub fn in_dtype<const D: usize>(t: Tensor<D>, dtype: DType) -> Tensor<D> {
    if t.dtype() == dtype { t } else { t.cast(dtype) }
}

/// `t` in f32 (a cast when it is bf16/f16 activations).
pub fn to_f32<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    in_dtype(t, DType::F32)
}
