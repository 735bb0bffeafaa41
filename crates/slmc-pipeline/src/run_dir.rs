//! The run directory and its manifest.

use crate::PipelineError;
use crate::run_files;
use crate::run_lock::RunLock;
use serde::{Deserialize, Serialize};
use slmc_formats::fsutil::atomic_write;
use slmc_recipe::Kind;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What a run was made from; a run directory is resumed only by a run with the same fingerprint
/// (recipe hash and input hashes).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// slmc version.
    pub slmc_version: String,
    /// The recipe file as given.
    pub recipe_file: String,
    /// The recipe text.
    pub recipe_text: String,
    /// `--set` overrides.
    pub sets: Vec<String>,
    /// Stage kinds run (`all`, or one kind for `slmc <kind>`).
    pub stages: String,
    /// sha256 of the recipe text, the overrides and the stage selection.
    pub recipe_hash: String,
    /// sha256 of every input file.
    pub inputs: BTreeMap<String, String>,
    /// The recipe's seed.
    pub seed: u64,
    /// The compute backend.
    pub backend: String,
}

/// The manifest's `stages` of a run of every stage.
pub const ALL_STAGES: &str = "all";

impl Manifest {
    /// The `stages` value of a run of the stages of `only` (every stage when `None`).
    pub fn selection(only: Option<Kind>) -> String {
        only.map_or(ALL_STAGES, Kind::name).to_string()
    }

    /// Whether a run with this manifest runs stages of `kind`.
    pub fn selects(&self, kind: Kind) -> bool {
        self.stages == ALL_STAGES || self.stages == kind.name()
    }

    /// What differs from `other`, if the runs are not the same.
    pub fn difference(&self, other: &Manifest) -> Option<String> {
        if self.recipe_hash != other.recipe_hash {
            return Some("the recipe or its --set overrides".into());
        }
        for (path, hash) in &self.inputs {
            if other.inputs.get(path) != Some(hash) {
                return Some(format!("input {path}"));
            }
        }
        if let Some(extra) = other.inputs.keys().find(|k| !self.inputs.contains_key(*k)) {
            return Some(format!("input {extra}"));
        }
        None
    }
}

/// An open run directory, locked for this process until dropped.
pub struct RunDir {
    /// Its root.
    pub root: PathBuf,
    /// Whether an earlier run with the same fingerprint was found.
    pub resumed: bool,
    _lock: RunLock,
}

impl RunDir {
    /// Creates or reopens the run directory at `root` for `manifest`, holding its lock (a second
    /// run into the same directory is refused). A run directory with a different fingerprint is
    /// refused unless `fresh`, which deletes its run files ([`run_files`]) — only in a directory
    /// holding an slmc `manifest.json`, and never in the working directory, a parent of it, or a
    /// directory holding one of `inputs`. A directory with other files and no manifest is never
    /// used.
    pub fn prepare(
        root: &Path,
        manifest: &Manifest,
        fresh: bool,
        inputs: &[PathBuf],
    ) -> Result<Self, PipelineError> {
        // Refused before the lock file is created in it.
        not_foreign(root)?;
        std::fs::create_dir_all(root).map_err(|e| PipelineError::io(root, e))?;
        let lock = RunLock::acquire(root)?;
        run_files::sweep_temporaries(root)?;
        let path = root.join("manifest.json");
        let mut resumed = false;
        if path.is_file() {
            let old: Option<Manifest> =
                std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str(&t).ok());
            let Some(old) = old else {
                return Err(PipelineError::Recipe(format!(
                    "{} is unreadable, so slmc neither resumes nor deletes {}; move it away or set `run-dir`",
                    path.display(),
                    root.display()
                )));
            };
            match manifest.difference(&old) {
                _ if fresh => {
                    run_files::check_deletable(root, inputs)?;
                    run_files::delete(root)?;
                }
                None => resumed = true,
                Some(what) => {
                    return Err(PipelineError::FingerprintMismatch {
                        dir: root.display().to_string(),
                        what,
                        deletes: run_files::describe(root),
                    });
                }
            }
        } else {
            not_foreign(root)?;
        }
        let text = serde_json::to_string_pretty(manifest).expect("json") + "\n";
        atomic_write(&path, text.as_bytes())?;
        Ok(Self { root: root.into(), resumed, _lock: lock })
    }

    /// Directory of stage `index`.
    pub fn stage_dir(&self, index: usize, kind: Kind) -> PathBuf {
        self.root.join("stages").join(format!("{index}-{kind}"))
    }

    /// Tokenized data.
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// Exported artifacts.
    pub fn artifacts_dir(&self) -> PathBuf {
        self.root.join("artifacts")
    }

    /// `metrics.jsonl`.
    pub fn metrics_path(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }
}

/// Refuses a directory that holds files slmc did not write and no `manifest.json`.
fn not_foreign(root: &Path) -> Result<(), PipelineError> {
    if !root.is_dir() || root.join("manifest.json").is_file() {
        return Ok(());
    }
    match run_files::foreign_entry(root)? {
        None => Ok(()),
        Some(foreign) => Err(PipelineError::Recipe(format!(
            "{} holds files (e.g. {foreign}) but no manifest.json, so it is not an slmc run directory: \
             slmc neither writes into it nor deletes anything there (not even with --fresh); \
             set `run-dir` to a new or empty directory",
            root.display()
        ))),
    }
}
