//! Architecture metadata (`{arch}.*` keys) and generated tensors (`rope_freqs`, Phi-3 rope
//! factors), following what `convert_hf_to_gguf.py` writes for `LlamaForCausalLM` /
//! `MistralForCausalLM` (arch `llama`), `Qwen2ForCausalLM` (`qwen2`) and `Phi3ForCausalLM`
//! (`phi3`), with llama.cpp's exact value types: counts UINT32, epsilons and frequencies FLOAT32.

use crate::GgufError;
use crate::GgufWriter;
use slmc_config::hf_config::{Arch, ModelConfig, RopeScaling};

/// The llama.cpp architecture name of a Hugging Face architecture.
pub fn gguf_arch(arch: Arch) -> &'static str {
    match arch {
        Arch::Llama | Arch::Mistral => "llama",
        Arch::Qwen2 => "qwen2",
        Arch::Phi3 => "phi3",
        Arch::Gemma => "gemma",
        Arch::Gemma2 => "gemma2",
        Arch::Gemma3 => "gemma3",
        Arch::Granite => "granite",
        Arch::Phi => "phi2",
        Arch::Qwen3 => "qwen3",
        Arch::SmolLm3 => "smollm3",
    }
}

/// Whether the architecture runs llama.cpp's "normal" RoPE on consecutive pairs, so Q and K rows
/// must be permuted from Hugging Face's half-split layout.
pub fn needs_qk_permutation(arch: Arch) -> bool {
    matches!(arch, Arch::Llama | Arch::Mistral | Arch::Granite | Arch::SmolLm3)
}

/// Whether llama.cpp stores this architecture's norm weights as `1 + w` (Gemma's `(1 + w)·x̂`
/// becomes a plain `w'·x̂`; docs/families.md, "GGUF export").
pub fn norm_plus_one(arch: Arch) -> bool {
    arch.is_gemma()
}

/// A tensor the exporter creates (it has no Hugging Face counterpart).
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// GGUF name.
    pub name: &'static str,
    /// F32 values (a vector).
    pub values: Vec<f32>,
}

fn u32_of(name: &str, v: usize) -> Result<u32, GgufError> {
    u32::try_from(v)
        .map_err(|_| GgufError::GgufWrite { reason: format!("{name} = {v} does not fit in UINT32") })
}

/// Why llama.cpp's graph for this architecture cannot run a model of configuration `c`, if it
/// cannot (`slmc check` reports it before a run; the exporter refuses the file).
pub fn representable(c: &ModelConfig) -> Result<(), String> {
    let a = gguf_arch(c.arch);
    let f = &c.features;
    if matches!(c.arch, Arch::Phi3 | Arch::Phi) && c.head_dim * c.num_heads != c.hidden_size {
        return Err(format!(
            "llama.cpp's {a} needs head_dim × heads = hidden_size, got {} × {} ≠ {}",
            c.head_dim, c.num_heads, c.hidden_size
        ));
    }
    if c.arch.is_gemma() && !c.tie_word_embeddings {
        return Err(format!(
            "llama.cpp's {a} has no output.weight: an untied Gemma head cannot be written (tie it or export safetensors)"
        ));
    }
    if c.arch == Arch::Gemma2 && (f.attn_softcap.is_none() || f.final_softcap.is_none()) {
        return Err(
            "llama.cpp's gemma2 always soft-caps attention and logits; this config disables one".into()
        );
    }
    if c.arch == Arch::SmolLm3 {
        let fixed: Vec<bool> = (0..c.num_layers).map(|i| !(i + 1).is_multiple_of(4)).collect();
        if f.rope_layers != fixed {
            return Err(
                "llama.cpp's smollm3 hard-codes NoPE on every 4th layer; this model's no_rope_layers differ"
                    .into(),
            );
        }
    }
    if matches!(c.rope.scaling, RopeScaling::Llama3 { .. }) && !matches!(c.arch, Arch::Llama | Arch::Mistral)
    {
        return Err(format!(
            "llama3 rope scaling is only written for llama models, not {}",
            c.arch.model_type()
        ));
    }
    Ok(())
}

/// Adds the `{arch}.*` hyper-parameters. Returns notes on what llama.cpp will not reproduce.
pub fn add_hparams(w: &mut GgufWriter, c: &ModelConfig) -> Result<Vec<String>, GgufError> {
    representable(c).map_err(|reason| GgufError::GgufWrite { reason })?;
    let a = gguf_arch(c.arch);
    let k = |s: &str| format!("{a}.{s}");
    let mut notes = Vec::new();
    w.add(&k("context_length"), u32_of("context_length", c.max_position_embeddings)?)?;
    w.add(&k("embedding_length"), u32_of("embedding_length", c.hidden_size)?)?;
    w.add(&k("block_count"), u32_of("block_count", c.num_layers)?)?;
    w.add(&k("feed_forward_length"), u32_of("feed_forward_length", c.intermediate_size)?)?;
    w.add(&k("attention.head_count"), u32_of("head_count", c.num_heads)?)?;
    w.add(&k("attention.head_count_kv"), u32_of("head_count_kv", c.num_kv_heads)?)?;
    if c.arch == Arch::Phi {
        w.add(&k("attention.layer_norm_epsilon"), c.rms_norm_eps as f32)?;
    } else {
        w.add(&k("attention.layer_norm_rms_epsilon"), c.rms_norm_eps as f32)?;
    }
    w.add(&k("rope.freq_base"), c.rope.theta as f32)?;
    let default_head = c.hidden_size / c.num_heads;
    let head_lengths = |w: &mut GgufWriter| -> Result<(), GgufError> {
        w.add(&k("attention.key_length"), u32_of("key_length", c.head_dim)?)?;
        w.add(&k("attention.value_length"), u32_of("value_length", c.head_dim)?)
    };
    match c.arch {
        Arch::Gemma | Arch::Gemma2 | Arch::Gemma3 | Arch::Qwen3 => head_lengths(w)?,
        Arch::Granite | Arch::SmolLm3 => {
            w.add(&k("vocab_size"), u32_of("vocab_size", c.vocab_size)?)?;
            w.add(&k("rope.dimension_count"), u32_of("rope.dimension_count", c.head_dim)?)?;
            if c.head_dim != default_head {
                head_lengths(w)?;
            }
        }
        Arch::Phi => {
            w.add(&k("rope.dimension_count"), u32_of("rope.dimension_count", c.rotary_dim())?)?;
            if c.head_dim != default_head {
                head_lengths(w)?;
            }
        }
        _ => {}
    }
    add_family_hparams(w, c, &mut notes)?;
    match c.arch {
        Arch::Gemma
        | Arch::Gemma2
        | Arch::Gemma3
        | Arch::Granite
        | Arch::Phi
        | Arch::Qwen3
        | Arch::SmolLm3 => {}
        Arch::Llama | Arch::Mistral => {
            w.add(&k("attention.key_length"), u32_of("key_length", c.head_dim)?)?;
            w.add(&k("attention.value_length"), u32_of("value_length", c.head_dim)?)?;
            w.add(&k("vocab_size"), u32_of("vocab_size", c.vocab_size)?)?;
            // llama.cpp requires n_rot == head_dim for llama.
            w.add(&k("rope.dimension_count"), u32_of("rope.dimension_count", c.head_dim)?)?;
        }
        Arch::Qwen2 => {
            if c.head_dim != default_head {
                w.add(&k("attention.key_length"), u32_of("key_length", c.head_dim)?)?;
                w.add(&k("attention.value_length"), u32_of("value_length", c.head_dim)?)?;
            }
        }
        Arch::Phi3 => {
            let rot = (c.rope.partial_rotary_factor * c.hidden_size as f64) as usize / c.num_heads;
            w.add(&k("rope.dimension_count"), u32_of("rope.dimension_count", rot)?)?;
            let orig = match &c.rope.scaling {
                RopeScaling::LongRope { original_max_position_embeddings, .. } => {
                    *original_max_position_embeddings
                }
                _ => c
                    .raw
                    .get("original_max_position_embeddings")
                    .and_then(|v| v.as_u64())
                    .map_or(4096, |v| v as usize),
            };
            w.add(&k("rope.scaling.original_context_length"), u32_of("original_context_length", orig)?)?;
            let window = c.sliding_windows.iter().flatten().copied().next().unwrap_or(0);
            w.add(&k("attention.sliding_window"), u32_of("sliding_window", window)?)?;
            if window > 0 {
                notes.push(format!(
                    "phi3 sliding_window {window}: llama.cpp currently disables Phi-3 sliding-window attention"
                ));
            }
        }
    }
    match &c.rope.scaling {
        RopeScaling::None => {}
        RopeScaling::Linear { factor } => {
            if c.arch == Arch::Phi3 {
                return Err(GgufError::GgufWrite {
                    reason: "linear rope scaling is not supported for phi3".into(),
                });
            }
            w.add(&k("rope.scaling.type"), "linear")?;
            w.add(&k("rope.scaling.factor"), *factor as f32)?;
        }
        // Written as the rope_freqs tensor (generated_tensors).
        RopeScaling::Llama3 { .. } => {}
        RopeScaling::LongRope { attention_factor, .. } => {
            w.add(&k("rope.scaling.attn_factor"), *attention_factor as f32)?;
        }
    }
    if matches!(c.arch, Arch::Mistral | Arch::Qwen2 | Arch::Qwen3 | Arch::SmolLm3)
        && c.sliding_windows.iter().any(Option::is_some)
    {
        let w = c.sliding_windows.iter().flatten().next().copied().unwrap_or(0);
        notes.push(format!(
            "sliding_window {w}: llama.cpp's {a} architecture attends to the full context, so outputs match \
             Hugging Face only for sequences of at most {w} tokens"
        ));
    }
    Ok(notes)
}

/// The keys of the Gemma 2/3, Granite and SmolLM3 graphs (docs/families.md, "GGUF export"):
/// soft-caps, sliding window and its layer pattern, the second RoPE base, Granite's four
/// multipliers; and what llama.cpp cannot express, refused or noted.
fn add_family_hparams(w: &mut GgufWriter, c: &ModelConfig, notes: &mut Vec<String>) -> Result<(), GgufError> {
    let a = gguf_arch(c.arch);
    let k = |s: &str| format!("{a}.{s}");
    let f = &c.features;
    if matches!(c.arch, Arch::Gemma2 | Arch::Gemma3) {
        let expected = 1.0 / (c.head_dim as f64).sqrt();
        if (f.attention_scale - expected).abs() > 1e-9 * expected {
            notes.push(format!(
                "query_pre_attn_scalar gives attention scale {:.6}; llama.cpp's {a} uses 1/sqrt(head_dim) = {expected:.6}",
                f.attention_scale
            ));
        }
        let window = c.sliding_windows.iter().flatten().copied().next();
        if let Some(win) = window {
            w.add(&k("attention.sliding_window"), u32_of("sliding_window", win)?)?;
        }
        // llama.cpp's default patterns: Gemma 2 even layers (period 2), Gemma 3 five of six.
        let period = if c.arch == Arch::Gemma2 { 2 } else { 6 };
        let default: Vec<bool> = (0..c.num_layers).map(|i| i % period < period - 1).collect();
        let actual: Vec<bool> = c.sliding_windows.iter().map(Option::is_some).collect();
        if window.is_some() && actual != default {
            w.add(&k("attention.sliding_window_pattern"), crate::value::Array::Bool(actual))?;
        }
    }
    match c.arch {
        Arch::Gemma2 => {
            if let (Some(attn), Some(fin)) = (f.attn_softcap, f.final_softcap) {
                w.add(&k("attn_logit_softcapping"), attn as f32)?;
                w.add(&k("final_logit_softcapping"), fin as f32)?;
            }
        }
        Arch::Gemma3 => {
            if let Some(local) = &f.rope_local {
                w.add(&k("rope.freq_base_swa"), local.theta as f32)?;
            }
            if let Some(fin) = f.final_softcap {
                w.add(&k("final_logit_softcapping"), fin as f32)?;
            }
        }
        Arch::Granite => {
            w.add(&k("attention.scale"), f.attention_scale as f32)?;
            w.add(&k("embedding_scale"), f.embedding_multiplier as f32)?;
            w.add(&k("residual_scale"), f.residual_multiplier as f32)?;
            w.add(&k("logit_scale"), f.logits_scaling as f32)?;
        }
        _ => {}
    }
    Ok(())
}

/// Tensors llama.cpp needs that Hugging Face computes on the fly: `rope_freqs.weight` for
/// Llama-3 rope scaling (`LlamaModel.generate_extra_tensors`) and Phi-3's
/// `rope_factors_long/short.weight`.
pub fn generated_tensors(c: &ModelConfig) -> Vec<Generated> {
    match &c.rope.scaling {
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => {
            // Computed in f32 exactly as the converter's torch code does (float32 tensors with
            // Python scalars cast to f32), so the tensor is bit-identical to its output.
            let dim = c.head_dim as f32;
            let base = c.rope.theta as f32;
            let old = *original_max_position_embeddings as f64;
            let (lo, hi, factor) = (*low_freq_factor, *high_freq_factor, *factor);
            let (lo_wl, hi_wl) = (old / lo, old / hi);
            let values = (0..c.head_dim / 2)
                .map(|i| {
                    let freq = 1.0f32 / base.powf((2 * i) as f32 / dim);
                    let wl = (2.0 * std::f64::consts::PI) as f32 / freq;
                    if f64::from(wl) < hi_wl {
                        1.0
                    } else if f64::from(wl) > lo_wl {
                        factor as f32
                    } else {
                        let smooth = (old as f32 / wl - lo as f32) / (hi - lo) as f32;
                        1.0f32 / ((1.0f32 - smooth) / factor as f32 + smooth)
                    }
                })
                .collect();
            vec![Generated { name: "rope_freqs.weight", values }]
        }
        RopeScaling::LongRope { short_factor, long_factor, .. } if c.arch == Arch::Phi3 => vec![
            Generated {
                name: "rope_factors_long.weight",
                values: long_factor.iter().map(|&v| v as f32).collect(),
            },
            Generated {
                name: "rope_factors_short.weight",
                values: short_factor.iter().map(|&v| v as f32).collect(),
            },
        ],
        _ => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_rope_freqs_hit_all_three_branches() {
        let text = r#"{"model_type":"llama","hidden_size":64,"num_attention_heads":4,"num_hidden_layers":1,
            "intermediate_size":128,"vocab_size":100,"rope_theta":500000.0,"rope_scaling":{"rope_type":"llama3",
            "factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":64}}"#;
        let c = ModelConfig::from_json_str(text, "c").unwrap();
        let g = generated_tensors(&c);
        assert_eq!(g.len(), 1);
        let f = &g[0].values;
        assert_eq!(f.len(), 8);
        assert_eq!(f[0], 1.0);
        // convert_hf_to_gguf.py's value (torch float32), bit for bit.
        assert_eq!(f[1].to_bits(), 1075596795, "{f:?}");
        assert!(f[2..].iter().all(|&v| v == 8.0), "{f:?}");
    }
}
