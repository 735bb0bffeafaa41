//! GGUF v3, the file format llama.cpp loads: a reader and a writer that enforce what llama.cpp
//! enforces, the export types and their per-tensor rules, and tokenizer metadata.
//!
//! Layout (little-endian): magic `GGUF`, version 3, tensor count (u64), metadata count (u64),
//! the metadata key/values, the tensor infos, zero padding to the alignment (32), then the tensor
//! data, each tensor padded to the alignment (`formats.md` §1).

pub mod export;
pub mod file_type;
pub mod pre_table;
pub mod pretokenizer;
pub mod reader;
pub mod spm;
pub mod tensor_info;
pub mod value;
pub mod vocab;
mod vocab_spm_json;
pub mod writer;

pub use export::{ExportReport, ExportRequest, ExportTensor, TensorData, export_gguf};
pub use file_type::{FileType, TensorRole};
pub use reader::{GgufFile, GgufReader, ParseError, TensorEntry};
pub use tensor_info::TensorInfo;
pub use value::{Array, Value, ValueType};
pub use vocab::{GgufVocab, PreSource, VocabSources};
pub use writer::GgufWriter;

/// The four magic bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// The version slmc writes.
pub const GGUF_VERSION: u32 = 3;
/// Data alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// `general.quantization_version` (`GGML_QNT_VERSION`).
pub const QUANTIZATION_VERSION: u32 = 2;
