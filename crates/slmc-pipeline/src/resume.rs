//! Finished stages on resume: a stage whose `done.json` exists is skipped only when every file of
//! the state it saved is there with the hash `done.json` lists; otherwise it runs again (and so
//! do the stages after it, which were made from its output). Only the last skipped stage's state
//! is loaded: the earlier ones are checked, not read into a model.

use crate::PipelineError;
use crate::evaluation::{EvalResult, read_json};
use crate::events::{Event, Observer};
use crate::stage_clock::CLOCK_FILE;
use crate::state::State;
use std::collections::BTreeMap;
use std::path::Path;

/// The `done.json` key listing a stage's saved files and their sha256.
pub(crate) const OUTPUTS_KEY: &str = "outputs";

/// A finished stage's results.
pub(crate) struct Finished {
    /// Whether it saved a state (checked against its hashes); `false`: it left the state
    /// unchanged, e.g. an eval stage.
    pub saved: bool,
    /// The perplexity it measured, if any.
    pub eval: Option<EvalResult>,
}

/// The results of the finished stage in `sdir`, or `None` when it must run: it never finished,
/// or what it saved is missing or changed (its `done.json` is then removed, with a warning).
pub(crate) fn finished(
    sdir: &Path,
    index: usize,
    observer: &mut dyn Observer,
) -> Result<Option<Finished>, PipelineError> {
    let done = sdir.join("done.json");
    if !done.is_file() {
        return Ok(None);
    }
    let record = read_json(&done)?;
    let eval = EvalResult::from_json(&record);
    let outputs: Option<BTreeMap<String, String>> =
        record.get(OUTPUTS_KEY).and_then(|v| serde_json::from_value(v.clone()).ok());
    let why = match outputs {
        None => "its done.json does not list the files it saved".to_string(),
        Some(outputs) => match State::stale(sdir, &outputs)? {
            None => return Ok(Some(Finished { saved: !outputs.is_empty(), eval })),
            Some(why) => why,
        },
    };
    observer.event(&Event::Warning(format!("stage {index} runs again: {why}")));
    invalidate(sdir)?;
    Ok(None)
}

/// Marks the finished stage in `sdir` as not finished (its checkpoints stay, to resume from);
/// a stage that never finished keeps its clock.
pub(crate) fn invalidate(sdir: &Path) -> Result<(), PipelineError> {
    if !sdir.join("done.json").is_file() {
        return Ok(());
    }
    for file in ["done.json", CLOCK_FILE] {
        let path = sdir.join(file);
        if path.is_file() {
            std::fs::remove_file(&path).map_err(|e| PipelineError::io(&path, e))?;
        }
    }
    Ok(())
}
