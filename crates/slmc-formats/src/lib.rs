//! The Hugging Face side of slmc's files, with no dependency on burn (GGUF lives in `slmc-gguf`,
//! model configuration in `slmc-config`).
//!
//! * [`checkpoint`]: Hugging Face safetensors checkpoints (single file or sharded with
//!   `model.safetensors.index.json`), read lazily through a memory map with every header
//!   checked, and written atomically.
//! * [`adapter`]: LoRA / DoRA adapters as data and as PEFT adapter directories.
//! * [`nf4`]: bitsandbytes' NF4 4-bit format (QLoRA bases).
//! * [`record_file`]: the record files stages hand on (codes, masks, solved weights, windows).
//! * [`fsutil`]: atomic writes (temp file + rename) used by every writer in slmc, and the sweep of
//!   temporaries killed writers left.
//!
//! One error type, [`FormatError`].

pub mod adapter;
pub mod checkpoint;
pub mod error;
pub mod fsutil;
pub mod nf4;
pub mod record_file;

pub use checkpoint::{Checkpoint, TensorMeta, TensorToWrite, write_checkpoint};
pub use error::FormatError;
