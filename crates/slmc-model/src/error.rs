//! The error type of `slmc-model`.

use std::path::PathBuf;

/// Everything that can go wrong loading, running or saving a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A weights file problem (truncated, bad header, missing tensor...).
    #[error(transparent)]
    Format(#[from] slmc_formats::FormatError),
    /// A `config.json` problem (malformed, unsupported, out of range).
    #[error(transparent)]
    Config(#[from] slmc_config::ConfigError),
    /// A GGUF problem (export, vocabulary).
    #[error(transparent)]
    Gguf(#[from] slmc_gguf::GgufError),
    /// The checkpoint does not match the architecture the config describes.
    #[error("{dir}: {reason}")]
    Weights {
        /// The model directory.
        dir: String,
        /// Which tensors are missing, unexpected or mis-shaped.
        reason: String,
    },
    /// A tokenizer that cannot be loaded or used.
    #[error("tokenizer {path}: {reason}")]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// An OS error on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Invalid input to a model function (token id out of range, empty input...).
    #[error("{0}")]
    Input(String),
}
