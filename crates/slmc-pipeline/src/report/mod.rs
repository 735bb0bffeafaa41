//! `report.html`: a self-contained page (inline CSS and SVG charts; no scripts or network) that
//! says whether training converged, which modules suffered, what each stage cost in quality and
//! how big each artifact is.
//!
//! It is rendered from the run directory alone, so `slmc report RUN_DIR` can redo it at any
//! time: `manifest.json`, `metrics.jsonl`, `stages/<i>-<kind>/done.json` (results and wall time),
//! `baseline.json`, `outcome.json` (gates and final perplexity, written at the end of a run) and
//! `artifacts/` (sizes and types read from disk).

mod artifacts;
mod data;
mod fmt;
mod html;
mod modules;
mod overview;
mod plots;
mod quality;
mod stats;
mod training;

use crate::PipelineError;
use crate::evaluation::EvalResult;
use data::{Gate, OUTCOME_FILE, Outcome, RunData};
use slmc_formats::fsutil::atomic_write;
use std::path::{Path, PathBuf};

/// The report's file name in a run directory.
pub const REPORT_FILE: &str = "report.html";

/// Records what only the end of a run knows (the gates' outcome, the final perplexity) in
/// `outcome.json` of the run directory `root`, for the report.
pub fn record_outcome(
    root: &Path,
    gates: &[(String, bool)],
    final_eval: Option<EvalResult>,
) -> Result<(), PipelineError> {
    let outcome = Outcome {
        gates: gates.iter().map(|(gate, passed)| Gate { gate: gate.clone(), passed: *passed }).collect(),
        final_eval,
    };
    let text = serde_json::to_string_pretty(&outcome).expect("json") + "\n";
    Ok(atomic_write(&root.join(OUTCOME_FILE), text.as_bytes())?)
}

/// Renders the report of the run directory `root` to `root/report.html` and returns that path.
pub fn render_run_dir(root: &Path) -> Result<PathBuf, PipelineError> {
    let run = RunData::load(root)?;
    let html = render(&run)?;
    let path = root.join(REPORT_FILE);
    atomic_write(&path, html.as_bytes())?;
    Ok(path)
}

fn render(run: &RunData) -> Result<String, PipelineError> {
    let sections = vec![
        overview::header(run),
        quality::section(run)?,
        overview::gates(run),
        training::section(run)?,
        modules::section(run)?,
        overview::stages(run),
        overview::manifest(run),
    ];
    Ok(html::page(&format!("slmc run {}", run.name), &sections))
}
