//! The one export path: `slmc export` and a recipe's `[export]` both describe what to write with
//! an [`ExportRequest`] and call [`export`], so every format has one set of defaults:
//!
//! | format | writes | default |
//! |---|---|---|
//! | `safetensors` | a Hugging Face directory (config, weights, tokenizer files) | weights in the input's stored dtype |
//! | `gguf` | a GGUF file for llama.cpp | the type holding quantization codes as-is, else `bf16` for a bf16 checkpoint and `f16` otherwise |
//! | `gptq` | a packed GPTQ directory (transformers, vLLM) | needs quantization records |
//! | `peft` | the adapters as a PEFT directory | needs adapters |
//! | `gguf-lora` | the adapters as a llama.cpp LoRA GGUF | `f32` |
//!
//! The model formats write the adapted model with its adapters merged.

use crate::PipelineError;
use crate::state::Records;
use slmc_config::FloatDtype;
use slmc_formats::adapter::LoraAdapter;
use slmc_gguf::{ExportReport, FileType, GgufLoraReport};
use slmc_model::CausalLm;
use slmc_model::gguf_export::{GgufOptions, export_model_gguf};
use slmc_model::hf_dir::{SaveOptions, save};
use slmc_recipe::ExportFormat;
use std::path::{Path, PathBuf};

/// What to write, and where.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    /// The format.
    pub format: ExportFormat,
    /// A directory (`safetensors`, `gptq`, `peft`) or file (`gguf`, `gguf-lora`).
    pub out: PathBuf,
    /// The directory whose tokenizer files go with the model (required by `gguf`).
    pub tokenizer_dir: Option<PathBuf>,
    /// `general.name` of a GGUF file.
    pub name: Option<String>,
    /// `safetensors`: the storage dtype (default: the input's stored dtype).
    pub dtype: Option<FloatDtype>,
    /// `gguf` / `gguf-lora`: the file type (defaults in the module table).
    pub gguf_type: Option<FileType>,
    /// `safetensors`: split the weights into shards of at most this many bytes.
    pub max_shard_bytes: Option<u64>,
    /// `gguf`: quantize the fake-quantized weights again instead of writing the records' codes.
    pub requantize: bool,
    /// `gptq`: the settings `quantize_config.json` records.
    pub gptq: Option<slmc_quant::GptqSettings>,
}

impl ExportRequest {
    /// A request for `format` at `out` with every default.
    pub fn new(format: ExportFormat, out: PathBuf) -> Self {
        Self {
            format,
            out,
            tokenizer_dir: None,
            name: None,
            dtype: None,
            gguf_type: None,
            max_shard_bytes: None,
            requantize: false,
            gptq: None,
        }
    }
}

/// The model an export is made from.
pub struct ExportSource<'a> {
    /// The model, with any adapters attached.
    pub model: &'a CausalLm,
    /// Exact records of the stages that made it (quantization codes, masks).
    pub records: &'a Records,
    /// The dtype its input checkpoint was stored in.
    pub stored_dtype: FloatDtype,
    /// The adapter as read from its files, when the model's adapters came from one (`slmc
    /// export --adapter`): written as it was read by `peft` and `gguf-lora`. `None`: the
    /// adapters are taken from the model.
    pub adapter: Option<&'a LoraAdapter>,
}

/// What was written.
#[derive(Debug, Clone)]
pub enum ExportOutcome {
    /// The files of a directory (`safetensors`, `gptq`, `peft`).
    Files(Vec<PathBuf>),
    /// A GGUF model file's tensors, size and notes.
    Gguf(ExportReport),
    /// A llama.cpp LoRA adapter's tensors and size.
    GgufLora(GgufLoraReport),
}

/// The GGUF type `req` writes for `src`: the one asked for (a recipe asks for the type holding
/// its quantize stage's codes as-is, [`slmc_recipe::Recipe::gguf_type`]), else the default for
/// the stored dtype.
pub fn gguf_type(req: &ExportRequest, src: &ExportSource<'_>) -> FileType {
    req.gguf_type.unwrap_or_else(|| FileType::default_for(src.stored_dtype))
}

/// Writes `src` as `req` asks, atomically.
pub fn export(src: &ExportSource<'_>, req: &ExportRequest) -> Result<ExportOutcome, PipelineError> {
    let extracted = if src.adapter.is_none() { slmc_model::lora::extract(src.model)? } else { None };
    let adapter = src.adapter.or(extracted.as_ref());
    let merged = adapter.is_some().then(|| slmc_model::lora::merge(src.model.clone()));
    let model = merged.as_ref().unwrap_or(src.model);
    let no_adapter = || {
        PipelineError::Recipe(format!("the `{}` export needs LoRA adapters on the model", req.format.name()))
    };
    Ok(match req.format {
        ExportFormat::Safetensors => {
            let opts = SaveOptions {
                dtype: Some(req.dtype.unwrap_or(src.stored_dtype)),
                max_shard_bytes: req.max_shard_bytes,
                tokenizer_dir: req.tokenizer_dir.clone(),
                tensor_dtype: None,
            };
            ExportOutcome::Files(save(model, &req.out, &opts)?)
        }
        ExportFormat::Gguf => ExportOutcome::Gguf(write_gguf(model, src, req)?),
        ExportFormat::Gptq => {
            let (Some(records), Some(settings)) = (&src.records.quant, req.gptq) else {
                return Err(PipelineError::Recipe("the gptq export needs a quantize stage's records".into()));
            };
            slmc_quant::save_gptq(model, records, settings, req.tokenizer_dir.clone(), &req.out)?;
            ExportOutcome::Files(files_in(&req.out))
        }
        ExportFormat::Peft => {
            let adapter = adapter.ok_or_else(no_adapter)?;
            // For the language model of a multimodal checkpoint: the names of the multimodal
            // class the user's PEFT loads the base with.
            let multimodal = src.model.config.features.multimodal.then(|| adapter.for_multimodal_base());
            ExportOutcome::Files(slmc_formats::adapter::write_peft(
                multimodal.as_ref().unwrap_or(adapter),
                &req.out,
            )?)
        }
        ExportFormat::GgufLora => {
            let adapter = adapter.ok_or_else(no_adapter)?;
            let target = slmc_gguf::GgufLoraTarget::from_config(&src.model.config);
            let file_type = req.gguf_type.unwrap_or(FileType::F32);
            ExportOutcome::GgufLora(slmc_gguf::write_gguf_lora(adapter, &target, file_type, &req.out)?)
        }
    })
}

/// The GGUF model file, holding the quantization records' codes as-is unless `requantize`.
fn write_gguf(
    model: &CausalLm,
    src: &ExportSource<'_>,
    req: &ExportRequest,
) -> Result<ExportReport, PipelineError> {
    let tokenizer_dir = req
        .tokenizer_dir
        .clone()
        .ok_or_else(|| PipelineError::Recipe("GGUF export needs the model's tokenizer.json".into()))?;
    let opts = GgufOptions {
        file_type: gguf_type(req, src),
        tokenizer_dir,
        name: req.name.clone(),
        encoded: match (&src.records.quant, req.requantize) {
            (Some(r), false) => slmc_quant::ggml_codes::gguf_tensors(model, r)?,
            _ => Default::default(),
        },
    };
    Ok(export_model_gguf(model, &opts, &req.out)?)
}

/// The files directly in `dir`, sorted.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}
