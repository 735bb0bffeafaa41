//! GGUF v3, the file format llama.cpp loads, and ggml's block formats: everything slmc reads from
//! or writes to llama.cpp's world, without burn.
//!
//! * the container: [`reader`] / [`writer`] enforcing what llama.cpp enforces, [`value`],
//!   [`tensor_info`];
//! * [`export`]: HF tensor names → GGUF names and layouts per family, export types
//!   ([`file_type`]) and their per-tensor rules, [`export_gguf`];
//! * tokenizer metadata: [`vocab`] (BPE and SentencePiece vocabularies, [`pretokenizer`] and its
//!   [`pre_table`]), [`spm`];
//! * [`ggml`]: ggml tensor types and bit-exact block quantizers / dequantizers (Q4_0 … Q8_0,
//!   Q2_K … Q6_K);
//! * [`lora_adapter`]: llama.cpp LoRA adapters ([`write_gguf_lora`]).
//!
//! One error type, [`GgufError`]. The GGUF reader is fuzzed (`fuzz/`, target `gguf_reader`).
//!
//! Layout (little-endian): magic `GGUF`, version 3, tensor count (u64), metadata count (u64),
//! the metadata key/values, the tensor infos, zero padding to the alignment (32), then the tensor
//! data, each tensor padded to the alignment (`docs/formats.md` §1).

pub mod error;
pub mod export;
pub mod file_type;
pub mod ggml;
pub mod lora_adapter;
pub mod pre_table;
pub mod pretokenizer;
pub mod reader;
pub mod spm;
pub mod tensor_info;
pub mod value;
pub mod vocab;
mod vocab_spm_json;
pub mod writer;

pub use error::GgufError;
pub use export::{ExportReport, ExportTensor, GgufContents, TensorData, export_gguf};
pub use file_type::{FileType, TensorRole};
pub use lora_adapter::{GgufLoraReport, GgufLoraTarget, write_gguf_lora};
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
