//! Reading the family-specific parts of the forward pass ([`Features`]) from `config.json`, in
//! both transformers 4.x and 5.x spellings (docs/families.md, "Family rules the code follows").

use super::{Activation, Arch, BlockKind, Features, NormKind, Parser, RopeConfig};
use crate::ConfigError;
use serde_json::{Map, Value};

impl Parser<'_> {
    /// The [`Features`] of `arch`.
    pub(super) fn features(
        &self,
        arch: Arch,
        hidden_size: usize,
        head_dim: usize,
        num_layers: usize,
        sliding_windows: &[Option<usize>],
        multimodal: bool,
    ) -> Result<Features, ConfigError> {
        if self.bool_opt("use_bidirectional_attention")?.unwrap_or(false) {
            return Err(self.err(
                "use_bidirectional_attention = true (an embedding model) is not a causal LM; slmc's decoder is causal only",
            ));
        }
        if arch == Arch::Phi && self.bool_opt("qk_layernorm")?.unwrap_or(false) {
            return Err(self.err(
                "phi with qk_layernorm = true is not supported (llama.cpp has no such phi2 graph either)",
            ));
        }
        let one = |key: &str| -> Result<f64, ConfigError> { Ok(self.f64_opt(key)?.unwrap_or(1.0)) };
        let head_scale = 1.0 / (head_dim as f64).sqrt();
        let query_pre_attn = || -> Result<f64, ConfigError> {
            let s = self.f64_opt("query_pre_attn_scalar")?.unwrap_or(256.0);
            Ok(1.0 / s.sqrt())
        };
        let softcap = |key: &str, default: Option<f64>| -> Result<Option<f64>, ConfigError> {
            // An explicit null disables the cap; a missing key takes the class default.
            match self.raw.get(key) {
                None => Ok(default),
                Some(Value::Null) => Ok(None),
                Some(_) => {
                    let cap = self.f64_opt(key)?.filter(|c| *c > 0.0);
                    cap.map(Some)
                        .ok_or_else(|| self.err(format!("`{key}` must be a positive number or null")))
                }
            }
        };
        let gemma_embed = (hidden_size as f64).sqrt();
        let mut f = Features {
            norm: NormKind::Rms,
            qk_norm: None,
            activation: self.activation(arch)?,
            block: BlockKind::Sequential,
            embedding_multiplier: 1.0,
            attention_scale: head_scale,
            attn_softcap: None,
            final_softcap: None,
            residual_multiplier: 1.0,
            logits_scaling: 1.0,
            rope_local: None,
            rope_layers: self.rope_layers(arch, num_layers)?,
            lm_head_bias: false,
            multimodal,
        };
        match arch {
            Arch::Llama | Arch::Mistral | Arch::Qwen2 | Arch::Phi3 | Arch::SmolLm3 => {}
            Arch::Gemma => {
                f.norm = NormKind::RmsUnitOffset;
                f.embedding_multiplier = gemma_embed;
            }
            Arch::Gemma2 => {
                f.norm = NormKind::RmsUnitOffset;
                f.embedding_multiplier = gemma_embed;
                f.block = BlockKind::Sandwich;
                f.attention_scale = query_pre_attn()?;
                f.attn_softcap = softcap("attn_logit_softcapping", Some(50.0))?;
                f.final_softcap = softcap("final_logit_softcapping", Some(30.0))?;
            }
            Arch::Gemma3 => {
                f.norm = NormKind::RmsUnitOffset;
                f.qk_norm = Some(NormKind::RmsUnitOffset);
                f.embedding_multiplier = gemma_embed;
                f.block = BlockKind::Sandwich;
                f.attention_scale = query_pre_attn()?;
                // transformers stores `attn_logit_softcapping` for Gemma 3 but never applies it.
                f.final_softcap = softcap("final_logit_softcapping", None)?;
                if sliding_windows.iter().any(Option::is_some) {
                    f.rope_local = Some(self.local_rope(arch, head_dim)?);
                }
            }
            Arch::Granite => {
                f.embedding_multiplier = one("embedding_multiplier")?;
                f.attention_scale = one("attention_multiplier")?;
                f.residual_multiplier = one("residual_multiplier")?;
                f.logits_scaling = one("logits_scaling")?;
                if f.logits_scaling == 0.0 {
                    return Err(self.err("logits_scaling must not be 0"));
                }
            }
            Arch::Phi => {
                f.norm = NormKind::Layer;
                f.block = BlockKind::Parallel;
                f.lm_head_bias = true;
            }
            Arch::Qwen3 => f.qk_norm = Some(NormKind::Rms),
        }
        Ok(f)
    }

    /// The MLP activation: SiLU for the Llama-like families, tanh GELU for Gemma (`gelu` in old
    /// Gemma 1 configs means the tanh form, as transformers 5 and llama.cpp read it) and Phi-2
    /// (`gelu_new`).
    fn activation(&self, arch: Arch) -> Result<Activation, ConfigError> {
        // Gemma 2/3 read `hidden_activation`; the others `hidden_act`.
        let key = if matches!(arch, Arch::Gemma2 | Arch::Gemma3) && self.get("hidden_activation").is_some() {
            "hidden_activation"
        } else {
            "hidden_act"
        };
        let Some(act) = self.get(key).and_then(Value::as_str) else {
            return Ok(if arch.is_gemma() || arch == Arch::Phi {
                Activation::GeluTanh
            } else {
                Activation::Silu
            });
        };
        match (act, arch.is_gemma() || arch == Arch::Phi) {
            ("silu" | "swish", false) => Ok(Activation::Silu),
            ("gelu_pytorch_tanh" | "gelu_new" | "gelu_fast", true) => Ok(Activation::GeluTanh),
            ("gelu", true) if arch == Arch::Gemma => Ok(Activation::GeluTanh),
            _ => Err(self.err(format!(
                "unsupported {key} `{act}` for {}; slmc implements {}",
                arch.model_type(),
                if arch.is_gemma() || arch == Arch::Phi { "gelu_pytorch_tanh / gelu_new" } else { "silu" }
            ))),
        }
    }

    /// Per layer, whether it applies RoPE: SmolLM3's `no_rope_layers` (1 = RoPE) or, without it,
    /// every `no_rope_layer_interval`-th layer (4) is NoPE; every layer for the other families.
    pub(super) fn rope_layers(&self, arch: Arch, num_layers: usize) -> Result<Vec<bool>, ConfigError> {
        if arch != Arch::SmolLm3 {
            return Ok(vec![true; num_layers]);
        }
        if let Some(v) = self.get("no_rope_layers") {
            let list = v.as_array().ok_or_else(|| self.err("`no_rope_layers` must be a list of 0/1"))?;
            if list.len() != num_layers {
                return Err(
                    self.err(format!("no_rope_layers has {} entries for {num_layers} layers", list.len()))
                );
            }
            return list
                .iter()
                .map(|x| match x.as_u64() {
                    Some(0) => Ok(false),
                    Some(1) => Ok(true),
                    _ => Err(self.err(format!("no_rope_layers entries must be 0 or 1, got {x}"))),
                })
                .collect();
        }
        let interval = self.usize_opt("no_rope_layer_interval")?.unwrap_or(4).max(1);
        Ok((0..num_layers).map(|i| !(i + 1).is_multiple_of(interval)).collect())
    }

    /// Gemma 3's sliding-layer RoPE: 5.x `rope_parameters.sliding_attention`, or 4.x
    /// `rope_local_base_freq` (default 10 000, never scaled).
    fn local_rope(&self, arch: Arch, head_dim: usize) -> Result<RopeConfig, ConfigError> {
        let nested = self
            .get("rope_parameters")
            .and_then(Value::as_object)
            .and_then(|p| p.get("sliding_attention"))
            .and_then(Value::as_object);
        match nested {
            Some(dict) => self.rope(arch, dict, false, 10_000.0, head_dim, 0),
            None => {
                let mut dict = Map::new();
                if let Some(theta) = self.get("rope_local_base_freq") {
                    dict.insert("rope_theta".into(), theta.clone());
                }
                self.rope(arch, &dict, false, 10_000.0, head_dim, 0)
            }
        }
    }
}
