//! The error type of `slmc-gguf`.

use std::path::PathBuf;

/// What can go wrong reading or writing GGUF files and ggml blocks.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// A GGUF file that llama.cpp would refuse (or that is truncated or corrupt).
    #[error("{path}: not a valid GGUF file (at byte {offset}): {reason}")]
    InvalidGguf {
        /// The file (or a description of the bytes).
        path: PathBuf,
        /// Byte offset where the problem was found.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A GGUF file that cannot be written as requested (it would not load in llama.cpp).
    #[error("cannot write GGUF: {reason}")]
    GgufWrite {
        /// What is wrong.
        reason: String,
    },
    /// A ggml quantization request that cannot be carried out.
    #[error("ggml: {reason}")]
    Ggml {
        /// What is wrong.
        reason: String,
    },
    /// A tokenizer file that cannot be turned into GGUF vocabulary metadata.
    #[error("{path}: {reason}")]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A tensor was asked for that the file does not contain.
    #[error("tensor `{name}` is not in the file")]
    MissingTensor {
        /// The tensor name.
        name: String,
    },
    /// An operating-system error on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file being read or written.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A problem of the checkpoint, adapter or atomic write a GGUF file is made from or with.
    #[error(transparent)]
    Format(#[from] slmc_formats::FormatError),
    /// A model configuration problem.
    #[error(transparent)]
    Config(#[from] slmc_config::ConfigError),
}

impl GgufError {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}
