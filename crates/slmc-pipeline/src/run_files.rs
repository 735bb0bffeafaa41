//! What a run directory holds, and the only things `--fresh` deletes.
//!
//! slmc writes a fixed set of entries into a run directory ([`RUN_ENTRIES`], the lock file and
//! temporary files). `--fresh` deletes exactly those, and only after [`check_deletable`] has
//! made sure that the directory is not the working directory or a parent of it and holds none
//! of the run's inputs; anything else a user put there stays.

use crate::PipelineError;
use crate::run_lock::LOCK_FILE;
use slmc_formats::fsutil;
use std::path::{Path, PathBuf};

/// The entries slmc writes at the top of a run directory (besides the lock and temporaries).
pub const RUN_ENTRIES: [&str; 8] = [
    "manifest.json",
    "metrics.jsonl",
    "baseline.json",
    "outcome.json",
    "report.html",
    "stages",
    "data",
    "artifacts",
];

/// The run files present in `root`, for messages ("manifest.json, stages/, …").
pub fn describe(root: &Path) -> String {
    let present: Vec<String> = RUN_ENTRIES
        .iter()
        .filter(|e| root.join(e).exists())
        .map(|e| if root.join(e).is_dir() { format!("{e}/") } else { e.to_string() })
        .collect();
    format!("{}: {}", root.display(), present.join(", "))
}

/// The first entry of `root` that slmc did not write, if any.
pub fn foreign_entry(root: &Path) -> Result<Option<String>, PipelineError> {
    for entry in std::fs::read_dir(root).map_err(|e| PipelineError::io(root, e))? {
        let name = entry.map_err(|e| PipelineError::io(root, e))?.file_name().to_string_lossy().into_owned();
        if name != LOCK_FILE && !fsutil::is_temporary_name(&name) && !RUN_ENTRIES.contains(&name.as_str()) {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

/// Refuses to delete run files in `root` when it is the working directory, a parent of it, or
/// holds one of `inputs` (the recipe, model, teacher, adapter, tokenizer and data files).
pub fn check_deletable(root: &Path, inputs: &[PathBuf]) -> Result<(), PipelineError> {
    let canonical = root.canonicalize().map_err(|e| PipelineError::io(root, e))?;
    let refuse = |why: String| {
        Err(PipelineError::Recipe(format!(
            "--fresh would delete the run files of {}, but {why}; refused (set `run-dir` to a directory of its own)",
            root.display()
        )))
    };
    if let Ok(cwd) = std::env::current_dir().and_then(|d| d.canonicalize())
        && cwd.starts_with(&canonical)
    {
        return refuse(if cwd == canonical {
            "it is the working directory".into()
        } else {
            format!("it holds the working directory {}", cwd.display())
        });
    }
    for input in inputs {
        if let Ok(p) = input.canonicalize()
            && p.starts_with(&canonical)
        {
            return refuse(format!("it holds the input {}", input.display()));
        }
    }
    Ok(())
}

/// Deletes the run files of `root` ([`RUN_ENTRIES`] and temporaries), leaving anything else.
pub fn delete(root: &Path) -> Result<(), PipelineError> {
    for entry in RUN_ENTRIES {
        let path = root.join(entry);
        let removed = match std::fs::symlink_metadata(&path) {
            Err(_) => continue,
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path),
            Ok(_) => std::fs::remove_file(&path),
        };
        removed.map_err(|e| PipelineError::io(&path, e))?;
    }
    Ok(())
}

/// Removes the temporary files and staging directories that killed slmc processes left anywhere
/// in the run directory (the caller holds its lock, so no live writer owns any of them).
pub fn sweep_temporaries(root: &Path) -> Result<(), PipelineError> {
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        fsutil::sweep_stale_temporaries(&dir)?;
        for entry in std::fs::read_dir(&dir).map_err(|e| PipelineError::io(&dir, e))?.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(entry.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_removes_run_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for f in ["manifest.json", "metrics.jsonl", "notes.txt"] {
            std::fs::write(root.join(f), "x").unwrap();
        }
        std::fs::create_dir_all(root.join("stages/0-eval")).unwrap();
        delete(root).unwrap();
        let left: Vec<String> =
            std::fs::read_dir(root).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(left, vec!["notes.txt".to_string()]);
        assert_eq!(foreign_entry(root).unwrap().as_deref(), Some("notes.txt"));
    }

    #[test]
    fn a_directory_holding_an_input_is_not_deletable() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("model/config.json");
        std::fs::create_dir_all(input.parent().unwrap()).unwrap();
        std::fs::write(&input, "{}").unwrap();
        let err = check_deletable(dir.path(), std::slice::from_ref(&input)).unwrap_err().to_string();
        assert!(err.contains("it holds the input"), "{err}");
        let elsewhere = tempfile::tempdir().unwrap();
        check_deletable(elsewhere.path(), &[input]).unwrap();
    }
}
