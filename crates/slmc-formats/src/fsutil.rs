//! Atomic file writes: every artifact slmc produces goes through here, so a crash never leaves a
//! half-written output behind.
//!
//! Temporary files and staging directories carry the writer's process id in their names
//! (`.slmc-tmp-<pid>-…`, `.<name>.partial-<pid>-…`, `.<name>.old-<pid>`): those a killed process
//! left are removed by [`sweep_stale_temporaries`] once that process is gone.

use crate::FormatError;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes a file atomically: `write` fills a temporary file in the same directory, which is
/// flushed, synced and renamed over `path` only if `write` succeeds.
pub fn atomic_write_with<F>(path: &Path, write: F) -> Result<(), FormatError>
where
    F: FnOnce(&mut std::io::BufWriter<&mut std::fs::File>) -> std::io::Result<()>,
{
    let dir = parent_dir(path);
    std::fs::create_dir_all(dir).map_err(|e| FormatError::io(dir, e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(&temp_prefix())
        .tempfile_in(dir)
        .map_err(|e| FormatError::io(dir, e))?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        write(&mut w).map_err(|e| FormatError::io(path, e))?;
        w.flush().map_err(|e| FormatError::io(path, e))?;
    }
    tmp.as_file().sync_all().map_err(|e| FormatError::io(path, e))?;
    make_readable(tmp.path(), false).map_err(|e| FormatError::io(path, e))?;
    tmp.persist(path).map_err(|e| FormatError::io(path, e.error))?;
    Ok(())
}

/// Temporary files and directories are created private (0600 / 0700); artifacts should have the
/// usual permissions (0644 / 0755) once they are renamed into place.
pub fn make_readable(path: &Path, is_dir: bool) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(if is_dir { 0o755 } else { 0o644 }))?;
    }
    #[cfg(not(unix))]
    let _ = (path, is_dir);
    Ok(())
}

/// Writes `bytes` to `path` atomically.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), FormatError> {
    atomic_write_with(path, |w| w.write_all(bytes))
}

/// Creates a temporary path next to `path` for writers that need a path rather than a stream;
/// the returned guard deletes the file unless it was renamed with [`persist_path`].
pub fn temp_path_for(path: &Path) -> Result<tempfile::TempPath, FormatError> {
    let dir = parent_dir(path);
    std::fs::create_dir_all(dir).map_err(|e| FormatError::io(dir, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(&temp_prefix())
        .tempfile_in(dir)
        .map_err(|e| FormatError::io(dir, e))?;
    Ok(tmp.into_temp_path())
}

/// Renames a temporary path from [`temp_path_for`] over its destination.
pub fn persist_path(tmp: tempfile::TempPath, path: &Path) -> Result<(), FormatError> {
    make_readable(&tmp, false).map_err(|e| FormatError::io(path, e))?;
    tmp.persist(path).map_err(|e| FormatError::io(path, e.error))
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Hex sha256 of a file's bytes, streamed.
pub fn file_sha256(path: &Path) -> Result<String, FormatError> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| FormatError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| FormatError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes the directory `out` atomically: `fill` writes its files into a staging directory beside
/// it, which is then made readable and renamed into place (an existing `out`, file or directory,
/// is replaced only once the new one is complete, and put back if the rename fails), so a crash
/// never leaves a half-written directory at `out`, and a failure leaves no staging directory.
pub fn replace_dir<T, E: From<FormatError>>(
    out: &Path,
    fill: impl FnOnce(&Path) -> Result<T, E>,
) -> Result<T, E> {
    let (parent, name) = dir_parts(out)?;
    std::fs::create_dir_all(&parent).map_err(|e| FormatError::io(&parent, e))?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}.partial-{}-", std::process::id()))
        .tempdir_in(&parent)
        .map_err(|e| FormatError::io(&parent, e))?;
    let value = fill(staging.path())?;
    let staging = staging.keep();
    let installed = install_dir(&staging, out, &parent, &name);
    if installed.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    installed?;
    Ok(value)
}

/// The parent and file name of a directory to write; refuses the working directory and its
/// parents (renaming them away would pull the ground from under the process).
fn dir_parts(out: &Path) -> Result<(PathBuf, String), FormatError> {
    let refuse = |why: &str| {
        FormatError::io(out, std::io::Error::other(format!("cannot write a directory here: {why}")))
    };
    let resolved = match out.canonicalize() {
        Ok(p) => p,
        Err(_) => out.to_path_buf(),
    };
    if let Ok(cwd) = std::env::current_dir().and_then(|d| d.canonicalize())
        && cwd.starts_with(&resolved)
    {
        return Err(refuse("it is the working directory or one of its parents"));
    }
    let name = resolved.file_name().and_then(|n| n.to_str()).ok_or_else(|| refuse("no directory name"))?;
    let parent = match resolved.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((parent, name.to_string()))
}

/// Renames the complete `staging` directory to `out`, replacing what is there.
fn install_dir(staging: &Path, out: &Path, parent: &Path, name: &str) -> Result<(), FormatError> {
    make_readable(staging, true).map_err(|e| FormatError::io(staging, e))?;
    if std::fs::symlink_metadata(out).is_err() {
        return std::fs::rename(staging, out).map_err(|e| FormatError::io(out, e));
    }
    let old = parent.join(format!(".{name}.old-{}", std::process::id()));
    let _ = remove_any(&old);
    std::fs::rename(out, &old).map_err(|e| FormatError::io(out, e))?;
    if let Err(e) = std::fs::rename(staging, out) {
        let _ = std::fs::rename(&old, out);
        return Err(FormatError::io(out, e));
    }
    remove_any(&old).map_err(|e| FormatError::io(&old, e))
}

/// Removes a file, a symlink or a directory tree.
pub fn remove_any(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) => Err(e),
    }
}

/// The prefix of this process's temporary files.
fn temp_prefix() -> String {
    format!(".slmc-tmp-{}-", std::process::id())
}

/// The process id in the name of an slmc temporary file or staging directory, if it is one.
pub fn temporary_pid(name: &str) -> Option<u32> {
    let digits = |s: &str| -> Option<u32> {
        let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        s[..end].parse().ok()
    };
    if let Some(rest) = name.strip_prefix(".slmc-tmp-") {
        return digits(rest).filter(|_| rest.contains('-'));
    }
    let rest = name.strip_prefix('.')?;
    for marker in [".partial-", ".old-"] {
        if let Some(i) = rest.rfind(marker) {
            let tail = &rest[i + marker.len()..];
            let pid = digits(tail)?;
            let after = &tail[pid.to_string().len()..];
            let ok = if marker == ".old-" { after.is_empty() } else { after.starts_with('-') };
            return ok.then_some(pid);
        }
    }
    None
}

/// Whether `name` is an slmc temporary file or staging directory.
pub fn is_temporary_name(name: &str) -> bool {
    temporary_pid(name).is_some()
}

/// Whether process `pid` is running (on systems without `/proc`: assumed so).
fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") { Path::new("/proc").join(pid.to_string()).exists() } else { true }
}

/// Removes the temporary files and staging directories in `dir` (not below it) whose writer
/// has exited; returns how many were removed.
pub fn sweep_stale_temporaries(dir: &Path) -> Result<usize, FormatError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(0);
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = temporary_pid(&name) else { continue };
        if pid == std::process::id() || process_alive(pid) {
            continue;
        }
        remove_any(&entry.path()).map_err(|e| FormatError::io(entry.path(), e))?;
        removed += 1;
    }
    Ok(removed)
}

/// sha256 of every file under the entries `entries` of `root` (files or directory trees; absent
/// ones are skipped), keyed by path relative to `root` with `/` separators.
pub fn hash_tree(
    root: &Path,
    entries: &[&str],
) -> Result<std::collections::BTreeMap<String, String>, FormatError> {
    let mut out = std::collections::BTreeMap::new();
    let mut todo: Vec<PathBuf> = entries.iter().map(|e| root.join(e)).filter(|p| p.exists()).collect();
    while let Some(path) = todo.pop() {
        if path.is_dir() {
            let entries = std::fs::read_dir(&path).map_err(|e| FormatError::io(&path, e))?;
            todo.extend(entries.filter_map(Result::ok).map(|e| e.path()));
            continue;
        }
        let rel = path.strip_prefix(root).unwrap_or(&path);
        let key: Vec<String> =
            rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
        out.insert(key.join("/"), file_sha256(&path)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_leaves_the_old_file_and_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        atomic_write(&path, b"old").unwrap();
        let err = atomic_write_with(&path, |w| {
            w.write_all(b"partial")?;
            Err(std::io::Error::other("disk on fire"))
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn temporary_names_carry_the_writers_pid() {
        assert_eq!(temporary_pid(".slmc-tmp-123-aB9x"), Some(123));
        assert_eq!(temporary_pid(".model.partial-77-Xy1"), Some(77));
        assert_eq!(temporary_pid(".model.old-77"), Some(77));
        for not_ours in
            [".slmc-tmp-abc", "model.partial-7-x", ".notes.old-backup", ".x.old-7z", "config.json"]
        {
            assert_eq!(temporary_pid(not_ours), None, "{not_ours}");
        }
    }

    #[test]
    fn replacing_a_file_with_a_directory_keeps_nothing_of_the_old_and_no_staging() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::write(&out, "a file").unwrap();
        replace_dir(&out, |d| -> Result<(), FormatError> { atomic_write(&d.join("f"), b"new") }).unwrap();
        assert_eq!(std::fs::read(out.join("f")).unwrap(), b"new");
        let failed = replace_dir(&out, |_| -> Result<(), FormatError> {
            Err(FormatError::io(&out, std::io::Error::other("no")))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(out.join("f")).unwrap(), b"new", "a failed write keeps the old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no staging left");
    }

    #[test]
    fn stale_temporaries_of_dead_processes_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        // pid 4194304 is above Linux's largest pid, so no such process runs.
        let stale = dir.path().join(".slmc-tmp-4194304-abc");
        let live = dir.path().join(format!(".slmc-tmp-{}-abc", std::process::id()));
        std::fs::write(&stale, "x").unwrap();
        std::fs::write(&live, "x").unwrap();
        std::fs::create_dir(dir.path().join(".model.partial-4194304-x")).unwrap();
        assert_eq!(
            sweep_stale_temporaries(dir.path()).unwrap(),
            if cfg!(target_os = "linux") { 2 } else { 0 }
        );
        assert!(live.exists());
    }
}
