//! Model → GGUF: the replacement for `convert_hf_to_gguf.py` + `llama-quantize`.
//!
//! [`export_gguf`] takes a [`GgufContents`]: the model configuration, every tensor under its
//! Hugging Face name and layout, the tokenizer metadata, and the export [`FileType`]. Each tensor
//! is either dense f32 (quantized here to the type the file type's rules pick) or already encoded
//! ggml data (a quantization record from an earlier stage, e.g. GPTQ codes packed as Q4_0
//! blocks), which is written byte for byte: the exporter only moves whole rows (the llama Q/K
//! permutation), so encoded rows survive unchanged.
//!
//! What the exporter does, in llama.cpp's terms: renames tensors (`names`), permutes Q/K rows
//! for the `llama` arch, drops what llama.cpp must not see (rotary caches, a tied `lm_head`),
//! adds `rope_freqs` / Phi-3 rope factors, writes the `general.*`, `{arch}.*` and `tokenizer.*`
//! metadata with llama.cpp's exact types, and streams the data (quantizing tensor by tensor)
//! into a file written atomically.

pub mod arch;
pub mod names;

use super::file_type::{FileType, TensorRole};
use super::vocab::GgufVocab;
use super::{GgufWriter, QUANTIZATION_VERSION, TensorInfo};
use crate::GgufError;
use crate::ggml::{self, GgmlType};
use names::Mapped;
use slmc_config::hf_config::ModelConfig;
use std::borrow::Cow;
use std::path::Path;

/// The data of one tensor handed to the exporter.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// Dense values in Hugging Face layout (row-major, `[out, in]` for Linear weights).
    Dense(Vec<f32>),
    /// Encoded ggml data, written as-is: rows in Hugging Face order, each row (`in` values)
    /// a whole number of `ggml_type` blocks.
    Encoded {
        /// The ggml type of the bytes.
        ggml_type: GgmlType,
        /// The bytes.
        bytes: Vec<u8>,
    },
}

/// One tensor under its Hugging Face name.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportTensor {
    /// Hugging Face name (`model.layers.0.self_attn.q_proj.weight`).
    pub name: String,
    /// Hugging Face shape (`[out, in]` for Linear weights).
    pub shape: Vec<usize>,
    /// Values or encoded bytes.
    pub data: TensorData,
}

/// Everything [`export_gguf`] needs.
#[derive(Debug, Clone)]
pub struct GgufContents<'a> {
    /// The model configuration.
    pub config: &'a ModelConfig,
    /// Every parameter of the model (tied models may include or omit `lm_head.weight`).
    pub tensors: Vec<ExportTensor>,
    /// Tokenizer metadata.
    pub vocab: &'a GgufVocab,
    /// The export type.
    pub file_type: FileType,
    /// `general.name` (display only).
    pub name: Option<String>,
}

/// One tensor as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenTensor {
    /// GGUF name.
    pub name: String,
    /// ggml dimensions.
    pub ne: Vec<u64>,
    /// Stored type.
    pub ggml_type: GgmlType,
    /// Bytes of data (unpadded).
    pub n_bytes: u64,
    /// Whether the data was supplied already encoded.
    pub pre_encoded: bool,
}

/// What [`export_gguf`] wrote.
#[derive(Debug, Clone)]
pub struct ExportReport {
    /// Size of the file.
    pub file_bytes: u64,
    /// Every tensor, in file order.
    pub tensors: Vec<WrittenTensor>,
    /// `tokenizer.ggml.pre` and how it was chosen, plus anything llama.cpp will not reproduce.
    pub notes: Vec<String>,
}

impl ExportReport {
    /// Weights written (elements of every tensor).
    pub fn n_elements(&self) -> u64 {
        self.tensors.iter().map(|t| t.ne.iter().product::<u64>()).sum()
    }

    /// Bits per weight over all tensor data (llama.cpp's "BPW").
    pub fn bits_per_weight(&self) -> f64 {
        let bytes: u64 = self.tensors.iter().map(|t| t.n_bytes).sum();
        bytes as f64 * 8.0 / self.n_elements().max(1) as f64
    }
}

fn bad(reason: impl Into<String>) -> GgufError {
    GgufError::GgufWrite { reason: reason.into() }
}

struct Planned {
    info: TensorInfo,
    source: Source,
}

enum Source {
    Dense(Vec<f32>),
    Encoded(Vec<u8>),
}

/// Writes a GGUF file llama.cpp loads. See the module docs.
pub fn export_gguf(req: GgufContents<'_>, out: &Path) -> Result<ExportReport, GgufError> {
    let c = req.config;
    let n_vocab = req.vocab.tokens.len();
    if n_vocab != c.vocab_size {
        return Err(bad(format!(
            "the tokenizer metadata has {n_vocab} tokens but the model has {} embedding rows",
            c.vocab_size
        )));
    }
    let mut planned = plan_tensors(&req)?;
    for (i, p) in planned.iter().enumerate() {
        if planned[..i].iter().any(|q| q.info.name == p.info.name) {
            return Err(bad(format!("two tensors map to `{}`", p.info.name)));
        }
    }
    check_complete(&planned, c)?;
    let has_output = planned.iter().any(|p| p.info.name == "output.weight");
    for p in &mut planned {
        let role =
            TensorRole { name: &p.info.name, ne: &p.info.ne, n_layers: c.num_layers, tied: !has_output };
        match &p.source {
            Source::Dense(_) => p.info.ggml_type = req.file_type.tensor_type(&role),
            Source::Encoded(bytes) => {
                let want = req.file_type.tensor_type(&role);
                if want == GgmlType::F32 && p.info.ggml_type != GgmlType::F32 {
                    return Err(bad(format!(
                        "`{}` is supplied encoded as {}, but llama.cpp needs it in F32",
                        p.info.name, p.info.ggml_type
                    )));
                }
                p.info.check().map_err(bad)?;
                if bytes.len() as u64 != p.info.n_bytes() {
                    return Err(bad(format!(
                        "`{}`: encoded {} data has {} bytes, {:?} needs {}",
                        p.info.name,
                        p.info.ggml_type,
                        bytes.len(),
                        p.info.ne,
                        p.info.n_bytes()
                    )));
                }
            }
        }
    }
    for g in arch::generated_tensors(c) {
        let info =
            TensorInfo { name: g.name.into(), ne: vec![g.values.len() as u64], ggml_type: GgmlType::F32 };
        planned.push(Planned { info, source: Source::Dense(g.values) });
    }

    let mut w = GgufWriter::new();
    w.add("general.architecture", arch::gguf_arch(c.arch))?;
    w.add("general.type", "model")?;
    let mut notes = Vec::new();
    if let Some(n) = req.name.as_deref().filter(|n| !n.is_empty()) {
        match safe_general_name(n, &req.vocab.tokens) {
            Some(n) => w.add("general.name", n)?,
            None => notes.push(format!(
                "general.name `{n}` not written: llama.cpp would look up Phi-3 special tokens this vocabulary lacks"
            )),
        }
    }
    w.add("general.file_type", req.file_type.llama_ftype())?;
    w.add("general.quantization_version", QUANTIZATION_VERSION)?;
    notes.extend(arch::add_hparams(&mut w, c)?);
    req.vocab.add_to(&mut w)?;
    if req.vocab.warnings.is_empty() {
        let how = match req.vocab.pre_source {
            super::PreSource::Hash => "llama.cpp's pre-tokenizer hash table",
            super::PreSource::SentencePiece => "SentencePiece vocabulary",
            super::PreSource::Structure => "tokenizer.json's pre_tokenizer",
            super::PreSource::Fallback => "fallback",
        };
        notes.insert(0, format!("tokenizer.ggml.pre = {} (from {how})", req.vocab.pre));
    }
    notes.extend(req.vocab.warnings.iter().cloned());
    for p in &planned {
        w.add_tensor(p.info.clone())?;
    }
    let file_bytes = w.write_file(out, |i, info| match &planned[i].source {
        Source::Encoded(bytes) => Ok(Cow::Borrowed(&bytes[..])),
        Source::Dense(values) => ggml::quantize(info.ggml_type, values)
            .map(Cow::Owned)
            .map_err(|e| bad(format!("`{}`: {e}", info.name))),
    })?;
    let tensors = planned
        .iter()
        .map(|p| WrittenTensor {
            name: p.info.name.clone(),
            ne: p.info.ne.clone(),
            ggml_type: p.info.ggml_type,
            n_bytes: p.info.n_bytes(),
            pre_encoded: matches!(p.source, Source::Encoded(_)),
        })
        .collect();
    Ok(ExportReport { file_bytes, tensors, notes })
}

/// `general.name` is display-only, except that llama.cpp's vocabulary loader, for a name
/// containing `phi3` or `phi-3`, looks up `</s>`, `<unk>`, `<s>` and `<|endoftext|>` with
/// `std::map::at` and fails to load the model ("unordered_map::at") when one is missing. Such a
/// name is only written if all four tokens exist.
fn safe_general_name<'a>(name: &'a str, tokens: &[String]) -> Option<&'a str> {
    let lower = name.to_lowercase();
    if !(lower.contains("phi3") || lower.contains("phi-3")) {
        return Some(name);
    }
    let all = ["</s>", "<unk>", "<s>", "<|endoftext|>"].iter().all(|t| tokens.iter().any(|x| x == t));
    all.then_some(name)
}

/// Renames, filters, checks and permutes the request's tensors.
fn plan_tensors(req: &GgufContents<'_>) -> Result<Vec<Planned>, GgufError> {
    let c = req.config;
    let mut out: Vec<Planned> = Vec::with_capacity(req.tensors.len());
    for t in &req.tensors {
        let name = match names::gguf_name(&t.name, c.arch) {
            Some(Mapped::Tensor(n)) => n,
            Some(Mapped::Dropped) => continue,
            None => return Err(bad(format!("tensor `{}` has no llama.cpp counterpart", t.name))),
        };
        if name == "output.weight" && c.tie_word_embeddings {
            continue; // llama.cpp reuses token_embd; a duplicate would only waste space
        }
        // llama.cpp's phi2 has no tied head: the embeddings are written again as output.weight.
        let names_here: Vec<String> = if name == "token_embd.weight" && phi2_tied(c) {
            vec![name, "output.weight".into()]
        } else {
            vec![name]
        };
        for name in names_here {
            out.push(plan_one(t, name, c)?);
        }
    }
    Ok(out)
}

/// A tied Phi-2 model (llama.cpp's phi2 always reads `output.weight`).
fn phi2_tied(c: &ModelConfig) -> bool {
    c.arch == slmc_config::hf_config::Arch::Phi && c.tie_word_embeddings
}

/// One tensor renamed to `name`, checked, Q/K-permuted where llama.cpp's RoPE needs it, Gemma
/// norms stored as `1 + w`.
fn plan_one(t: &ExportTensor, name: String, c: &ModelConfig) -> Result<Planned, GgufError> {
    let n: usize = t.shape.iter().product();
    let row_len = t.shape.last().copied().unwrap_or(1).max(1);
    let heads = if arch::needs_qk_permutation(c.arch) {
        names::permute_heads(&t.name, c.num_heads, c.num_kv_heads)
    } else {
        None
    };
    let ne: Vec<u64> = t.shape.iter().rev().map(|&d| d as u64).collect();
    let (ggml_type, source) = match &t.data {
        TensorData::Dense(v) => {
            if v.len() != n {
                return Err(bad(format!("`{}` has {} values for shape {:?}", t.name, v.len(), t.shape)));
            }
            let mut v = match heads {
                // A 1-D bias permutes as a column of rows of length 1.
                Some(h) => names::permute_rows(v, if t.shape.len() == 1 { 1 } else { row_len }, h)
                    .map_err(|e| bad(format!("`{}`: {e}", t.name)))?,
                None => v.clone(),
            };
            if arch::norm_plus_one(c.arch) && name.ends_with("norm.weight") {
                v.iter_mut().for_each(|x| *x += 1.0);
            }
            (GgmlType::F32, Source::Dense(v))
        }
        TensorData::Encoded { ggml_type, bytes } => {
            let rows = if t.shape.len() == 1 { 1 } else { n / row_len };
            let b = match heads {
                Some(h) if t.shape.len() > 1 && rows > 0 && bytes.len() % rows == 0 => {
                    names::permute_rows(bytes, bytes.len() / rows, h)
                        .map_err(|e| bad(format!("`{}`: {e}", t.name)))?
                }
                Some(_) => return Err(bad(format!("`{}`: encoded data cannot be row-permuted", t.name))),
                None => bytes.clone(),
            };
            (*ggml_type, Source::Encoded(b))
        }
    };
    Ok(Planned { info: TensorInfo { name, ne, ggml_type }, source })
}

/// The tensors llama.cpp requires for this configuration are all there (it would reject a file
/// missing one, except `output.weight`, whose absence silently means "tied": so an untied model
/// without it is refused here).
fn check_complete(planned: &[Planned], c: &ModelConfig) -> Result<(), GgufError> {
    let has = |n: &str| planned.iter().any(|p| p.info.name == n);
    let mut missing: Vec<String> = Vec::new();
    let mut need = |n: String| {
        if !has(&n) {
            missing.push(n);
        }
    };
    use slmc_config::hf_config::BlockKind;
    let f = &c.features;
    need("token_embd.weight".into());
    need("output_norm.weight".into());
    if !c.tie_word_embeddings || phi2_tied(c) {
        need("output.weight".into());
    }
    if f.lm_head_bias {
        need("output.bias".into());
    }
    for i in 0..c.num_layers {
        for base in ["attn_norm", "attn_output", "ffn_up", "ffn_down"] {
            need(format!("blk.{i}.{base}.weight"));
        }
        match f.block {
            BlockKind::Sequential => need(format!("blk.{i}.ffn_norm.weight")),
            BlockKind::Sandwich => {
                for base in ["post_attention_norm", "ffn_norm", "post_ffw_norm"] {
                    need(format!("blk.{i}.{base}.weight"));
                }
            }
            BlockKind::Parallel => {}
        }
        if f.qk_norm.is_some() {
            need(format!("blk.{i}.attn_q_norm.weight"));
            need(format!("blk.{i}.attn_k_norm.weight"));
        }
        if c.arch.fused_projections() {
            need(format!("blk.{i}.attn_qkv.weight"));
        } else {
            for base in ["attn_q", "attn_k", "attn_v"] {
                need(format!("blk.{i}.{base}.weight"));
            }
            if !c.arch.ungated_mlp() {
                need(format!("blk.{i}.ffn_gate.weight"));
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let n = missing.len();
    missing.truncate(5);
    Err(bad(format!(
        "missing tensors for a {} model: {}{}",
        c.arch.model_type(),
        missing.join(", "),
        if n > 5 { format!(" (and {} more)", n - 5) } else { String::new() }
    )))
}
