//! The normalised model configuration, parsed from a Hugging Face `config.json` in either the
//! transformers 4.x form (`rope_theta`, `rope_scaling`, `torch_dtype`) or the 5.x form
//! (`rope_parameters`, `dtype`), and written back in the 4.x form (which 5.x also reads).
//!
//! Every architecture difference the decoder needs is decided here, once. This lives in
//! `slmc-formats` (no burn) so that recipe checking and planning can read model shapes without
//! compiling a tensor backend.

use crate::FloatDtype;
use crate::FormatError;
use serde_json::{Map, Value, json};

/// The architectures slmc implements (Hugging Face `model_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// `LlamaForCausalLM`.
    Llama,
    /// `MistralForCausalLM`.
    Mistral,
    /// `Qwen2ForCausalLM` (q/k/v biases).
    Qwen2,
    /// `Phi3ForCausalLM` (fused `qkv_proj` and `gate_up_proj`).
    Phi3,
}

/// The `model_type` values slmc accepts, for error messages.
pub const SUPPORTED_MODEL_TYPES: &str = "llama, mistral, qwen2, phi3";

impl Arch {
    /// Parses a Hugging Face `model_type`.
    pub fn from_model_type(s: &str) -> Option<Self> {
        match s {
            "llama" => Some(Self::Llama),
            "mistral" => Some(Self::Mistral),
            "qwen2" => Some(Self::Qwen2),
            "phi3" => Some(Self::Phi3),
            _ => None,
        }
    }

    /// The Hugging Face `model_type`.
    pub fn model_type(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Mistral => "mistral",
            Self::Qwen2 => "qwen2",
            Self::Phi3 => "phi3",
        }
    }

    /// The transformers class name written to `architectures`.
    pub fn hf_class(self) -> &'static str {
        match self {
            Self::Llama => "LlamaForCausalLM",
            Self::Mistral => "MistralForCausalLM",
            Self::Qwen2 => "Qwen2ForCausalLM",
            Self::Phi3 => "Phi3ForCausalLM",
        }
    }

    /// Whether q/k/v are one fused `qkv_proj` and gate/up one `gate_up_proj`.
    pub fn fused_projections(self) -> bool {
        self == Self::Phi3
    }

    /// The linear modules of one decoder layer (names relative to the layer), grouped by the
    /// input they read, in forward order: q/k/v, o, gate/up, down (GPTQ's true-sequential order).
    pub fn layer_linears(self) -> [&'static [&'static str]; 4] {
        if self.fused_projections() {
            [&["self_attn.qkv_proj"], &["self_attn.o_proj"], &["mlp.gate_up_proj"], &["mlp.down_proj"]]
        } else {
            [
                &["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
                &["self_attn.o_proj"],
                &["mlp.gate_proj", "mlp.up_proj"],
                &["mlp.down_proj"],
            ]
        }
    }
}

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
    /// The original `config.json`, kept so that keys slmc does not model survive a save.
    pub raw: Map<String, Value>,
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
        let module = module
            .strip_prefix("model.layers.")
            .and_then(|rest| rest.split_once('.'))
            .map_or(module, |(_, relative)| relative);
        let (h, i) = (self.hidden_size, self.intermediate_size);
        let (q, kv) = (self.q_dim(), self.kv_dim());
        Some(match module {
            "self_attn.q_proj" => [q, h],
            "self_attn.k_proj" | "self_attn.v_proj" => [kv, h],
            "self_attn.qkv_proj" => [q + 2 * kv, h],
            "self_attn.o_proj" => [h, q],
            "mlp.gate_proj" | "mlp.up_proj" => [i, h],
            "mlp.gate_up_proj" => [2 * i, h],
            "mlp.down_proj" => [h, i],
            _ => return None,
        })
    }

    /// Parses `config.json` text. `source` names the file in errors.
    pub fn from_json_str(text: &str, source: &str) -> Result<Self, FormatError> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| FormatError::Config { file: source.into(), reason: format!("invalid JSON: {e}") })?;
        let Value::Object(raw) = value else {
            return Err(FormatError::Config { file: source.into(), reason: "expected a JSON object".into() });
        };
        Parser { raw: &raw, source }.parse()
    }

    /// Reads `config.json` from a file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, FormatError> {
        let text = std::fs::read_to_string(path).map_err(|e| FormatError::io(path, e))?;
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
        let mlp = 3 * h * i + if self.mlp_bias { 2 * i + h } else { 0 };
        let layer = attn + mlp + 2 * h;
        let head = if self.tie_word_embeddings { 0 } else { v * h };
        v * h + self.num_layers * layer + h + head
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
        set("rms_norm_eps", json!(self.rms_norm_eps));
        set("hidden_act", json!("silu"));
        set("tie_word_embeddings", json!(self.tie_word_embeddings));
        set("torch_dtype", json!(self.dtype.hf_name()));
        set("rope_theta", json!(self.rope.theta));
        if matches!(self.arch, Arch::Llama | Arch::Mistral) {
            set("head_dim", json!(self.head_dim));
        }
        if self.arch == Arch::Llama {
            set("attention_bias", json!(self.qkv_bias));
            set("mlp_bias", json!(self.mlp_bias));
        }
        if self.arch == Arch::Phi3 {
            set("partial_rotary_factor", json!(self.rope.partial_rotary_factor));
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
        let scaling = match &self.rope.scaling {
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
            RopeScaling::LongRope { short_factor, long_factor, original_max_position_embeddings, .. } => {
                set("original_max_position_embeddings", json!(original_max_position_embeddings));
                // transformers 4.4x's Phi3Config insists on exactly these three keys.
                json!({"type": "longrope", "short_factor": short_factor, "long_factor": long_factor})
            }
        };
        set("rope_scaling", scaling);
        if let Some(w) = self.sliding_windows.iter().flatten().next() {
            set("sliding_window", json!(w));
        }
        if out.contains_key("layer_types") {
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

struct Parser<'a> {
    raw: &'a Map<String, Value>,
    source: &'a str,
}

impl Parser<'_> {
    fn err(&self, reason: impl Into<String>) -> FormatError {
        FormatError::Config { file: self.source.into(), reason: reason.into() }
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.raw.get(key).filter(|v| !v.is_null())
    }

    fn usize_req(&self, key: &str) -> Result<usize, FormatError> {
        self.usize_opt(key)?.ok_or_else(|| self.err(format!("missing `{key}`")))
    }

    fn usize_opt(&self, key: &str) -> Result<Option<usize>, FormatError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|x| Some(x as usize))
                .ok_or_else(|| self.err(format!("`{key}` must be a non-negative integer, got {v}"))),
        }
    }

    fn f64_opt(&self, key: &str) -> Result<Option<f64>, FormatError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => {
                v.as_f64().map(Some).ok_or_else(|| self.err(format!("`{key}` must be a number, got {v}")))
            }
        }
    }

    fn bool_opt(&self, key: &str) -> Result<Option<bool>, FormatError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.err(format!("`{key}` must be true or false, got {v}"))),
        }
    }

    fn token_ids(&self, key: &str) -> Result<Vec<u32>, FormatError> {
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

    fn parse(&self) -> Result<ModelConfig, FormatError> {
        let model_type =
            self.get("model_type").and_then(Value::as_str).ok_or_else(|| self.err("missing `model_type`"))?;
        let arch = Arch::from_model_type(model_type).ok_or_else(|| {
            self.err(format!("unsupported model_type `{model_type}`; slmc supports {SUPPORTED_MODEL_TYPES}"))
        })?;
        if let Some(act) = self.get("hidden_act").and_then(Value::as_str)
            && act != "silu"
        {
            return Err(
                self.err(format!("unsupported hidden_act `{act}`; slmc's decoder implements silu (SwiGLU)"))
            );
        }
        let hidden_size = self.usize_req("hidden_size")?;
        let num_heads = self.usize_req("num_attention_heads")?;
        let num_kv_heads = self.usize_opt("num_key_value_heads")?.unwrap_or(num_heads);
        if num_heads == 0 || num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
            return Err(self.err(format!(
                "num_attention_heads ({num_heads}) must be a positive multiple of num_key_value_heads ({num_kv_heads})"
            )));
        }
        let head_dim = match self.usize_opt("head_dim")? {
            Some(d) => d,
            None if hidden_size % num_heads == 0 => hidden_size / num_heads,
            None => {
                return Err(self.err(format!(
                    "hidden_size {hidden_size} is not divisible by {num_heads} heads and no head_dim is given"
                )));
            }
        };
        let num_layers = self.usize_req("num_hidden_layers")?;
        let max_position_embeddings = self.usize_opt("max_position_embeddings")?.unwrap_or(2048);
        let dtype_name = self
            .get("torch_dtype")
            .or_else(|| self.get("dtype"))
            .and_then(Value::as_str)
            .unwrap_or("float32");
        let dtype = FloatDtype::from_name(dtype_name).ok_or_else(|| {
            self.err(format!("unsupported dtype `{dtype_name}`; expected float32, float16 or bfloat16"))
        })?;
        let attention_bias = self.bool_opt("attention_bias")?.unwrap_or(false);
        let (qkv_bias, o_bias, mlp_bias) = match arch {
            Arch::Llama => (attention_bias, attention_bias, self.bool_opt("mlp_bias")?.unwrap_or(false)),
            Arch::Qwen2 => (true, false, false),
            Arch::Mistral | Arch::Phi3 => (false, false, false),
        };
        let rope = self.rope(arch, head_dim, max_position_embeddings)?;
        if rope.partial_rotary_factor <= 0.0 || rope.partial_rotary_factor > 1.0 {
            return Err(self.err(format!(
                "partial_rotary_factor must be in (0, 1], got {}",
                rope.partial_rotary_factor
            )));
        }
        let sliding_windows = self.sliding_windows(arch, num_layers)?;
        let mut eos_token_ids = self.token_ids("eos_token_id")?;
        eos_token_ids.dedup();
        Ok(ModelConfig {
            arch,
            vocab_size: self.usize_req("vocab_size")?,
            hidden_size,
            intermediate_size: self.usize_req("intermediate_size")?,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            max_position_embeddings,
            rms_norm_eps: self.f64_opt("rms_norm_eps")?.unwrap_or(1e-6),
            rope,
            tie_word_embeddings: self.bool_opt("tie_word_embeddings")?.unwrap_or(false),
            qkv_bias,
            o_bias,
            mlp_bias,
            sliding_windows,
            bos_token_id: self.token_ids("bos_token_id")?.first().copied(),
            eos_token_ids,
            pad_token_id: self.token_ids("pad_token_id")?.first().copied(),
            dtype,
            raw: self.raw.clone(),
        })
    }

    fn sliding_windows(&self, arch: Arch, num_layers: usize) -> Result<Vec<Option<usize>>, FormatError> {
        // transformers' MistralConfig defaults `sliding_window` to 4096 when the key is absent
        // (an explicit null disables it).
        let window = match (arch, self.raw.get("sliding_window")) {
            (Arch::Mistral, None) => Some(4096),
            _ => self.usize_opt("sliding_window")?,
        };
        let uses = match arch {
            Arch::Llama => false,
            // Mistral applies its window to every layer whenever one is set.
            Arch::Mistral => true,
            // Qwen2 only when `use_sliding_window`, and then from `max_window_layers` on.
            Arch::Qwen2 => self.bool_opt("use_sliding_window")?.unwrap_or(false),
            // Phi-3's modelling code applies `sliding_window` to every layer when set.
            Arch::Phi3 => true,
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
        let first = if arch == Arch::Qwen2 { self.usize_opt("max_window_layers")?.unwrap_or(0) } else { 0 };
        Ok((0..num_layers).map(|i| (i >= first).then_some(w)).collect())
    }

    /// Finds the rope parameters in the 5.x `rope_parameters` dict or the 4.x top-level
    /// `rope_theta` + `rope_scaling` dict.
    fn rope(&self, arch: Arch, head_dim: usize, max_pos: usize) -> Result<RopeConfig, FormatError> {
        let empty = Map::new();
        let params = self.get("rope_parameters").and_then(Value::as_object);
        let scaling = self.get("rope_scaling").and_then(Value::as_object);
        let dict = params.or(scaling).unwrap_or(&empty);
        let lookup = |k: &str| dict.get(k).filter(|v| !v.is_null()).or_else(|| self.get(k));
        let num = |k: &str| -> Result<Option<f64>, FormatError> {
            match lookup(k) {
                None => Ok(None),
                Some(v) => v
                    .as_f64()
                    .map(Some)
                    .ok_or_else(|| self.err(format!("rope `{k}` must be a number, got {v}"))),
            }
        };
        let theta = num("rope_theta")?.unwrap_or(10000.0);
        let partial_rotary_factor = num("partial_rotary_factor")?.unwrap_or(1.0);
        let kind =
            dict.get("rope_type").or_else(|| dict.get("type")).and_then(Value::as_str).unwrap_or("default");
        let req = |k: &str| -> Result<f64, FormatError> {
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
                let list = |k: &str| -> Result<Vec<f64>, FormatError> {
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
        let err = ModelConfig::from_json_str(r#"{"model_type":"gemma2"}"#, "c.json").unwrap_err().to_string();
        assert!(err.contains("gemma2") && err.contains("llama, mistral, qwen2, phi3"), "{err}");
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
