//! LoRA adapters as GGUF files llama.cpp loads with `--lora` (`llama_adapter_lora_init_impl`):
//! what `convert_lora_to_gguf.py` writes (`docs/formats.md` §4).
//!
//! Metadata: `general.architecture` (the base model's llama.cpp arch), `general.type = "adapter"`,
//! `adapter.type = "lora"`, `adapter.lora.alpha` (FLOAT32), `general.quantization_version`. For
//! every adapted weight `N.weight` (GGUF name through the model exporter's name map) the tensors
//! `N.weight.lora_a` (PEFT's `[r, in]`, ggml `ne = [in, r]`) and `N.weight.lora_b` (`[out, r]`,
//! `ne = [r, out]`). For the `llama` arch the rows of B of `q_proj` / `k_proj` get the Q/K
//! permutation of the base weights (`permute(B·A) = permute(B)·A`); A is unchanged.
//!
//! llama.cpp scales by `alpha / r` with `r = lora_b.ne[0]`; an rsLoRA adapter (scale
//! `alpha / sqrt(r)`) is therefore written with `alpha · sqrt(r)` (the converter ignores
//! `use_rslora` and gets it wrong). DoRA and `modules_to_save` have no llama.cpp form and are
//! refused (export merged weights instead).

use crate::GgufError;
use crate::export::arch::{gguf_arch, needs_qk_permutation};
use crate::export::names::{self, Mapped};
use crate::ggml::{self, GgmlType};
use crate::{FileType, GgufWriter, QUANTIZATION_VERSION, TensorInfo};
use slmc_config::hf_config::ModelConfig;
use slmc_formats::adapter::LoraAdapter;
use std::borrow::Cow;
use std::path::Path;

/// What the adapter file must agree with in the base model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufLoraTarget {
    /// llama.cpp architecture of the base model (`llama`, `qwen2`, `phi3`); llama.cpp refuses an
    /// adapter whose arch differs.
    pub arch: String,
    /// Query heads (the Q permutation).
    pub n_head: usize,
    /// Key/value heads (the K permutation).
    pub n_head_kv: usize,
    /// Whether Q/K rows are permuted (llama.cpp's normal RoPE: the `llama` arch).
    pub permute_qk: bool,
    /// Whether the base model ties `lm_head` to the embeddings (then it has no `output.weight`
    /// for an `lm_head` adapter to apply to).
    pub tied_embeddings: bool,
}

impl GgufLoraTarget {
    /// A target from a llama.cpp arch name and head counts (Q/K permuted iff the arch is `llama`;
    /// untied embeddings).
    pub fn new(arch: &str, n_head: usize, n_head_kv: usize) -> Self {
        Self { arch: arch.into(), n_head, n_head_kv, permute_qk: arch == "llama", tied_embeddings: false }
    }

    /// The target of a Hugging Face model configuration.
    pub fn from_config(c: &ModelConfig) -> Self {
        Self {
            arch: gguf_arch(c.arch).into(),
            n_head: c.num_heads,
            n_head_kv: c.num_kv_heads,
            permute_qk: needs_qk_permutation(c.arch),
            tied_embeddings: c.tie_word_embeddings,
        }
    }
}

/// What [`write_gguf_lora`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufLoraReport {
    /// Size of the file.
    pub file_bytes: u64,
    /// `adapter.lora.alpha` as written (rsLoRA folded in).
    pub alpha: f32,
    /// Every tensor, in file order.
    pub tensors: Vec<TensorInfo>,
    /// Anything a reader should know (the rsLoRA fold).
    pub notes: Vec<String>,
}

fn bad(reason: impl Into<String>) -> GgufError {
    GgufError::GgufWrite { reason: reason.into() }
}

/// The `adapter.lora.alpha` that gives llama.cpp's `alpha / r` the adapter's scale.
pub fn gguf_alpha(adapter: &LoraAdapter) -> f32 {
    let c = &adapter.config;
    if c.rslora { (c.alpha * (c.r as f64).sqrt()) as f32 } else { c.alpha as f32 }
}

struct Planned {
    info: TensorInfo,
    values: Vec<f32>,
}

/// Renames each module's weight and lays out its lora_a / lora_b (B permuted where needed).
fn plan(adapter: &LoraAdapter, target: &GgufLoraTarget, ty: GgmlType) -> Result<Vec<Planned>, GgufError> {
    let mut out = Vec::with_capacity(2 * adapter.modules.len());
    for (module, w) in &adapter.modules {
        let hf = format!("{module}.weight");
        // Linear modules map to the same names in every architecture.
        let name = match names::gguf_name(&hf, slmc_config::hf_config::Arch::Llama) {
            Some(Mapped::Tensor(n)) => n,
            _ => return Err(bad(format!("`{hf}` has no llama.cpp counterpart for an adapter to apply to"))),
        };
        if name == "token_embd.weight" {
            return Err(bad(format!("`{module}`: LoRA on token embeddings is not supported")));
        }
        if name == "output.weight" && target.tied_embeddings {
            return Err(bad(format!(
                "`{module}`: the base model ties lm_head to the embeddings, so llama.cpp has no output.weight \
                 to apply this adapter to (convert_lora_to_gguf.py refuses it too)"
            )));
        }
        let heads =
            if target.permute_qk { names::permute_heads(&hf, target.n_head, target.n_head_kv) } else { None };
        let b = match heads {
            Some(h) => {
                names::permute_rows(&w.b.data, w.rank(), h).map_err(|e| bad(format!("`{hf}` lora_B: {e}")))?
            }
            None => w.b.data.clone(),
        };
        let (r, inp, outf) = (w.rank(), w.in_features(), w.out_features());
        out.push(Planned {
            info: TensorInfo::from_torch_shape(format!("{name}.lora_a"), &[r, inp], ty),
            values: w.a.data.clone(),
        });
        out.push(Planned {
            info: TensorInfo::from_torch_shape(format!("{name}.lora_b"), &[outf, r], ty),
            values: b,
        });
    }
    Ok(out)
}

/// Writes `adapter` as a llama.cpp LoRA adapter for a base model described by `target`, with
/// the lora tensors stored as `file_type` (F32, F16 or BF16, as the converter's `--outtype`).
/// The file is written atomically. Refuses DoRA, `modules_to_save`, embedding adapters, an
/// `lm_head` adapter on a tied model and `alpha = 0` (which llama.cpp reads as "scale 1").
pub fn write_gguf_lora(
    adapter: &LoraAdapter,
    target: &GgufLoraTarget,
    file_type: FileType,
    out: &Path,
) -> Result<GgufLoraReport, GgufError> {
    adapter.validate()?;
    let c = &adapter.config;
    if c.dora {
        return Err(bad(
            "DoRA adapters have no llama.cpp form (it has no lora_magnitude_vector): export the merged weights instead",
        ));
    }
    if let Some(name) = adapter.saved.keys().next() {
        return Err(bad(format!(
            "`{name}` is saved whole (modules_to_save); a llama.cpp adapter holds only lora_a/lora_b pairs: \
             export the merged model instead"
        )));
    }
    let ty = match file_type {
        FileType::F32 | FileType::F16 | FileType::BF16 => file_type.base_type(),
        other => {
            return Err(bad(format!("LoRA adapters are written as f32, f16 or bf16, not {}", other.name())));
        }
    };
    let alpha = gguf_alpha(adapter);
    if alpha == 0.0 || !alpha.is_finite() {
        return Err(bad(format!(
            "lora_alpha {} cannot be written: llama.cpp reads alpha 0 as scale 1",
            c.alpha
        )));
    }
    let planned = plan(adapter, target, ty)?;

    let mut w = GgufWriter::new();
    w.add("general.architecture", target.arch.as_str())?;
    w.add("general.type", "adapter")?;
    w.add("adapter.type", "lora")?;
    w.add("adapter.lora.alpha", alpha)?;
    w.add("general.quantization_version", QUANTIZATION_VERSION)?;
    for p in &planned {
        w.add_tensor(p.info.clone())?;
    }
    let file_bytes = w.write_file(out, |i, info| {
        ggml::quantize(info.ggml_type, &planned[i].values)
            .map(Cow::Owned)
            .map_err(|e| bad(format!("`{}`: {e}", info.name)))
    })?;
    let mut notes = Vec::new();
    if c.rslora {
        notes.push(format!(
            "rsLoRA: adapter.lora.alpha = {} · sqrt({}) = {alpha}, so llama.cpp's alpha / r is the adapter's alpha / sqrt(r)",
            c.alpha, c.r
        ));
    }
    let tensors = planned.into_iter().map(|p| p.info).collect();
    Ok(GgufLoraReport { file_bytes, alpha, tensors, notes })
}
