//! The architectures slmc implements, one Hugging Face `model_type` each, and what the decoder
//! needs to know about their module layout.

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
    /// `GemmaForCausalLM` (Gemma 1: GeGLU, `(1 + w)` RMSNorm, embeddings scaled by √hidden).
    Gemma,
    /// `Gemma2ForCausalLM` (sandwich norms, attention and final logit soft-capping, sliding
    /// window on alternate layers).
    Gemma2,
    /// `Gemma3ForCausalLM` (`model_type` `gemma3_text`; also the text part of a `gemma3`
    /// multimodal checkpoint): Gemma 2's block with QK-norm, two RoPE bases, 5:1 sliding layers.
    Gemma3,
    /// `GraniteForCausalLM` (Llama with embedding, attention, residual and logit multipliers).
    Granite,
    /// `PhiForCausalLM` (Phi-1.5 / Phi-2: parallel block, LayerNorm, partial RoPE, biases).
    Phi,
    /// `Qwen3ForCausalLM` (Llama with per-head QK RMSNorm).
    Qwen3,
    /// `SmolLM3ForCausalLM` (Llama with NoPE layers).
    SmolLm3,
}

/// The `model_type` values slmc accepts, for error messages and `--help`.
pub const SUPPORTED_MODEL_TYPES: &str =
    "llama, mistral, qwen2, phi3, gemma, gemma2, gemma3_text (and gemma3), granite, phi, qwen3, smollm3";

impl Arch {
    /// Every architecture.
    pub const ALL: [Arch; 11] = [
        Self::Llama,
        Self::Mistral,
        Self::Qwen2,
        Self::Phi3,
        Self::Gemma,
        Self::Gemma2,
        Self::Gemma3,
        Self::Granite,
        Self::Phi,
        Self::Qwen3,
        Self::SmolLm3,
    ];

    /// Parses a Hugging Face `model_type` (`gemma3`, the multimodal wrapper, is handled by the
    /// config parser, which reads its `text_config`).
    pub fn from_model_type(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.model_type() == s)
    }

    /// The Hugging Face `model_type`.
    pub fn model_type(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Mistral => "mistral",
            Self::Qwen2 => "qwen2",
            Self::Phi3 => "phi3",
            Self::Gemma => "gemma",
            Self::Gemma2 => "gemma2",
            Self::Gemma3 => "gemma3_text",
            Self::Granite => "granite",
            Self::Phi => "phi",
            Self::Qwen3 => "qwen3",
            Self::SmolLm3 => "smollm3",
        }
    }

    /// The transformers class name written to `architectures`.
    pub fn hf_class(self) -> &'static str {
        match self {
            Self::Llama => "LlamaForCausalLM",
            Self::Mistral => "MistralForCausalLM",
            Self::Qwen2 => "Qwen2ForCausalLM",
            Self::Phi3 => "Phi3ForCausalLM",
            Self::Gemma => "GemmaForCausalLM",
            Self::Gemma2 => "Gemma2ForCausalLM",
            Self::Gemma3 => "Gemma3ForCausalLM",
            Self::Granite => "GraniteForCausalLM",
            Self::Phi => "PhiForCausalLM",
            Self::Qwen3 => "Qwen3ForCausalLM",
            Self::SmolLm3 => "SmolLM3ForCausalLM",
        }
    }

    /// Whether this is one of the Gemma generations (`(1 + w)` norms, scaled embeddings, GeGLU).
    pub fn is_gemma(self) -> bool {
        matches!(self, Self::Gemma | Self::Gemma2 | Self::Gemma3)
    }

    /// Whether q/k/v are one fused `qkv_proj` and gate/up one `gate_up_proj`.
    pub fn fused_projections(self) -> bool {
        self == Self::Phi3
    }

    /// Whether the MLP is Phi-2's ungated `fc2(act(fc1(x)))` instead of a gated one.
    pub fn ungated_mlp(self) -> bool {
        self == Self::Phi
    }

    /// The attention output projection, relative to the layer (`self_attn.dense` in Phi-2).
    pub fn attn_output(self) -> &'static str {
        if self == Self::Phi { "self_attn.dense" } else { "self_attn.o_proj" }
    }

    /// The Hugging Face name of the final norm (`model.final_layernorm` in Phi-2).
    pub fn final_norm(self) -> &'static str {
        if self == Self::Phi { "model.final_layernorm" } else { "model.norm" }
    }

    /// The linear modules of one decoder layer (names relative to the layer), grouped by the
    /// input they read, in forward order: q/k/v, o, gate/up, down (GPTQ's true-sequential order).
    pub fn layer_linears(self) -> [&'static [&'static str]; 4] {
        if self.fused_projections() {
            [&["self_attn.qkv_proj"], &["self_attn.o_proj"], &["mlp.gate_up_proj"], &["mlp.down_proj"]]
        } else if self.ungated_mlp() {
            [
                &["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
                &["self_attn.dense"],
                &["mlp.fc1"],
                &["mlp.fc2"],
            ]
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

/// How a norm layer normalises (`Rms`: Llama's `w·x̂`; `RmsUnitOffset`: Gemma's `(1 + w)·x̂`
/// computed in f32; `Layer`: LayerNorm with bias, Phi-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormKind {
    /// `w · x / rms(x)`.
    Rms,
    /// `(1 + w) · x / rms(x)` (Gemma; the stored weight is the offset from one).
    RmsUnitOffset,
    /// `w · (x − mean) / std + b` (LayerNorm).
    Layer,
}

/// The MLP's activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `x · sigmoid(x)` (SwiGLU when gated).
    Silu,
    /// GELU, tanh approximation (`gelu_pytorch_tanh`, `gelu_new`; GeGLU when gated).
    GeluTanh,
}

impl Activation {
    /// The transformers `hidden_act` name.
    pub fn hf_name(self) -> &'static str {
        match self {
            Self::Silu => "silu",
            Self::GeluTanh => "gelu_pytorch_tanh",
        }
    }
}

/// How a decoder layer wires its norms and residuals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// `h = x + m·attn(n₁(x)); out = h + m·mlp(n₂(h))` (Llama; `m` the residual multiplier).
    Sequential,
    /// `h = x + n₂(attn(n₁(x))); out = h + n₄(mlp(n₃(h)))` (Gemma 2/3).
    Sandwich,
    /// `n = n₁(x); out = attn(n) + mlp(n) + x` (Phi-2).
    Parallel,
}

/// Which rotary table a layer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerRope {
    /// The model's RoPE (`ModelConfig::rope`).
    Global,
    /// The sliding layers' own RoPE (`ModelConfig::rope_local`, Gemma 3).
    Local,
    /// No positional rotation at all (SmolLM3's NoPE layers).
    None,
}
