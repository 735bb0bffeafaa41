//! The error type of `slmc-prune`.

use std::path::PathBuf;

/// Everything that can go wrong pruning.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    /// A file problem below us.
    #[error(transparent)]
    Format(#[from] slmc_formats::FormatError),
    /// A model configuration problem.
    #[error(transparent)]
    Config(#[from] slmc_config::ConfigError),
    /// A GGUF or ggml problem.
    #[error(transparent)]
    Gguf(#[from] slmc_gguf::GgufError),
    /// A model problem below us.
    #[error(transparent)]
    Model(#[from] slmc_model::ModelError),
    /// A mask record or mask file that does not hold together.
    #[error("sparsity mask {name}: {reason}")]
    Mask {
        /// The module or file.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A factorisation that failed for good, or a non-finite value.
    #[error("{0}")]
    Numerical(String),
    /// Invalid settings or input (unknown module, impossible target shape…).
    #[error("{0}")]
    Input(String),
    /// Stopped on request after a finished block of the calibration walk.
    #[error("interrupted after block {block}; run again to resume")]
    Interrupted {
        /// The last finished block (0-based).
        block: usize,
    },
    /// An OS error on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl From<slmc_calib::CalibError> for PruneError {
    fn from(e: slmc_calib::CalibError) -> Self {
        match e {
            slmc_calib::CalibError::Input(m) => Self::Input(m),
            slmc_calib::CalibError::Numerical(m) => Self::Numerical(m),
            slmc_calib::CalibError::Interrupted { block } => Self::Interrupted { block },
        }
    }
}
