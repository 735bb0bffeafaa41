//! `metrics.jsonl`: one JSON object per line (training steps, evaluations, stage results).

use crate::PipelineError;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Appends metric lines.
pub struct MetricsLog {
    path: PathBuf,
}

impl MetricsLog {
    /// The log at `path` (created on first write).
    pub fn new(path: &Path) -> Self {
        Self { path: path.into() }
    }

    /// Appends one line.
    pub fn write(&self, v: &Value) -> Result<(), PipelineError> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| PipelineError::io(&self.path, e))?;
        writeln!(f, "{v}").map_err(|e| PipelineError::io(&self.path, e))
    }

    /// Drops the lines of `stage` logged after `step` (they are redone when a stage resumes from
    /// a checkpoint), rewriting the file atomically.
    pub fn truncate_stage_after(&self, stage: usize, step: usize) -> Result<(), PipelineError> {
        let Ok(text) = std::fs::read_to_string(&self.path) else {
            return Ok(());
        };
        let kept: String = text
            .lines()
            .filter(|l| {
                let v: Value = serde_json::from_str(l).unwrap_or(Value::Null);
                let same_stage = v.get("stage").and_then(Value::as_u64) == Some(stage as u64);
                let later = v.get("step").and_then(Value::as_u64).is_some_and(|s| s as usize > step);
                !(same_stage && later)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        slmc_formats::fsutil::atomic_write(&self.path, kept.as_bytes())?;
        Ok(())
    }

    /// Every line, parsed.
    pub fn read_all(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}
