//! The error type of `slmc-formats`.

use std::path::PathBuf;

/// Everything that can go wrong reading or writing a file format.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// An unreadable or unsupported Hugging Face `config.json`.
    #[error("{file}: {reason}")]
    Config {
        /// The file (or a description of the source).
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// An operating-system error on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file being read or written.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A safetensors file whose header or layout is invalid (truncated, lying offsets, bad JSON).
    #[error("{path}: not a valid safetensors file: {reason}")]
    Safetensors {
        /// The offending file.
        path: PathBuf,
        /// What the safetensors parser reported.
        reason: String,
    },
    /// A JSON file that does not parse or does not have the expected shape.
    #[error("{path}: {reason}")]
    Json {
        /// The offending file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A directory without any safetensors weights.
    #[error(
        "{dir}: no model.safetensors or model.safetensors.index.json found (only safetensors weights are read; pickled .bin checkpoints are refused because loading them can execute code)"
    )]
    NoWeights {
        /// The directory that was searched.
        dir: PathBuf,
    },
    /// The sharded index names a tensor its shard does not hold, or a shard holds tensors the
    /// index does not list.
    #[error("{index}: {reason}")]
    InconsistentIndex {
        /// The index file.
        index: PathBuf,
        /// What disagrees.
        reason: String,
    },
    /// A tensor was asked for that the checkpoint does not contain.
    #[error("tensor `{name}` is not in the checkpoint")]
    MissingTensor {
        /// The tensor name.
        name: String,
    },
    /// A tensor is stored in an element type slmc cannot use as floating-point weights.
    #[error("tensor `{name}` is stored as {dtype}; slmc reads F32, F16 and BF16 weights")]
    UnsupportedDtype {
        /// The tensor name.
        name: String,
        /// The stored safetensors dtype.
        dtype: String,
    },
    /// The data handed to a writer is inconsistent with its declared shape and dtype.
    #[error("tensor `{name}`: {reason}")]
    BadTensor {
        /// The tensor name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// An NF4 (bitsandbytes 4-bit) quantization request or quantization state that is invalid.
    #[error("NF4: {reason}")]
    Nf4 {
        /// What is wrong.
        reason: String,
    },
    /// A record file (quantization codes, masks, solved weights, calibration windows) that is
    /// not what its kind should be.
    #[error("{path}: {reason}")]
    Record {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A model configuration problem.
    #[error(transparent)]
    ModelConfig(#[from] slmc_config::ConfigError),
}

impl FormatError {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}
