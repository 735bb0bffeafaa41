//! One stage of a run: its directory, context, clock, saved state and `done.json`.

use crate::PipelineError;
use crate::context::StageContext;
use crate::evaluation::EvalResult;
use crate::events::{Event, Observer};
use crate::metrics::MetricsLog;
use crate::options::RunOptions;
use crate::resume;
use crate::stage_clock::{Clocked, StageClock};
use crate::stages;
use crate::state::State;
use serde_json::Value;
use slmc_formats::fsutil::atomic_write;
use slmc_model::Tokenizer;
use slmc_recipe::{Plan, Recipe};

/// What every stage of a run shares.
pub(crate) struct StageRun<'r> {
    pub recipe: &'r Recipe,
    pub plan: &'r Plan,
    pub data: Option<&'r crate::data::Prepared>,
    pub metrics: &'r MetricsLog,
    pub options: &'r RunOptions<'r>,
}

/// A stage's perplexity, and whether the model changed (then an earlier perplexity no longer
/// describes it).
pub(crate) enum StageEval {
    /// The model changed; its perplexity, if the stage measured one.
    Changed(Option<EvalResult>),
    /// The model is the same; a perplexity the stage measured, if any.
    Same(Option<EvalResult>),
}

impl StageRun<'_> {
    /// Runs one stage into `sdir`: saves the state it leaves (when it changed) and `done.json`
    /// with the saved files' hashes and the stage's wall time across interrupted runs.
    pub(crate) fn stage(
        &self,
        stage: &slmc_recipe::Stage,
        state: State,
        sdir: &std::path::Path,
        tokenizer: Option<&Tokenizer>,
        tokenizer_dir: Option<&std::path::Path>,
        observer: &mut dyn Observer,
    ) -> Result<(State, StageEval), PipelineError> {
        let (index, kind) = (stage.index, stage.kind.kind());
        std::fs::create_dir_all(sdir).map_err(|e| PipelineError::io(sdir, e))?;
        observer.event(&Event::StageStart { index, kind, steps: stages::steps(&stage.kind) });
        let mut clocked = Clocked { inner: observer, clock: StageClock::start(sdir) };
        let mut ctx = StageContext {
            recipe: self.recipe,
            plan: self.plan,
            index,
            sdir: sdir.to_path_buf(),
            data: self.data,
            metrics: self.metrics,
            interrupt: self.options.interrupt,
            tokenizer,
            observer: &mut clocked,
        };
        let out = stages::run(&stage.kind, state, &mut ctx)?;
        let outputs = if out.changed { out.state.save(sdir, tokenizer_dir)? } else { Default::default() };
        let mut record = out.record;
        record["summary"] = Value::String(out.summary.clone());
        record["wall_seconds"] = Value::from(clocked.clock.seconds());
        record[resume::OUTPUTS_KEY] = serde_json::to_value(outputs).expect("json");
        atomic_write(&sdir.join("done.json"), (record.to_string() + "\n").as_bytes())?;
        clocked.inner.event(&Event::StageDone { index, summary: out.summary });
        let eval = if out.changed { StageEval::Changed(out.eval) } else { StageEval::Same(out.eval) };
        Ok((out.state, eval))
    }
}
