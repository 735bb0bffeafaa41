//! The error type of `slmc-data`.

use std::path::PathBuf;

/// What can go wrong reading a data source.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An OS error on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A row or file that does not have the expected content.
    #[error("{path}{}: {reason}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line (jsonl) or row (parquet), when known.
        line: Option<usize>,
        /// What is wrong.
        reason: String,
    },
    /// A file extension slmc does not read.
    #[error("{path}: unsupported data file type; expected .txt, .jsonl/.json lines or .parquet")]
    UnsupportedType {
        /// The file.
        path: PathBuf,
    },
    /// A source with no records.
    #[error("{path}: no records (the file is empty)")]
    Empty {
        /// The file.
        path: PathBuf,
    },
}
