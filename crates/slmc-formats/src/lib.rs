//! File formats for slmc, with no dependency on burn.
//!
//! * [`checkpoint`]: Hugging Face safetensors checkpoints (single file or sharded with
//!   `model.safetensors.index.json`), read lazily through a memory map with every header
//!   checked, and written atomically.
//! * [`hf_config`]: Hugging Face `config.json` (transformers 4.x and 5.x forms) normalised.
//! * [`gguf`]: GGUF v3 reader and writer with llama.cpp's rules, export types, tokenizer metadata.
//! * [`ggml`]: ggml tensor types and bit-exact block quantizers (Q8_0 … Q6_K).
//! * [`fsutil`]: atomic writes (temp file + rename) used by every writer in slmc.

pub mod adapter;
pub mod checkpoint;
pub mod dtype;
pub mod error;
pub mod fsutil;
pub mod ggml;
pub mod gguf;
pub mod hf_config;
pub mod nf4;
pub mod prune_scope;
pub mod prune_shape;

pub use checkpoint::{Checkpoint, TensorMeta, TensorToWrite, write_checkpoint};
pub use dtype::FloatDtype;
pub use error::FormatError;
pub use hf_config::{Arch, ModelConfig, RopeConfig, RopeScaling};
