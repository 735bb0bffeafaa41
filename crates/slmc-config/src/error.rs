//! The error type of `slmc-config`.

use std::path::PathBuf;

/// What can be wrong with a model's configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A `config.json` (or inline config) that is malformed, unsupported or out of range.
    #[error("{file}: {reason}")]
    Config {
        /// The file (or recipe table) read.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// An operating-system error on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file being read.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A dtype name slmc does not know.
    #[error("`{0}`: unknown dtype; expected float32, float16 or bfloat16")]
    UnknownDtype(String),
}

impl ConfigError {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}
