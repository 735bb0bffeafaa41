//! File formats for slmc, with no dependency on burn.
//!
//! * [`checkpoint`]: Hugging Face safetensors checkpoints (single file or sharded with
//!   `model.safetensors.index.json`), read lazily through a memory map with every header
//!   checked, and written atomically.
//! * [`fsutil`]: atomic writes (temp file + rename) used by every writer in slmc.

pub mod checkpoint;
pub mod dtype;
pub mod error;
pub mod fsutil;

pub use checkpoint::{Checkpoint, TensorMeta, TensorToWrite, write_checkpoint};
pub use dtype::FloatDtype;
pub use error::FormatError;
