//! The facts a report shows, read from the run directory alone: `manifest.json`,
//! `metrics.jsonl`, `stages/<i>-<kind>/done.json`, `baseline.json`, `outcome.json` and
//! `artifacts/`.

use super::artifacts::{self, Artifact};
use crate::PipelineError;
pub(crate) use crate::evaluation::EvalResult;
use crate::metrics::{MetricLine, MetricsLog};
use crate::run_dir::Manifest;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use slmc_recipe::Kind;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `outcome.json`: what only the end of a run knows.
pub(crate) const OUTCOME_FILE: &str = "outcome.json";

/// A gate and whether it passed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Gate {
    /// What was checked, with the numbers.
    pub gate: String,
    /// Whether it passed.
    pub passed: bool,
}

/// `outcome.json`, written when a run reaches its end (after the exports).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Outcome {
    /// The recipe's gates.
    pub gates: Vec<Gate>,
    /// Perplexity of the final model, when measured (by an eval stage or for the gates).
    pub final_eval: Option<EvalResult>,
}

/// One stage of the recipe: planned, started or finished.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StageInfo {
    /// Position in the recipe.
    pub index: usize,
    /// Stage kind.
    pub kind: Kind,
    /// `done.json` of a finished stage.
    pub done: Option<Value>,
    /// Whether the stage saved a model, i.e. changed the model the next stages see.
    pub changed_model: bool,
}

impl StageInfo {
    /// The stage's one-line result.
    pub fn summary(&self) -> Option<&str> {
        self.done.as_ref()?.get("summary")?.as_str()
    }

    /// Wall time of the run that finished the stage (from its start or resume), in seconds.
    pub fn wall_seconds(&self) -> Option<f64> {
        self.done.as_ref()?.get("wall_seconds")?.as_f64()
    }

    /// The perplexity an eval stage measured.
    pub fn eval(&self) -> Option<EvalResult> {
        if self.kind != Kind::Eval {
            return None;
        }
        EvalResult::from_json(self.done.as_ref()?)
    }

    /// A label such as `stage 1 (distill)`.
    pub fn label(&self) -> String {
        format!("stage {} ({})", self.index, self.kind)
    }
}

/// Everything in a run directory the report shows.
#[derive(Debug, Clone)]
pub(crate) struct RunData {
    /// The run directory.
    pub root: PathBuf,
    /// The recipe's name.
    pub name: String,
    /// `manifest.json`.
    pub manifest: Manifest,
    /// Every stage the run selects, in order.
    pub stages: Vec<StageInfo>,
    /// `metrics.jsonl`, parsed.
    pub metrics: Vec<MetricLine>,
    /// `baseline.json`: the input model's perplexity, when a gate needed it.
    pub baseline: Option<EvalResult>,
    /// `outcome.json`, once the run reached its end.
    pub outcome: Option<Outcome>,
    /// `artifacts/`, described from disk.
    pub artifacts: Vec<Artifact>,
}

impl RunData {
    /// Reads the run directory at `root`.
    pub fn load(root: &Path) -> Result<Self, PipelineError> {
        let manifest_path = root.join("manifest.json");
        if !manifest_path.is_file() {
            return Err(PipelineError::NotARunDir(root.display().to_string()));
        }
        let manifest: Manifest = read_json(&manifest_path)?
            .and_then(|v| serde_json::from_value(v).ok())
            .ok_or_else(|| PipelineError::io(&manifest_path, "not an slmc manifest"))?;
        let recipe = slmc_recipe::load_str(&manifest.recipe_text, &manifest.recipe_file, &manifest.sets).ok();
        let name = match &recipe {
            Some(r) => r.name.clone(),
            None => root.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        };
        let mut stages: BTreeMap<usize, StageInfo> = BTreeMap::new();
        for s in recipe.iter().flat_map(|r| &r.stages) {
            if manifest.selects(s.kind.kind()) {
                stages.insert(s.index, stage(s.index, s.kind.kind()));
            }
        }
        let stages_dir = root.join("stages");
        for entry in std::fs::read_dir(&stages_dir).into_iter().flatten().filter_map(Result::ok) {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            let Some((index, kind)) = file_name.split_once('-') else { continue };
            let (Ok(index), Some(kind)) = (index.parse::<usize>(), Kind::from_name(kind)) else { continue };
            let dir = entry.path();
            let info = stages.entry(index).or_insert_with(|| stage(index, kind));
            info.done = read_json(&dir.join("done.json"))?;
            info.changed_model = dir.join("model").join("config.json").is_file();
        }
        let outcome = match read_json(&root.join(OUTCOME_FILE))? {
            Some(v) => {
                Some(serde_json::from_value(v).map_err(|e| PipelineError::io(&root.join(OUTCOME_FILE), e))?)
            }
            None => None,
        };
        Ok(Self {
            root: root.to_path_buf(),
            name,
            stages: stages.into_values().collect(),
            metrics: MetricsLog::new(&root.join("metrics.jsonl")).lines(),
            baseline: read_json(&root.join("baseline.json"))?.as_ref().and_then(EvalResult::from_json),
            outcome,
            artifacts: artifacts::describe_dir(&root.join("artifacts"))?,
            manifest,
        })
    }

    /// Whether the run reached its end (gates checked, artifacts written).
    pub fn finished(&self) -> bool {
        self.outcome.is_some()
    }

    /// The stage whose output stage `index` received: the last earlier stage that changed the
    /// model (`None`: the input model).
    pub fn model_before(&self, index: usize) -> Option<&StageInfo> {
        self.stages.iter().rev().find(|s| s.index < index && s.changed_model)
    }

    /// The metric lines of stage `index`.
    pub fn stage_metrics(&self, index: usize) -> impl Iterator<Item = &MetricLine> {
        self.metrics.iter().filter(move |l| l.stage() == Some(index))
    }
}

fn stage(index: usize, kind: Kind) -> StageInfo {
    StageInfo { index, kind, done: None, changed_model: false }
}

/// A JSON file, or `None` when it does not exist.
fn read_json(path: &Path) -> Result<Option<Value>, PipelineError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| PipelineError::io(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PipelineError::io(path, e)),
    }
}

/// A run with `stages` (index, kind, done.json, changed the model) and metric lines, for tests.
#[cfg(test)]
pub(crate) fn test_run(stages: Vec<(usize, &str, Option<Value>, bool)>, metrics: Vec<Value>) -> RunData {
    RunData {
        root: PathBuf::from("runs/t"),
        name: "t".into(),
        manifest: Manifest {
            slmc_version: "0.1.0".into(),
            recipe_file: "t.toml".into(),
            recipe_text: String::new(),
            sets: Vec::new(),
            stages: crate::run_dir::ALL_STAGES.into(),
            recipe_hash: String::new(),
            inputs: Default::default(),
            seed: 0,
            backend: "flex".into(),
        },
        stages: stages
            .into_iter()
            .map(|(index, kind, done, changed_model)| StageInfo {
                index,
                kind: Kind::from_name(kind).expect("a stage kind"),
                done,
                changed_model,
            })
            .collect(),
        metrics: metrics.into_iter().map(|v| serde_json::from_value(v).expect("a metric line")).collect(),
        baseline: None,
        outcome: None,
        artifacts: Vec::new(),
    }
}
