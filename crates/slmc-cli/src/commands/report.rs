//! `slmc report RUN_DIR`: renders a run directory's `report.html` again from its files.

use std::path::PathBuf;

/// Arguments of `slmc report`.
#[derive(clap::Args)]
#[command(after_help = "The report is built from the run directory alone (manifest.json, metrics.jsonl, \
stages/*/done.json, baseline.json, outcome.json, artifacts/), so it can be rendered for a finished, \
interrupted or copied run. It is one self-contained HTML file: open it in a browser or print it.")]
pub struct Args {
    /// A run directory (`runs/<name>/`, or the recipe's run-dir).
    pub run_dir: PathBuf,
}

/// Runs the command.
pub fn run(a: Args) -> anyhow::Result<()> {
    let path = slmc_pipeline::report::render_run_dir(&a.run_dir)?;
    println!("report {}", path.display());
    Ok(())
}
