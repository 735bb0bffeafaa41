//! How a run is started (a leaf module: the runner and the stage context both read it).

use burn::prelude::Device;
use std::sync::atomic::AtomicBool;

/// How to run.
pub struct RunOptions<'a> {
    /// The recipe file as given (for the manifest).
    pub recipe_file: String,
    /// The recipe text.
    pub recipe_text: String,
    /// `--set` overrides.
    pub sets: Vec<String>,
    /// Run only the stages of this kind (`slmc finetune`, `slmc distill`, ...).
    pub only_kind: Option<slmc_recipe::Kind>,
    /// Empty the run directory first.
    pub fresh: bool,
    /// Compute device.
    pub device: Device,
    /// Backend name for the manifest.
    pub backend: String,
    /// Set by Ctrl-C: stop after the current step with a checkpoint.
    pub interrupt: Option<&'a AtomicBool>,
}
