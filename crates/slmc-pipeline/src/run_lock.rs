//! The run directory's lock: one `slmc` process at a time works in a run directory.
//!
//! The lock is an advisory, exclusive file lock (`flock` on Unix) on `.slmc-lock` in the run
//! directory, taken before anything in the directory is read or changed and held until the run
//! ends. The kernel releases it when the process exits however it exits, so a lock left by a
//! killed run never blocks the next one. The file holds the holder's process id, which a refused
//! run names.

use crate::PipelineError;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;

/// The lock file's name inside a run directory.
pub const LOCK_FILE: &str = ".slmc-lock";

/// A held run-directory lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Takes the lock of the run directory `root` (which must exist), or says which process
    /// holds it.
    pub fn acquire(root: &Path) -> Result<Self, PipelineError> {
        let path = root.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| PipelineError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = if holder.is_empty() { String::new() } else { format!(" (pid {holder})") };
                return Err(PipelineError::Locked { dir: root.display().to_string(), holder: who });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(PipelineError::io(&path, e)),
        }
        let pid = std::process::id().to_string();
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| file.write_all(pid.as_bytes()))
            .map_err(|e| PipelineError::io(&path, e))?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_with_the_holders_pid_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        let err = RunLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
        assert!(err.contains("another slmc run"), "{err}");
        drop(first);
        RunLock::acquire(dir.path()).unwrap();
    }
}
