//! The error type of `slmc-calib`.

/// What can stop the calibration walk itself (solvers bring their own errors).
#[derive(Debug, thiserror::Error)]
pub enum CalibError {
    /// Invalid settings or input (unknown module, bad calibration windows…).
    #[error("{0}")]
    Input(String),
    /// A factorisation that failed for good, or a non-finite value.
    #[error("{0}")]
    Numerical(String),
    /// Stopped on request after a finished block (its records are saved).
    #[error("interrupted after block {block}; run again to resume")]
    Interrupted {
        /// The last finished block (0-based).
        block: usize,
    },
}
