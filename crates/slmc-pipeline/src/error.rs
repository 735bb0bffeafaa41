//! The error type of `slmc-pipeline`.

/// What can stop a run.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The run directory belongs to a different recipe or inputs.
    #[error(
        "{dir} was created by a different recipe or inputs ({what} changed); pass --fresh to delete its run files ({deletes}) and start over, or set `run-dir`"
    )]
    FingerprintMismatch {
        /// The run directory.
        dir: String,
        /// What differs.
        what: String,
        /// What `--fresh` would delete.
        deletes: String,
    },
    /// Another process holds the run directory's lock.
    #[error(
        "{dir} is in use by another slmc run{holder}; wait for it to finish, or give this run another `run-dir`"
    )]
    Locked {
        /// The run directory.
        dir: String,
        /// ` (pid N)` when the holder wrote its pid.
        holder: String,
    },
    /// A recipe that validates but cannot run on these inputs.
    #[error("{0}")]
    Recipe(String),
    /// A file problem.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// Data problems.
    #[error(transparent)]
    Data(#[from] slmc_data::DataError),
    /// Model problems.
    #[error(transparent)]
    Model(#[from] slmc_model::ModelError),
    /// File-format problems.
    #[error(transparent)]
    Format(#[from] slmc_formats::FormatError),
    /// A model configuration problem.
    #[error(transparent)]
    Config(#[from] slmc_config::ConfigError),
    /// A GGUF or ggml problem.
    #[error(transparent)]
    Gguf(#[from] slmc_gguf::GgufError),
    /// Training problems.
    #[error(transparent)]
    Train(#[from] slmc_train::TrainError),
    /// A directory given as a run directory that is not one.
    #[error("{0} is not an slmc run directory (no manifest.json)")]
    NotARunDir(String),
    /// A chart of the report could not be drawn.
    #[error("drawing a chart of the report failed: {0}")]
    Chart(String),
    /// Quantization problems.
    #[error(transparent)]
    Quant(#[from] slmc_quant::QuantError),
    /// Pruning problems.
    #[error(transparent)]
    Prune(#[from] slmc_prune::PruneError),
}

impl PipelineError {
    /// Wraps an I/O error with its path.
    pub fn io(path: &std::path::Path, e: impl ToString) -> Self {
        Self::Io { path: path.display().to_string(), reason: e.to_string() }
    }
}
