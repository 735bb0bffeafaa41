//! Progress events: the pipeline reports, the CLI draws.

/// Something that happened during a run.
#[derive(Debug, Clone)]
pub enum Event {
    /// A line of information.
    Info(String),
    /// A stage starts (`steps`: its length, when it has steps).
    StageStart {
        /// Stage position.
        index: usize,
        /// Stage kind.
        kind: slmc_recipe::Kind,
        /// Optimizer steps, if it trains.
        steps: Option<usize>,
    },
    /// A completed stage is skipped on resume.
    StageSkipped {
        /// Stage position.
        index: usize,
        /// Stage kind.
        kind: slmc_recipe::Kind,
    },
    /// Tokenization progress.
    Tokenizing {
        /// Which split.
        split: &'static str,
        /// Documents so far.
        docs: usize,
        /// Tokens so far.
        tokens: u64,
    },
    /// A training event of the current stage.
    Train(slmc_train::Event),
    /// Perplexity evaluation progress.
    Evaluating {
        /// Tokens scored so far.
        done: usize,
        /// Tokens to score.
        total: usize,
    },
    /// A stage finished.
    StageDone {
        /// Stage position.
        index: usize,
        /// One-line result.
        summary: String,
    },
    /// An artifact was written.
    Artifact(String),
    /// A quantize or prune stage starts a decoder block.
    CalibBlock {
        /// The stage kind.
        kind: slmc_recipe::Kind,
        /// 0-based block.
        index: usize,
        /// Blocks in the model.
        total: usize,
    },
    /// A module was quantized or pruned.
    CalibModule {
        /// Module name.
        name: String,
        /// Wall time of its solve.
        seconds: f64,
        /// Output error on the calibration inputs, relative (GPTQ, Wanda, SparseGPT).
        rel_error: Option<f64>,
        /// Fraction of its weights that are zero (pruning).
        sparsity: Option<f64>,
    },
    /// Something the user should know that does not stop the run.
    Warning(String),
}

/// Receives events.
pub trait Observer {
    /// Handles one event.
    fn event(&mut self, e: &Event);
}

impl<F: FnMut(&Event)> Observer for F {
    fn event(&mut self, e: &Event) {
        self(e)
    }
}
