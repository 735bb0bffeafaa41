//! The normalised model configuration, parsed from a Hugging Face `config.json` in either the
//! transformers 4.x form (`rope_theta`, `rope_scaling`, `torch_dtype`) or the 5.x form
//! (`rope_parameters`, `dtype`), and written back in the 4.x form (which 5.x also reads).
//!
//! Every architecture difference the decoder needs is decided here, once. This lives in
//! `slmc-formats` (no burn) so that recipe checking and planning can read model shapes without
//! compiling a tensor backend.

mod arch;
#[cfg(test)]
mod family_tests;
mod features;

pub use arch::{Activation, Arch, BlockKind, LayerRope, NormKind, SUPPORTED_MODEL_TYPES};

use crate::ConfigError;
use crate::FloatDtype;
use serde_json::{Map, Value, json};

/// How rotary position frequencies are rescaled for long context.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    None,
    /// Position interpolation: frequencies divided by `factor`.
    Linear {
        /// Interpolation factor.
        factor: f64,
    },
    /// Llama-3.1 frequency-dependent scaling.
    Llama3 {
        /// Scale for low frequencies.
        factor: f64,
        /// Wavelength bound (in units of the original context) below which frequencies are kept.
        low_freq_factor: f64,
        /// Wavelength bound above which frequencies are fully scaled.
        high_freq_factor: f64,
        /// Context length the model was pretrained with.
        original_max_position_embeddings: usize,
    },
    /// Phi-3 LongRoPE: per-frequency factors, `short_factor` up to the original context and
    /// `long_factor` beyond it, and cos/sin scaled by `attention_factor`.
    LongRope {
        /// Factors used while the sequence fits the original context.
        short_factor: Vec<f64>,
        /// Factors used for longer sequences.
        long_factor: Vec<f64>,
        /// The pretraining context length.
        original_max_position_embeddings: usize,
        /// Multiplier on cos and sin.
        attention_factor: f64,
    },
}

/// Rotary position embedding settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeConfig {
    /// Base of the frequencies.
    pub theta: f64,
    /// Long-context rescaling.
    pub scaling: RopeScaling,
    /// Fraction of each head's dimensions that is rotated (Phi-3 may use < 1).
    pub partial_rotary_factor: f64,
}

/// A normalised decoder configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Architecture.
    pub arch: Arch,
    /// Rows of the embedding and of `lm_head`.
    pub vocab_size: usize,
    /// Residual width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (grouped-query attention when < `num_heads`).
    pub num_kv_heads: usize,
    /// Per-head width (may differ from hidden/heads when given explicitly).
    pub head_dim: usize,
    /// Context length.
    pub max_position_embeddings: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Rotary embeddings.
    pub rope: RopeConfig,
    /// `lm_head` shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// q/k/v projections have biases.
    pub qkv_bias: bool,
    /// o_proj has a bias.
    pub o_bias: bool,
    /// gate/up/down projections have biases.
    pub mlp_bias: bool,
    /// Per layer: attend only to the last `w` positions (`Some(w)`) or to all (`None`).
    pub sliding_windows: Vec<Option<usize>>,
    /// Beginning-of-sequence token id.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token ids (the first is the canonical one).
    pub eos_token_ids: Vec<u32>,
    /// Padding token id.
    pub pad_token_id: Option<u32>,
    /// The dtype weights are stored in.
    pub dtype: FloatDtype,
    /// The family-specific parts of the forward pass.
    pub features: Features,
    /// The original `config.json` (for a multimodal wrapper: its `text_config`), kept so that keys
    /// slmc does not model survive a save.
    pub raw: Map<String, Value>,
}

impl Features {
    /// What differs from Llama's forward pass, in words (`["GeGLU", "(1+w) RMSNorm", …]`); empty
    /// for the Llama-like families.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        match self.norm {
            NormKind::Rms => {}
            NormKind::RmsUnitOffset => out.push("(1+w) RMSNorm".to_string()),
            NormKind::Layer => out.push("LayerNorm".to_string()),
        }
        if self.activation == Activation::GeluTanh {
            out.push("GELU (tanh)".into());
        }
        match self.block {
            BlockKind::Sequential => {}
            BlockKind::Sandwich => out.push("sandwich norms".into()),
            BlockKind::Parallel => out.push("parallel attention + MLP".into()),
        }
        if let Some(k) = self.qk_norm {
            out.push(format!("QK-norm ({})", if k == NormKind::Rms { "w" } else { "1+w" }));
        }
        if self.embedding_multiplier != 1.0 {
            out.push(format!("embeddings ×{}", self.embedding_multiplier));
        }
        if self.residual_multiplier != 1.0 {
            out.push(format!("residual branches ×{}", self.residual_multiplier));
        }
        if self.logits_scaling != 1.0 {
            out.push(format!("logits ÷{}", self.logits_scaling));
        }
        if let Some(c) = self.attn_softcap {
            out.push(format!("attention soft-cap {c}"));
        }
        if let Some(c) = self.final_softcap {
            out.push(format!("logit soft-cap {c}"));
        }
        if let Some(r) = &self.rope_local {
            out.push(format!("sliding layers RoPE theta {}", r.theta));
        }
        let nope: Vec<String> =
            self.rope_layers.iter().enumerate().filter(|(_, r)| !**r).map(|(i, _)| i.to_string()).collect();
        if !nope.is_empty() {
            out.push(format!("NoPE layers {}", nope.join(",")));
        }
        if self.lm_head_bias {
            out.push("lm_head bias".into());
        }
        if self.multimodal {
            out.push("language model of a multimodal checkpoint (vision tower ignored)".into());
        }
        out
    }
}

/// Everything in which the supported families' forward passes differ from Llama's, decided once
/// from `config.json` (docs/families.md). Llama's values: RMSNorm, SiLU, sequential block,
/// multipliers 1, scale `head_dim^-0.5`, no soft-caps, RoPE on every layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    /// The decoder and final norms.
    pub norm: NormKind,
    /// Per-head norm of queries and keys before RoPE (Qwen3: `Rms`, Gemma 3: `RmsUnitOffset`).
    pub qk_norm: Option<NormKind>,
    /// The MLP activation.
    pub activation: Activation,
    /// Norm and residual wiring of a decoder layer.
    pub block: BlockKind,
    /// Factor on the token embeddings (Gemma: √hidden; Granite: `embedding_multiplier`).
    pub embedding_multiplier: f64,
    /// Softmax scale of attention scores (`head_dim^-0.5`, Gemma 2/3
    /// `query_pre_attn_scalar^-0.5`, Granite `attention_multiplier`).
    pub attention_scale: f64,
    /// `cap · tanh(s / cap)` on attention scores before the mask (Gemma 2).
    pub attn_softcap: Option<f64>,
    /// `cap · tanh(z / cap)` on the logits (Gemma 2, optionally Gemma 3).
    pub final_softcap: Option<f64>,
    /// Factor on each residual branch before it is added (Granite).
    pub residual_multiplier: f64,
    /// The logits are divided by this (Granite).
    pub logits_scaling: f64,
    /// RoPE of sliding-window layers when it differs from [`ModelConfig::rope`] (Gemma 3).
    pub rope_local: Option<RopeConfig>,
    /// Per layer: `false` for a layer without positional rotation (SmolLM3's NoPE layers).
    pub rope_layers: Vec<bool>,
    /// `lm_head` has a bias (Phi-2).
    pub lm_head_bias: bool,
    /// The config came from a multimodal wrapper (`gemma3`) whose vision tower is ignored.
    pub multimodal: bool,
}

/// `model.layers.3.mlp.down_proj` → `(3, "mlp.down_proj")`: the decoder layer and the name within
/// it of a Hugging Face tensor or module name (`None` outside the decoder layers). The one parser
/// of layer names: every crate that needs a name's layer calls it.
pub fn split_layer_name(name: &str) -> Option<(usize, &str)> {
    let rest = name.strip_prefix("model.layers.")?;
    let (i, module) = rest.split_once('.')?;
    Some((i.parse().ok()?, module))
}

impl ModelConfig {
    /// Every linear module of the decoder layers (`model.layers.3.self_attn.q_proj`), in forward
    /// order: what quantization `targets`/`ignore` selectors choose from.
    pub fn linear_modules(&self) -> Vec<String> {
        (0..self.num_layers)
            .flat_map(|i| {
                self.arch.layer_linears().into_iter().flatten().map(move |m| format!("model.layers.{i}.{m}"))
            })
            .collect()
    }

    /// `[out, in]` of a module named by [`ModelConfig::linear_modules`]
    /// (`model.layers.3.mlp.down_proj`, or relative to its layer: `mlp.down_proj`).
    pub fn linear_shape(&self, module: &str) -> Option<[usize; 2]> {
        let module = split_layer_name(module).map_or(module, |(_, relative)| relative);
        let (h, i) = (self.hidden_size, self.intermediate_size);
        let (q, kv) = (self.q_dim(), self.kv_dim());
        Some(match module {
            "self_attn.q_proj" => [q, h],
            "self_attn.k_proj" | "self_attn.v_proj" => [kv, h],
            "self_attn.qkv_proj" => [q + 2 * kv, h],
            "self_attn.o_proj" => [h, q],
            "mlp.gate_proj" | "mlp.up_proj" => [i, h],
            "mlp.gate_up_proj" => [2 * i, h],
            "mlp.down_proj" | "mlp.fc2" => [h, i],
            "self_attn.dense" => [h, q],
            "mlp.fc1" => [i, h],
            _ => return None,
        })
    }

    /// Parses `config.json` text. `source` names the file in errors.
    pub fn from_json_str(text: &str, source: &str) -> Result<Self, ConfigError> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| ConfigError::Config { file: source.into(), reason: format!("invalid JSON: {e}") })?;
        let Value::Object(raw) = value else {
            return Err(ConfigError::Config { file: source.into(), reason: "expected a JSON object".into() });
        };
        // A `gemma3` multimodal checkpoint: the language model is described by `text_config`.
        if raw.get("model_type").and_then(Value::as_str) == Some("gemma3") {
            let Some(Value::Object(text)) = raw.get("text_config") else {
                return Err(ConfigError::Config {
                    file: source.into(),
                    reason: "a gemma3 config needs a `text_config` object".into(),
                });
            };
            let mut text = text.clone();
            text.insert("model_type".into(), json!("gemma3_text"));
            for key in ["tie_word_embeddings", "torch_dtype", "dtype"] {
                if let (false, Some(v)) = (text.contains_key(key), raw.get(key)) {
                    text.insert(key.into(), v.clone());
                }
            }
            return Parser { raw: &text, source }.parse(true);
        }
        Parser { raw: &raw, source }.parse(false)
    }

    /// Reads `config.json` from a file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::io(path, e))?;
        Self::from_json_str(&text, &path.display().to_string())
    }

    /// Query width: `num_heads * head_dim`.
    pub fn q_dim(&self) -> usize {
        self.num_heads * self.head_dim
    }

    /// Key/value width: `num_kv_heads * head_dim`.
    pub fn kv_dim(&self) -> usize {
        self.num_kv_heads * self.head_dim
    }

    /// The context length at which the rotary tables switch (Phi-3 LongRoPE: short factors up to
    /// it, long factors beyond). transformers recomputes the whole KV cache when a cached
    /// sequence first crosses it, and so does slmc's generation.
    pub fn rope_switch_len(&self) -> Option<usize> {
        match &self.rope.scaling {
            RopeScaling::LongRope { original_max_position_embeddings, .. } => {
                Some(*original_max_position_embeddings)
            }
            _ => None,
        }
    }

    /// Keeps only the decoder layers `kept` (indices into the current layers, in that order):
    /// the layer count and every per-layer setting (sliding windows, NoPE layers) follow.
    pub fn select_layers(&mut self, kept: &[usize]) {
        self.num_layers = kept.len();
        self.sliding_windows = kept.iter().map(|&l| self.sliding_windows.get(l).copied().flatten()).collect();
        let rope = &self.features.rope_layers;
        self.features.rope_layers = kept.iter().map(|&l| rope.get(l).copied().unwrap_or(true)).collect();
    }

    /// Sets the residual width, with what depends on it (Gemma's embedding scale √hidden).
    pub fn set_hidden_size(&mut self, hidden: usize) {
        self.hidden_size = hidden;
        if self.arch.is_gemma() {
            self.features.embedding_multiplier = (hidden as f64).sqrt();
        }
    }

    /// Which rotary table layer `layer` uses (NoPE layers none, Gemma 3's sliding layers their
    /// own).
    pub fn layer_rope(&self, layer: usize) -> LayerRope {
        if !self.features.rope_layers.get(layer).copied().unwrap_or(true) {
            LayerRope::None
        } else if self.features.rope_local.is_some()
            && self.sliding_windows.get(layer).is_some_and(Option::is_some)
        {
            LayerRope::Local
        } else {
            LayerRope::Global
        }
    }

    /// Number of rotated dimensions per head (even).
    pub fn rotary_dim(&self) -> usize {
        let d = (self.head_dim as f64 * self.rope.partial_rotary_factor) as usize;
        d - d % 2
    }

    /// Parameter count implied by the configuration (tied embeddings counted once).
    pub fn num_params(&self) -> usize {
        let (h, i, v) = (self.hidden_size, self.intermediate_size, self.vocab_size);
        let attn = h * self.q_dim()
            + 2 * h * self.kv_dim()
            + self.q_dim() * h
            + if self.qkv_bias { self.q_dim() + 2 * self.kv_dim() } else { 0 }
            + if self.o_bias { h } else { 0 };
        let f = &self.features;
        let mlp = if self.arch.ungated_mlp() {
            2 * h * i + if self.mlp_bias { i + h } else { 0 }
        } else {
            3 * h * i + if self.mlp_bias { 2 * i + h } else { 0 }
        };
        let norm = if f.norm == NormKind::Layer { 2 * h } else { h };
        let norms_per_layer = match f.block {
            BlockKind::Sequential => 2,
            BlockKind::Sandwich => 4,
            BlockKind::Parallel => 1,
        };
        let qk_norm = if f.qk_norm.is_some() { 2 * self.head_dim } else { 0 };
        let layer = attn + mlp + norms_per_layer * norm + qk_norm;
        let head = if self.tie_word_embeddings { 0 } else { v * h + if f.lm_head_bias { v } else { 0 } };
        v * h + self.num_layers * layer + norm + head
    }

    /// The configuration as transformers 4.x `config.json` (which 5.x also reads): the original
    /// keys are kept, the modelled ones rewritten from the normalised values.
    pub fn to_hf_json(&self) -> Value {
        let mut out = self.raw.clone();
        for k in
            ["dtype", "torch_dtype", "rope_parameters", "rope_scaling", "rope_theta", "transformers_version"]
        {
            out.remove(k);
        }
        let mut set = |k: &str, v: Value| {
            out.insert(k.to_string(), v);
        };
        set("architectures", json!([self.arch.hf_class()]));
        set("model_type", json!(self.arch.model_type()));
        set("vocab_size", json!(self.vocab_size));
        set("hidden_size", json!(self.hidden_size));
        set("intermediate_size", json!(self.intermediate_size));
        set("num_hidden_layers", json!(self.num_layers));
        set("num_attention_heads", json!(self.num_heads));
        set("num_key_value_heads", json!(self.num_kv_heads));
        set("max_position_embeddings", json!(self.max_position_embeddings));
        let arch = self.arch;
        if arch == Arch::Phi {
            set("layer_norm_eps", json!(self.rms_norm_eps));
            set("hidden_act", json!("gelu_new"));
        } else {
            set("rms_norm_eps", json!(self.rms_norm_eps));
            set("hidden_act", json!(self.features.activation.hf_name()));
        }
        if matches!(arch, Arch::Gemma2 | Arch::Gemma3) {
            set("hidden_activation", json!(self.features.activation.hf_name()));
        }
        set("tie_word_embeddings", json!(self.tie_word_embeddings));
        set("torch_dtype", json!(self.dtype.hf_name()));
        set("rope_theta", json!(self.rope.theta));
        // Granite, Phi-2 and SmolLM3 read an optional `head_dim` (default hidden / heads), which a
        // width-pruned model needs.
        let derived_head = self.hidden_size.checked_div(self.num_heads) == Some(self.head_dim);
        if matches!(arch, Arch::Llama | Arch::Mistral | Arch::Qwen3)
            || arch.is_gemma()
            || (matches!(arch, Arch::Granite | Arch::Phi | Arch::SmolLm3) && !derived_head)
        {
            set("head_dim", json!(self.head_dim));
        }
        if matches!(arch, Arch::Llama | Arch::Granite | Arch::SmolLm3) {
            set("attention_bias", json!(self.qkv_bias));
            set("mlp_bias", json!(self.mlp_bias));
        }
        if matches!(arch, Arch::Qwen3) || arch.is_gemma() {
            set("attention_bias", json!(self.qkv_bias));
        }
        if matches!(arch, Arch::Phi3 | Arch::Phi) {
            set("partial_rotary_factor", json!(self.rope.partial_rotary_factor));
        }
        if arch == Arch::SmolLm3 {
            let flags: Vec<u8> = self.features.rope_layers.iter().map(|&r| u8::from(r)).collect();
            set("no_rope_layers", json!(flags));
        }
        if let Some(b) = self.bos_token_id {
            set("bos_token_id", json!(b));
        }
        match self.eos_token_ids.as_slice() {
            [] => {}
            [one] => set("eos_token_id", json!(one)),
            many => set("eos_token_id", json!(many)),
        }
        if let Some(p) = self.pad_token_id {
            set("pad_token_id", json!(p));
        }
        if let RopeScaling::LongRope { original_max_position_embeddings, .. } = &self.rope.scaling {
            set("original_max_position_embeddings", json!(original_max_position_embeddings));
        }
        set("rope_scaling", rope_scaling_json(&self.rope.scaling));
        if let Some(local) = &self.features.rope_local {
            // Gemma 3 in both spellings: 4.x reads the top-level keys, 5.x the nested dict.
            set("rope_local_base_freq", json!(local.theta));
            let mut full = rope_scaling_json(&self.rope.scaling);
            if full.is_null() {
                full = json!({"rope_type": "default"});
            }
            full["rope_theta"] = json!(self.rope.theta);
            set(
                "rope_parameters",
                json!({"full_attention": full,
                       "sliding_attention": {"rope_type": "default", "rope_theta": local.theta}}),
            );
        }
        if let Some(w) = self.sliding_windows.iter().flatten().next() {
            set("sliding_window", json!(w));
        }
        if out.contains_key("layer_types") || matches!(arch, Arch::Gemma2 | Arch::Gemma3) {
            // Keep per-layer attention types in step with the (possibly changed) layer count.
            let types: Vec<&str> = self
                .sliding_windows
                .iter()
                .map(|w| if w.is_some() { "sliding_attention" } else { "full_attention" })
                .collect();
            out.insert("layer_types".into(), json!(types));
        }
        Value::Object(out)
    }
}

/// A 4.x `rope_scaling` dict (null for plain RoPE).
fn rope_scaling_json(scaling: &RopeScaling) -> Value {
    match scaling {
        RopeScaling::None => Value::Null,
        RopeScaling::Linear { factor } => {
            json!({"rope_type": "linear", "type": "linear", "factor": factor})
        }
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => {
            json!({"rope_type": "llama3", "factor": factor, "low_freq_factor": low_freq_factor,
                       "high_freq_factor": high_freq_factor,
                       "original_max_position_embeddings": original_max_position_embeddings})
        }
        RopeScaling::LongRope { short_factor, long_factor, .. } => {
            // transformers 4.4x's Phi3Config insists on exactly these three keys.
            json!({"type": "longrope", "short_factor": short_factor, "long_factor": long_factor})
        }
    }
}

struct Parser<'a> {
    raw: &'a Map<String, Value>,
    source: &'a str,
}

/// The largest parameter count a config may describe (a trillion: far above any model slmc can
/// hold, but refused before a shape is allocated).
pub const MAX_PARAMS: u64 = 1 << 40;

/// The largest value slmc accepts for a size key of `config.json` (each far above any released
/// model's, so that an absurd value is refused instead of sizing an allocation).
pub fn config_limit(key: &str) -> usize {
    match key {
        "num_hidden_layers" | "num_attention_heads" | "num_key_value_heads" => 1 << 12,
        "head_dim" => 1 << 14,
        "hidden_size" => 1 << 17,
        "intermediate_size" => 1 << 20,
        "vocab_size" => 1 << 24,
        "max_position_embeddings" => 1 << 24,
        _ => usize::MAX,
    }
}

impl Parser<'_> {
    fn err(&self, reason: impl Into<String>) -> ConfigError {
        ConfigError::Config { file: self.source.into(), reason: reason.into() }
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.raw.get(key).filter(|v| !v.is_null())
    }

    fn usize_req(&self, key: &str) -> Result<usize, ConfigError> {
        self.usize_opt(key)?.ok_or_else(|| self.err(format!("missing `{key}`")))
    }

    fn usize_opt(&self, key: &str) -> Result<Option<usize>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|x| Some(x as usize))
                .ok_or_else(|| self.err(format!("`{key}` must be a non-negative integer, got {v}"))),
        }
    }

    /// `value` of `key`, refused above [`config_limit`] (before anything is sized by it).
    fn bounded(&self, key: &str, value: usize) -> Result<usize, ConfigError> {
        let max = config_limit(key);
        if value > max {
            return Err(self.err(format!("`{key}` = {value} is larger than slmc supports (at most {max})")));
        }
        Ok(value)
    }

    fn f64_opt(&self, key: &str) -> Result<Option<f64>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => {
                v.as_f64().map(Some).ok_or_else(|| self.err(format!("`{key}` must be a number, got {v}")))
            }
        }
    }

    fn bool_opt(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.err(format!("`{key}` must be true or false, got {v}"))),
        }
    }

    fn token_ids(&self, key: &str) -> Result<Vec<u32>, ConfigError> {
        match self.get(key) {
            None => Ok(vec![]),
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| {
                    x.as_u64()
                        .map(|x| x as u32)
                        .ok_or_else(|| self.err(format!("`{key}` must hold token ids")))
                })
                .collect(),
            Some(v) => v
                .as_u64()
                .map(|x| vec![x as u32])
                .ok_or_else(|| self.err(format!("`{key}` must be a token id"))),
        }
    }

    fn parse(&self, multimodal: bool) -> Result<ModelConfig, ConfigError> {
        let model_type =
            self.get("model_type").and_then(Value::as_str).ok_or_else(|| self.err("missing `model_type`"))?;
        let arch = Arch::from_model_type(model_type).ok_or_else(|| {
            self.err(format!("unsupported model_type `{model_type}`; slmc supports {SUPPORTED_MODEL_TYPES}"))
        })?;
        let hidden_size = self.bounded("hidden_size", self.usize_req("hidden_size")?)?;
        let num_heads = self.bounded("num_attention_heads", self.usize_req("num_attention_heads")?)?;
        let num_kv_heads = self.usize_opt("num_key_value_heads")?.unwrap_or(num_heads);
        let num_kv_heads = self.bounded("num_key_value_heads", num_kv_heads)?;
        if num_heads == 0 || num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
            return Err(self.err(format!(
                "num_attention_heads ({num_heads}) must be a positive multiple of num_key_value_heads ({num_kv_heads})"
            )));
        }
        let head_dim = match self.usize_opt("head_dim")? {
            Some(d) => self.bounded("head_dim", d)?,
            None if hidden_size % num_heads == 0 => hidden_size / num_heads,
            None => {
                return Err(self.err(format!(
                    "hidden_size {hidden_size} is not divisible by {num_heads} heads and no head_dim is given"
                )));
            }
        };
        let num_layers = self.bounded("num_hidden_layers", self.usize_req("num_hidden_layers")?)?;
        let max_position_embeddings = self.usize_opt("max_position_embeddings")?.unwrap_or(2048);
        let max_position_embeddings = self.bounded("max_position_embeddings", max_position_embeddings)?;
        let vocab_size = self.bounded("vocab_size", self.usize_req("vocab_size")?)?;
        let intermediate_size = self.bounded("intermediate_size", self.usize_req("intermediate_size")?)?;
        let dtype_name = self
            .get("torch_dtype")
            .or_else(|| self.get("dtype"))
            .and_then(Value::as_str)
            .unwrap_or("float32");
        let dtype = FloatDtype::from_name(dtype_name).ok_or_else(|| {
            self.err(format!("unsupported dtype `{dtype_name}`; expected float32, float16 or bfloat16"))
        })?;
        let attention_bias = self.bool_opt("attention_bias")?.unwrap_or(false);
        let mlp_bias = self.bool_opt("mlp_bias")?.unwrap_or(false);
        let (qkv_bias, o_bias, mlp_bias) = match arch {
            Arch::Llama | Arch::Granite | Arch::SmolLm3 => (attention_bias, attention_bias, mlp_bias),
            Arch::Gemma | Arch::Gemma2 | Arch::Gemma3 | Arch::Qwen3 => {
                (attention_bias, attention_bias, false)
            }
            Arch::Qwen2 => (true, false, false),
            Arch::Phi => (true, true, true),
            Arch::Mistral | Arch::Phi3 => (false, false, false),
        };
        let rope = self.global_rope(arch, head_dim, max_position_embeddings)?;
        let sliding_windows = self.sliding_windows(arch, num_layers)?;
        let features =
            self.features(arch, hidden_size, head_dim, num_layers, &sliding_windows, multimodal)?;
        let norm_eps_key = if arch == Arch::Phi { "layer_norm_eps" } else { "rms_norm_eps" };
        let mut eos_token_ids = self.token_ids("eos_token_id")?;
        eos_token_ids.dedup();
        let config = ModelConfig {
            arch,
            vocab_size,
            hidden_size,
            intermediate_size,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            max_position_embeddings,
            rms_norm_eps: self.f64_opt(norm_eps_key)?.unwrap_or(if arch == Arch::Phi { 1e-5 } else { 1e-6 }),
            rope,
            tie_word_embeddings: self
                .bool_opt("tie_word_embeddings")?
                .unwrap_or(arch.is_gemma() || arch == Arch::SmolLm3),
            qkv_bias,
            o_bias,
            mlp_bias,
            sliding_windows,
            bos_token_id: self.token_ids("bos_token_id")?.first().copied(),
            eos_token_ids,
            pad_token_id: self.token_ids("pad_token_id")?.first().copied(),
            dtype,
            features,
            raw: self.raw.clone(),
        };
        // Each size is bounded above, so the count cannot overflow; the bound on the total keeps
        // a config from describing more than could ever be held.
        let params = config.num_params() as u64;
        if params > MAX_PARAMS {
            return Err(self.err(format!(
                "these shapes imply {params} parameters, more than slmc supports ({MAX_PARAMS})"
            )));
        }
        Ok(config)
    }

    fn sliding_windows(&self, arch: Arch, num_layers: usize) -> Result<Vec<Option<usize>>, ConfigError> {
        // transformers' MistralConfig defaults `sliding_window` to 4096 when the key is absent
        // (an explicit null disables it).
        let window = match (arch, self.raw.get("sliding_window")) {
            (Arch::Mistral | Arch::Gemma2 | Arch::Gemma3, None) => Some(4096),
            _ => self.usize_opt("sliding_window")?,
        };
        let uses = match arch {
            Arch::Llama | Arch::Gemma | Arch::Granite | Arch::Phi => false,
            // Mistral applies its window to every layer whenever one is set.
            Arch::Mistral => true,
            // Qwen2/Qwen3 only when `use_sliding_window`, and then from `max_window_layers` on;
            // SmolLM3 only when `use_sliding_window`, on its NoPE layers.
            Arch::Qwen2 | Arch::Qwen3 | Arch::SmolLm3 => {
                self.bool_opt("use_sliding_window")?.unwrap_or(false)
            }
            // Phi-3's modelling code applies `sliding_window` to every layer when set; Gemma 2/3
            // on the layers `layer_types` (or the default pattern) marks sliding.
            Arch::Phi3 | Arch::Gemma2 | Arch::Gemma3 => true,
        };
        let Some(w) = window.filter(|_| uses) else {
            return Ok(vec![None; num_layers]);
        };
        if let Some(Value::Array(types)) = self.get("layer_types") {
            if types.len() != num_layers {
                return Err(
                    self.err(format!("layer_types has {} entries for {num_layers} layers", types.len()))
                );
            }
            return types
                .iter()
                .map(|t| match t.as_str() {
                    Some("sliding_attention") => Ok(Some(w)),
                    Some("full_attention") => Ok(None),
                    _ => Err(self.err(format!(
                        "unsupported layer type {t}; expected full_attention or sliding_attention"
                    ))),
                })
                .collect();
        }
        match arch {
            // Gemma 2: even layers slide; Gemma 3: all but every `sliding_window_pattern`-th (6).
            Arch::Gemma2 | Arch::Gemma3 => {
                let period = match arch {
                    Arch::Gemma2 => 2,
                    _ => self
                        .usize_opt("sliding_window_pattern")?
                        .or(self.usize_opt("_sliding_window_pattern")?)
                        .unwrap_or(6),
                };
                Ok((0..num_layers).map(|i| (!(i + 1).is_multiple_of(period.max(1))).then_some(w)).collect())
            }
            Arch::SmolLm3 => {
                let rope = self.rope_layers(arch, num_layers)?;
                Ok(rope.into_iter().map(|r| (!r).then_some(w)).collect())
            }
            _ => {
                let first = if matches!(arch, Arch::Qwen2 | Arch::Qwen3) {
                    self.usize_opt("max_window_layers")?.unwrap_or(0)
                } else {
                    0
                };
                Ok((0..num_layers).map(|i| (i >= first).then_some(w)).collect())
            }
        }
    }

    /// The model's (for Gemma 3: the full-attention layers') rope parameters, from the 5.x
    /// `rope_parameters` dict (nested by layer type for Gemma 3) or the 4.x top-level
    /// `rope_theta` + `rope_scaling` dict.
    fn global_rope(&self, arch: Arch, head_dim: usize, max_pos: usize) -> Result<RopeConfig, ConfigError> {
        let empty = Map::new();
        let params = self.get("rope_parameters").and_then(Value::as_object);
        let params = match params {
            Some(p) if p.contains_key("full_attention") => p
                .get("full_attention")
                .and_then(Value::as_object)
                .ok_or_else(|| self.err("rope_parameters.full_attention must be an object".to_string()))?,
            Some(p) => p,
            None => self.get("rope_scaling").and_then(Value::as_object).unwrap_or(&empty),
        };
        let default_theta = match arch {
            Arch::SmolLm3 => 2_000_000.0,
            Arch::Gemma3 => 1_000_000.0,
            _ => 10_000.0,
        };
        self.rope(arch, params, true, default_theta, head_dim, max_pos)
    }

    /// Rope parameters from `dict`; with `top_level`, keys missing from it are looked up at the
    /// top of `config.json` (the 4.x spelling), else `default_theta` applies.
    fn rope(
        &self,
        arch: Arch,
        dict: &Map<String, Value>,
        top_level: bool,
        default_theta: f64,
        head_dim: usize,
        max_pos: usize,
    ) -> Result<RopeConfig, ConfigError> {
        let lookup = |k: &str| {
            dict.get(k).filter(|v| !v.is_null()).or_else(|| if top_level { self.get(k) } else { None })
        };
        let num = |k: &str| -> Result<Option<f64>, ConfigError> {
            match lookup(k) {
                None => Ok(None),
                Some(v) => v
                    .as_f64()
                    .map(Some)
                    .ok_or_else(|| self.err(format!("rope `{k}` must be a number, got {v}"))),
            }
        };
        let theta = num("rope_theta")?.unwrap_or(default_theta);
        let partial_rotary_factor =
            num("partial_rotary_factor")?.unwrap_or(if arch == Arch::Phi { 0.5 } else { 1.0 });
        let kind =
            dict.get("rope_type").or_else(|| dict.get("type")).and_then(Value::as_str).unwrap_or("default");
        let req = |k: &str| -> Result<f64, ConfigError> {
            num(k)?.ok_or_else(|| self.err(format!("rope scaling `{kind}` needs `{k}`")))
        };
        let scaling = match kind {
            "default" => RopeScaling::None,
            "linear" => RopeScaling::Linear { factor: req("factor")? },
            "llama3" => RopeScaling::Llama3 {
                factor: req("factor")?,
                low_freq_factor: req("low_freq_factor")?,
                high_freq_factor: req("high_freq_factor")?,
                original_max_position_embeddings: req("original_max_position_embeddings")? as usize,
            },
            "longrope" => {
                let list = |k: &str| -> Result<Vec<f64>, ConfigError> {
                    let v = lookup(k)
                        .and_then(Value::as_array)
                        .ok_or_else(|| self.err(format!("longrope needs a `{k}` list")))?;
                    v.iter()
                        .map(|x| x.as_f64().ok_or_else(|| self.err(format!("`{k}` must hold numbers"))))
                        .collect()
                };
                let (short_factor, long_factor) = (list("short_factor")?, list("long_factor")?);
                let rot = (head_dim as f64 * partial_rotary_factor) as usize / 2;
                if short_factor.len() != rot || long_factor.len() != rot {
                    return Err(self.err(format!(
                        "longrope short_factor/long_factor must have rotary_dim/2 = {rot} entries, got {}/{}",
                        short_factor.len(),
                        long_factor.len()
                    )));
                }
                // transformers: with `original_max_position_embeddings` on the config, the scaling
                // factor is max_position_embeddings / original (Phi-3); else the dict's `factor`.
                let (original, factor) = match num("original_max_position_embeddings")? {
                    Some(o) => (o as usize, max_pos as f64 / o),
                    None => (max_pos, num("factor")?.unwrap_or(1.0)),
                };
                let attention_factor = match num("attention_factor")? {
                    Some(a) => a,
                    None if factor <= 1.0 => 1.0,
                    None => (1.0 + factor.ln() / (original as f64).ln()).sqrt(),
                };
                RopeScaling::LongRope {
                    short_factor,
                    long_factor,
                    original_max_position_embeddings: original,
                    attention_factor,
                }
            }
            other => {
                return Err(self.err(format!(
                    "unsupported rope scaling `{other}`; slmc supports default, linear, llama3 and longrope"
                )));
            }
        };
        if kind == "longrope" && arch != Arch::Phi3 {
            return Err(
                self.err(format!("longrope scaling is only supported for phi3, not {}", arch.model_type()))
            );
        }
        if partial_rotary_factor <= 0.0 || partial_rotary_factor > 1.0 {
            return Err(
                self.err(format!("partial_rotary_factor must be in (0, 1], got {partial_rotary_factor}"))
            );
        }
        Ok(RopeConfig { theta, scaling, partial_rotary_factor })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LLAMA_V4: &str = r#"{"model_type":"llama","hidden_size":64,"num_attention_heads":4,
        "num_key_value_heads":2,"num_hidden_layers":2,"intermediate_size":128,"vocab_size":100,
        "rope_theta":500000.0,"torch_dtype":"bfloat16","rope_scaling":{"rope_type":"llama3","factor":8.0,
        "low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":16},
        "eos_token_id":[1,1,5],"bos_token_id":0}"#;

    #[test]
    fn v4_and_v5_forms_parse_to_the_same_config() {
        let v4 = ModelConfig::from_json_str(LLAMA_V4, "v4").unwrap();
        let v5 = r#"{"model_type":"llama","hidden_size":64,"num_attention_heads":4,
            "num_key_value_heads":2,"num_hidden_layers":2,"intermediate_size":128,"vocab_size":100,
            "dtype":"bfloat16","rope_parameters":{"rope_theta":500000.0,"rope_type":"llama3","factor":8.0,
            "low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":16},
            "eos_token_id":[1,1,5],"bos_token_id":0}"#;
        let v5 = ModelConfig::from_json_str(v5, "v5").unwrap();
        assert_eq!((v4.rope.clone(), v4.dtype, v4.head_dim), (v5.rope.clone(), v5.dtype, v5.head_dim));
        assert_eq!(v4.dtype, FloatDtype::BF16);
        assert_eq!(v4.eos_token_ids, vec![1, 5]);
        assert!(matches!(v4.rope.scaling, RopeScaling::Llama3 { original_max_position_embeddings: 16, .. }));
        // Written back (v4 form) it parses to the same normalised config.
        let again = ModelConfig::from_json_str(&v4.to_hf_json().to_string(), "again").unwrap();
        assert_eq!((&again.rope, again.dtype, again.num_params()), (&v4.rope, v4.dtype, v4.num_params()));
    }

    #[test]
    fn unsupported_model_type_names_the_supported_ones() {
        let err = ModelConfig::from_json_str(r#"{"model_type":"mamba"}"#, "c.json").unwrap_err().to_string();
        assert!(err.contains("mamba") && err.contains(SUPPORTED_MODEL_TYPES), "{err}");
        let err = ModelConfig::from_json_str(&LLAMA_V4.replace("llama3", "yarn"), "c.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("yarn") && err.contains("longrope"), "{err}");
    }

    #[test]
    fn qwen2_window_applies_from_max_window_layers() {
        let text = r#"{"model_type":"qwen2","hidden_size":64,"num_attention_heads":4,"num_hidden_layers":3,
            "intermediate_size":128,"vocab_size":100,"use_sliding_window":true,"sliding_window":8,"max_window_layers":1}"#;
        let c = ModelConfig::from_json_str(text, "q").unwrap();
        assert_eq!(c.sliding_windows, vec![None, Some(8), Some(8)]);
        assert!(c.qkv_bias && !c.o_bias);
        let off = ModelConfig::from_json_str(&text.replace("true", "false"), "q").unwrap();
        assert_eq!(off.sliding_windows, vec![None; 3]);
    }

    #[test]
    fn phi3_longrope_factor_comes_from_the_context_ratio() {
        let text = r#"{"model_type":"phi3","hidden_size":64,"num_attention_heads":4,"num_hidden_layers":1,
            "intermediate_size":128,"vocab_size":100,"max_position_embeddings":128,"original_max_position_embeddings":16,
            "rope_scaling":{"type":"longrope","short_factor":[1,1,1,1,1,1,1,1],"long_factor":[2,2,2,2,2,2,2,2]}}"#;
        let c = ModelConfig::from_json_str(text, "p").unwrap();
        let RopeScaling::LongRope { attention_factor, original_max_position_embeddings, .. } = c.rope.scaling
        else {
            panic!()
        };
        assert_eq!(original_max_position_embeddings, 16);
        assert!((attention_factor - (1.0 + 8f64.ln() / 16f64.ln()).sqrt()).abs() < 1e-12);
    }
}
