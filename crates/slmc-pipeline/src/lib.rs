//! Runs recipes: `Recipe ──prepare──▶ RunDir (manifest, data) ──stages──▶ model ──▶ exports, gates`.
//!
//! The run directory (`runs/<name>/` by default) holds `manifest.json` (recipe text and hash,
//! input file hashes, slmc version, seed, backend), `metrics.jsonl`, `data/` (tokenized
//! sequences), `stages/<i>-<kind>/` (each stage's checkpoints, output model and `done.json`),
//! `artifacts/` and `report.html`. Running the same recipe again resumes after the last completed
//! stage, from the stage's newest checkpoint; a changed recipe or input is refused unless
//! `fresh` is set, which deletes only slmc's own run files ([`run_files`]). One process at a time
//! works in a run directory ([`run_lock`]).

mod context;
pub mod data;
mod data_rows;
pub mod error;
pub mod evaluation;
pub mod events;
pub mod export;
mod exports;
pub mod fingerprint;
mod gates;
mod memory;
pub mod metrics;
pub mod options;
pub mod report;
mod resume;
pub mod run_dir;
pub mod run_files;
pub mod run_lock;
pub mod runner;
mod stage_clock;
mod stage_run;
mod stages;
pub mod state;

pub use error::PipelineError;
pub use evaluation::EvalResult;
pub use events::{Event, Observer};
pub use options::RunOptions;
pub use runner::{RunSummary, run};
pub use state::{Records, State};
