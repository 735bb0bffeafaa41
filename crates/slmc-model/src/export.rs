//! One entry point for every export format, for callers that pick the format from data (a
//! recipe's `[export]` table, the CLI): [`export`] takes an [`ExportRequest`] and writes the
//! model atomically.

use crate::ModelError;
use crate::gguf_export::{GgufOptions, export_model_gguf};
use crate::hf_dir::{SaveOptions, save};
use crate::model::CausalLm;
use slmc_gguf::ExportReport;
use std::path::{Path, PathBuf};

/// What to write.
#[derive(Debug, Clone)]
pub enum ExportRequest {
    /// A Hugging Face directory (config.json, safetensors, tokenizer files) transformers loads.
    Safetensors(SaveOptions),
    /// A GGUF file llama.cpp loads (with any pre-encoded quantization records).
    Gguf(GgufOptions),
}

/// What was written.
#[derive(Debug, Clone)]
pub enum ExportOutcome {
    /// The files of the Hugging Face directory.
    Safetensors(Vec<PathBuf>),
    /// The GGUF file's tensors, size and notes.
    Gguf(ExportReport),
}

/// Writes `model` to `out` (a directory for safetensors, a file for GGUF).
pub fn export(model: &CausalLm, request: &ExportRequest, out: &Path) -> Result<ExportOutcome, ModelError> {
    match request {
        ExportRequest::Safetensors(o) => save(model, out, o).map(ExportOutcome::Safetensors),
        ExportRequest::Gguf(o) => export_model_gguf(model, o, out).map(ExportOutcome::Gguf),
    }
}
