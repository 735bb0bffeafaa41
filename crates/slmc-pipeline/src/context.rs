//! What every stage receives from the runner.

use crate::PipelineError;
use crate::data::Prepared;
use crate::events::Observer;
use crate::metrics::MetricsLog;
use slmc_data::Sequences;
use slmc_model::Tokenizer;
use slmc_recipe::{Plan, Recipe};
use std::path::PathBuf;

/// The run around one stage: recipe and plan, the stage's position and directory, the prepared
/// data, `metrics.jsonl`, the interrupt flag and the observer that receives progress.
pub(crate) struct StageContext<'a> {
    /// The recipe.
    pub recipe: &'a Recipe,
    /// The recipe bound to the model (selectors resolved).
    pub plan: &'a Plan,
    /// Stage position (0-based).
    pub index: usize,
    /// The stage's directory (`stages/<i>-<kind>/`, created).
    pub sdir: PathBuf,
    /// Tokenized data, when the recipe has `[data]`.
    pub data: Option<&'a Prepared>,
    /// `metrics.jsonl`.
    pub metrics: &'a MetricsLog,
    /// Set by Ctrl-C: stop after the current step (or block) with a checkpoint.
    pub interrupt: Option<&'a std::sync::atomic::AtomicBool>,
    /// The model's tokenizer.
    pub tokenizer: Option<&'a Tokenizer>,
    /// Receives progress events.
    pub observer: &'a mut dyn Observer,
}

impl<'a> StageContext<'a> {
    /// The recipe's seed.
    pub fn seed(&self) -> u64 {
        self.recipe.seed
    }

    /// The prepared data (validation guarantees it for the stage kinds that need it).
    pub fn data(&self) -> Result<&'a Prepared, PipelineError> {
        self.data.ok_or_else(|| PipelineError::Recipe(format!("stage {} needs [data]", self.index)))
    }

    /// The training sequences.
    pub fn train(&self, what: &str) -> Result<&'a Sequences, PipelineError> {
        self.data()?.train.as_ref().ok_or_else(|| PipelineError::Recipe(format!("{what} needs [data] train")))
    }

    /// The modules the plan bound to this stage's `targets` / `ignore`.
    pub fn modules(&self) -> Vec<String> {
        self.plan
            .stage_modules
            .iter()
            .find(|(i, _)| *i == self.index)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}
