//! `slmc run RECIPE` (every stage) and `slmc finetune RECIPE` (only the finetune stages).

use super::recipe_args::RecipeArgs;
use crate::progress::RunProgress;
use burn::prelude::Device;
use slmc_pipeline::{RunOptions, run as run_recipe};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Arguments of the run commands.
#[derive(clap::Args)]
#[command(
    after_help = "Outputs go to runs/<name>/ (or the recipe's run-dir): manifest.json, metrics.jsonl, \
stages/<i>-<kind>/ (checkpoints, output model), artifacts/, report.html (`slmc report DIR` renders it again). Running the same recipe again \
resumes after the last completed stage, from its newest checkpoint; Ctrl-C writes a checkpoint and stops. \
One run at a time works in a run directory (a second is refused, naming the first's pid). \
Exit codes: 0 ok, 1 recipe or input error, 2 internal error, 3 a [gates] check failed."
)]
pub struct Args {
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// Start over: delete the run directory's run files (manifest.json, metrics.jsonl, stages/,
    /// data/, artifacts/, report) instead of resuming, as needed when the recipe or inputs
    /// changed. Only in a directory holding an slmc manifest.json, never the working directory,
    /// a parent of it or a directory holding an input; other files there stay.
    #[arg(long)]
    pub fresh: bool,
}

/// Exit code when a gate fails.
pub const EXIT_GATE: u8 = 3;

/// Runs the recipe (all stages, or those of `only_kind`). Returns whether every gate passed.
pub fn run(
    a: Args,
    device: &Device,
    backend: &str,
    only_kind: Option<slmc_recipe::Kind>,
) -> anyhow::Result<bool> {
    let (recipe, text) = a.recipe.load()?;
    let interrupt = Arc::new(AtomicBool::new(false));
    let flag = interrupt.clone();
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupt: finishing the current step and writing a checkpoint (Ctrl-C again to abort)");
    });
    let options = RunOptions {
        recipe_file: a.recipe.recipe.display().to_string(),
        recipe_text: text,
        sets: a.recipe.sets.clone(),
        only_kind,
        fresh: a.fresh,
        device: device.clone(),
        backend: backend.to_string(),
        interrupt: Some(&interrupt),
    };
    let mut progress = RunProgress::default();
    let summary = run_recipe(&recipe, &options, &mut |e: &slmc_pipeline::Event| progress.event(e))?;
    progress.finish();
    if let Some(b) = summary.baseline {
        println!("input model perplexity {:.3} ({} tokens)", b.ppl, b.tokens);
    }
    if let Some(f) = summary.final_eval {
        println!("final perplexity {:.3} ({} tokens)", f.ppl, f.tokens);
    }
    for (gate, ok) in &summary.gates {
        println!("gate {}: {gate}", if *ok { "pass" } else { "FAIL" });
    }
    for art in &summary.artifacts {
        println!("artifact {}", art.display());
    }
    println!("run directory {}", summary.run_dir.display());
    println!("report {}", summary.run_dir.join(slmc_pipeline::report::REPORT_FILE).display());
    Ok(summary.gates_passed())
}
