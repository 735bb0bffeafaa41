//! The run directory and its manifest.

use crate::PipelineError;
use serde::{Deserialize, Serialize};
use slmc_formats::fsutil::atomic_write;
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

impl Manifest {
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

/// An open run directory.
pub struct RunDir {
    /// Its root.
    pub root: PathBuf,
    /// Whether an earlier run with the same fingerprint was found.
    pub resumed: bool,
}

impl RunDir {
    /// Creates or reopens the run directory at `root` for `manifest`. An existing directory with
    /// a different fingerprint is refused unless `fresh`, which empties it.
    pub fn prepare(root: &Path, manifest: &Manifest, fresh: bool) -> Result<Self, PipelineError> {
        let path = root.join("manifest.json");
        let mut resumed = false;
        if path.is_file() {
            let old: Option<Manifest> =
                std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str(&t).ok());
            match old {
                _ if fresh => clear(root)?,
                Some(old) => match manifest.difference(&old) {
                    None => resumed = true,
                    Some(what) => {
                        return Err(PipelineError::FingerprintMismatch {
                            dir: root.display().to_string(),
                            what,
                        });
                    }
                },
                None => {
                    return Err(PipelineError::FingerprintMismatch {
                        dir: root.display().to_string(),
                        what: "an unreadable manifest.json".into(),
                    });
                }
            }
        } else if root.is_dir()
            && std::fs::read_dir(root).map_err(|e| PipelineError::io(root, e))?.next().is_some()
        {
            if !fresh {
                return Err(PipelineError::Recipe(format!(
                    "{} exists and is not an slmc run directory (no manifest.json); pass --fresh to use it anyway",
                    root.display()
                )));
            }
            clear(root)?;
        }
        std::fs::create_dir_all(root).map_err(|e| PipelineError::io(root, e))?;
        let text = serde_json::to_string_pretty(manifest).expect("json") + "\n";
        atomic_write(&path, text.as_bytes())?;
        Ok(Self { root: root.into(), resumed })
    }

    /// Directory of stage `index`.
    pub fn stage_dir(&self, index: usize, kind: &str) -> PathBuf {
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

fn clear(root: &Path) -> Result<(), PipelineError> {
    std::fs::remove_dir_all(root).map_err(|e| PipelineError::io(root, e))
}
