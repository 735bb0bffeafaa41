//! A stage's wall time across the runs that worked on it.
//!
//! `clock.json` in the stage directory holds the seconds the stage has run so far, rewritten at
//! most every [`SAVE_EVERY`] while events arrive; a run resuming the stage after a kill starts its
//! clock from there, so `done.json`'s `wall_seconds` covers the interrupted runs too (to within
//! [`SAVE_EVERY`] of each kill).

use crate::PipelineError;
use crate::events::{Event, Observer};
use slmc_formats::fsutil::atomic_write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The stage clock's file in a stage directory.
pub(crate) const CLOCK_FILE: &str = "clock.json";
/// How often the clock is saved while the stage runs.
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// The running clock of one stage.
pub(crate) struct StageClock {
    path: PathBuf,
    prior: f64,
    started: Instant,
    saved: Instant,
}

impl StageClock {
    /// Starts the clock of the stage in `sdir`, from the seconds earlier runs recorded.
    pub fn start(sdir: &Path) -> Self {
        let path = sdir.join(CLOCK_FILE);
        let prior = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["seconds"].as_f64())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .unwrap_or(0.0);
        let now = Instant::now();
        Self { path, prior, started: now, saved: now }
    }

    /// Seconds the stage has run, this run and the earlier ones together.
    pub fn seconds(&self) -> f64 {
        self.prior + self.started.elapsed().as_secs_f64()
    }

    /// Saves the clock when it was last saved [`SAVE_EVERY`] ago or longer.
    fn save_if_due(&mut self) -> Result<(), PipelineError> {
        if self.saved.elapsed() < SAVE_EVERY {
            return Ok(());
        }
        self.saved = Instant::now();
        let text = serde_json::json!({ "seconds": self.seconds() }).to_string();
        Ok(atomic_write(&self.path, text.as_bytes())?)
    }
}

/// An observer that keeps a stage's clock saved while it passes every event on.
pub(crate) struct Clocked<'a> {
    /// The observer events go to.
    pub inner: &'a mut dyn Observer,
    /// The stage's clock.
    pub clock: StageClock,
}

impl Observer for Clocked<'_> {
    fn event(&mut self, e: &Event) {
        // The clock only refines a report figure: a failed save must not stop the stage.
        let _ = self.clock.save_if_due();
        self.inner.event(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restarted_clock_continues_from_the_saved_seconds() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CLOCK_FILE), r#"{"seconds": 41.5}"#).unwrap();
        let clock = StageClock::start(dir.path());
        assert!(clock.seconds() >= 41.5 && clock.seconds() < 45.0, "{}", clock.seconds());
        std::fs::write(dir.path().join(CLOCK_FILE), "garbage").unwrap();
        assert!(StageClock::start(dir.path()).seconds() < 5.0);
    }
}
