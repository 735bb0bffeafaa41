//! `metrics.jsonl`: one JSON object per line (training steps, evaluations, per-module results).
//!
//! Every line names its `stage`; lines of a stage that resumes carry their position in it:
//! `step` (training) or `block` (block-by-block stages such as quantize). A resumed stage redoes
//! everything after its resume point, so the first line a run writes for a stage supersedes the
//! lines an earlier, interrupted run wrote for that stage at or after the same position (and
//! those without a position): they are dropped from the file before the new line is appended.
//! After a resume the file therefore describes one run, whatever killed the earlier one: the
//! training engine before its first checkpoint, a quantize stage in the middle of a block, or an
//! eval stage between its line and its `done.json`.

use crate::PipelineError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One line of `metrics.jsonl`, by its `event`: what every stage writes and the report and tests
/// read. Fields a kind adds beside its fixed ones (a solver's per-module details, row statistics)
/// are kept in `details`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum MetricLine {
    /// A logged training step.
    Step {
        /// Stage position.
        stage: usize,
        /// Steps done (1-based).
        step: u64,
        /// The step's loss.
        loss: f64,
        /// Learning rate used.
        lr: f64,
        /// Gradient norm before clipping.
        grad_norm: f64,
        /// Training tokens consumed so far.
        tokens_seen: u64,
        /// Throughput since the previous logged step.
        tokens_per_s: f64,
    },
    /// A held-out evaluation: periodic during training (with `step`) or an eval stage's (with
    /// `tokens`).
    Eval {
        /// Stage position.
        stage: usize,
        /// The training step it followed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<u64>,
        /// Mean NLL per token.
        loss: f64,
        /// Perplexity.
        ppl: f64,
        /// Tokens scored.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tokens: Option<usize>,
    },
    /// A module a quantize stage solved.
    Quantize(ModuleLine),
    /// A module a prune stage solved.
    Prune(ModuleLine),
    /// A decoder block a quantize stage finished.
    QuantizeBlock(BlockLine),
    /// A decoder block a prune stage finished.
    PruneBlock(BlockLine),
    /// What a structured prune removed.
    PruneStructured {
        /// Stage position.
        stage: usize,
        /// Shapes before and after, parameter counts, dropped layers, importance method.
        #[serde(flatten)]
        details: serde_json::Map<String, Value>,
    },
    /// The instruction rows a split became (no stage: data are prepared before the stages).
    Data {
        /// `train` or `eval`.
        split: String,
        /// The rows' format.
        format: String,
        /// Row statistics.
        #[serde(flatten)]
        details: serde_json::Map<String, Value>,
    },
}

/// A module's line of a calibration walk (quantize or prune).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModuleLine {
    /// Stage position.
    pub stage: usize,
    /// Decoder block.
    pub block: usize,
    /// Hugging Face module name.
    pub module: String,
    /// `[out, in]`.
    pub shape: [usize; 2],
    /// Wall time of its solve.
    pub seconds: f64,
    /// Output error on the calibration inputs, relative.
    pub rel_error: Option<f64>,
    /// The solver's own fields (sparsity, damping, …).
    #[serde(flatten)]
    pub details: serde_json::Map<String, Value>,
}

/// A finished block's line of a calibration walk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockLine {
    /// Stage position.
    pub stage: usize,
    /// Decoder block (0-based).
    pub block: usize,
    /// Blocks in the model.
    pub blocks: usize,
    /// Wall time of the block.
    pub seconds: f64,
}

impl MetricLine {
    /// The stage the line belongs to (`None`: data preparation).
    pub fn stage(&self) -> Option<usize> {
        match self {
            Self::Step { stage, .. } | Self::Eval { stage, .. } | Self::PruneStructured { stage, .. } => {
                Some(*stage)
            }
            Self::Quantize(m) | Self::Prune(m) => Some(m.stage),
            Self::QuantizeBlock(b) | Self::PruneBlock(b) => Some(b.stage),
            Self::Data { .. } => None,
        }
    }
}

/// Appends metric lines.
pub struct MetricsLog {
    path: PathBuf,
    /// Stages this log has written a line for (their stale lines are already dropped).
    started: Mutex<BTreeSet<u64>>,
}

/// A line's stage.
fn stage_of(v: &Value) -> Option<u64> {
    v.get("stage").and_then(Value::as_u64)
}

/// A line's position within its stage: its training step or its block.
fn position(v: &Value) -> Option<u64> {
    v.get("step").or_else(|| v.get("block")).and_then(Value::as_u64)
}

impl MetricsLog {
    /// The log at `path` (created on first write).
    pub fn new(path: &Path) -> Self {
        Self { path: path.into(), started: Mutex::new(BTreeSet::new()) }
    }

    /// Appends one line (see [`MetricsLog::write`]).
    pub fn log(&self, line: &MetricLine) -> Result<(), PipelineError> {
        self.write(&serde_json::to_value(line).expect("metric lines are plain data"))
    }

    /// Appends one line. The first line written for a stage first drops the lines it supersedes
    /// (see the module documentation).
    pub fn write(&self, v: &Value) -> Result<(), PipelineError> {
        if let Some(stage) = stage_of(v) {
            let first = self.started.lock().unwrap_or_else(|e| e.into_inner()).insert(stage);
            if first {
                let from = position(v);
                self.retain(|l| {
                    stage_of(l) != Some(stage) || position(l).zip(from).is_some_and(|(p, f)| p < f)
                })?;
            }
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| PipelineError::io(&self.path, e))?;
        // One write per line, so a killed process leaves at most one partial line (dropped by
        // the next rewrite and skipped by readers).
        f.write_all(format!("{v}\n").as_bytes()).map_err(|e| PipelineError::io(&self.path, e))
    }

    /// Keeps the lines that parse and satisfy `keep`, rewriting the file atomically when that
    /// changes it.
    fn retain(&self, keep: impl Fn(&Value) -> bool) -> Result<(), PipelineError> {
        let Ok(text) = std::fs::read_to_string(&self.path) else {
            return Ok(());
        };
        let kept: String = text
            .lines()
            .filter(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| keep(&v)))
            .map(|l| format!("{l}\n"))
            .collect();
        if kept != text {
            slmc_formats::fsutil::atomic_write(&self.path, kept.as_bytes())?;
        }
        Ok(())
    }

    /// Every line that is a [`MetricLine`] (a partial line left by a killed process, or a line
    /// of a newer slmc, is skipped).
    pub fn lines(&self) -> Vec<MetricLine> {
        self.read_all().into_iter().filter_map(|v| serde_json::from_value(v).ok()).collect()
    }

    /// Every line, parsed (a partial line left by a killed process is skipped).
    pub fn read_all(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn steps(log: &MetricsLog, stage: u64) -> Vec<(String, u64)> {
        log.read_all()
            .iter()
            .filter(|v| stage_of(v) == Some(stage))
            .map(|v| (v["event"].as_str().unwrap().to_string(), position(v).unwrap_or(u64::MAX)))
            .collect()
    }

    #[test]
    fn a_resumed_stage_supersedes_the_lines_it_redoes_and_nothing_else() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("metrics.jsonl");
        // The interrupted run: an eval stage, then training steps 1-5 (eval at 4), killed mid-line.
        let killed = MetricsLog::new(&path);
        killed.write(&json!({"event": "eval", "stage": 0, "ppl": 10.0})).unwrap();
        for s in 1..=5 {
            killed.write(&json!({"event": "step", "stage": 1, "step": s})).unwrap();
            if s == 4 {
                killed.write(&json!({"event": "eval", "stage": 1, "step": s})).unwrap();
            }
        }
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"event":"step","sta"#).unwrap();

        // The resumed run restarts after the step-4 checkpoint: the lines of steps 5+ go.
        let resumed = MetricsLog::new(&path);
        resumed.write(&json!({"event": "step", "stage": 1, "step": 5})).unwrap();
        resumed.write(&json!({"event": "step", "stage": 1, "step": 6})).unwrap();
        let want: Vec<(String, u64)> = [("step", 1), ("step", 2), ("step", 3), ("step", 4), ("eval", 4)]
            .into_iter()
            .chain([("step", 5), ("step", 6)])
            .map(|(e, s)| (e.to_string(), s))
            .collect();
        assert_eq!(steps(&resumed, 1), want);
        assert_eq!(steps(&resumed, 0).len(), 1, "other stages are untouched");

        // A stage restarted from scratch (no checkpoint) supersedes all of its lines.
        let again = MetricsLog::new(&path);
        again.write(&json!({"event": "step", "stage": 1, "step": 1})).unwrap();
        assert_eq!(steps(&again, 1), vec![("step".to_string(), 1)]);
        // A stage without positions (eval) replaces its line.
        again.write(&json!({"event": "eval", "stage": 0, "ppl": 11.0})).unwrap();
        let evals: Vec<f64> = again
            .read_all()
            .iter()
            .filter(|v| stage_of(v) == Some(0))
            .map(|v| v["ppl"].as_f64().unwrap())
            .collect();
        assert_eq!(evals, vec![11.0]);
        // Quantize-like lines: resuming at block 1 keeps block 0.
        let q = MetricsLog::new(&path);
        for b in 0..2 {
            q.write(&json!({"event": "quantize", "stage": 2, "block": b})).unwrap();
        }
        let q = MetricsLog::new(&path);
        q.write(&json!({"event": "quantize", "stage": 2, "block": 1})).unwrap();
        assert_eq!(steps(&q, 2), vec![("quantize".to_string(), 0), ("quantize".to_string(), 1)]);
        assert!(
            std::fs::read_to_string(&path).unwrap().lines().all(|l| serde_json::from_str::<Value>(l).is_ok())
        );
    }
}
