//! The error type of `slmc-train`.

/// What can stop training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The loss became NaN or infinite; the last good checkpoint is kept.
    #[error(
        "loss is {value} at step {step}; training stopped (last good checkpoint: {last_checkpoint}). Lower `lr`, raise `warmup-steps` or set `clip-grad-norm`"
    )]
    NonFiniteLoss {
        /// The optimizer step (1-based) whose loss was not finite.
        step: usize,
        /// The loss value.
        value: f32,
        /// Which checkpoint survives.
        last_checkpoint: String,
    },
    /// The run was interrupted (Ctrl-C); a checkpoint was written first.
    #[error("interrupted at step {step}; a checkpoint was written, run the same command again to resume")]
    Interrupted {
        /// Last completed step.
        step: usize,
    },
    /// A checkpoint could not be written or read.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The checkpoint directory.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The data cannot feed the run.
    #[error("{0}")]
    Data(String),
    /// A model error.
    #[error(transparent)]
    Model(#[from] slmc_model::ModelError),
    /// A file-format error.
    #[error(transparent)]
    Format(#[from] slmc_formats::FormatError),
    /// A model configuration problem.
    #[error(transparent)]
    Config(#[from] slmc_config::ConfigError),
    /// A GGUF or ggml problem.
    #[error(transparent)]
    Gguf(#[from] slmc_gguf::GgufError),
}
