//! Atomic file writes: every artifact slmc produces goes through here, so a crash never leaves a
//! half-written output behind.

use crate::FormatError;
use std::io::Write;
use std::path::Path;

/// Writes a file atomically: `write` fills a temporary file in the same directory, which is
/// flushed, synced and renamed over `path` only if `write` succeeds.
pub fn atomic_write_with<F>(path: &Path, write: F) -> Result<(), FormatError>
where
    F: FnOnce(&mut std::io::BufWriter<&mut std::fs::File>) -> std::io::Result<()>,
{
    let dir = parent_dir(path);
    std::fs::create_dir_all(dir).map_err(|e| FormatError::io(dir, e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".slmc-tmp-")
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
        .prefix(".slmc-tmp-")
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
}

/// Writes the directory `out` atomically: `fill` writes its files into a staging directory beside
/// it, which is then made readable and renamed into place (an existing `out` is replaced only
/// once the new one is complete), so a crash never leaves a half-written directory at `out`.
pub fn replace_dir<T, E: From<FormatError>>(
    out: &Path,
    fill: impl FnOnce(&Path) -> Result<T, E>,
) -> Result<T, E> {
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| FormatError::io(parent, e))?;
    let name = out.file_name().and_then(|n| n.to_str()).unwrap_or("dir");
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}.partial-"))
        .tempdir_in(parent)
        .map_err(|e| FormatError::io(parent, e))?;
    let value = fill(staging.path())?;
    let staging = staging.keep();
    make_readable(&staging, true).map_err(|e| FormatError::io(&staging, e))?;
    if out.exists() {
        let old = parent.join(format!(".{name}.old-{}", std::process::id()));
        std::fs::rename(out, &old).map_err(|e| FormatError::io(out, e))?;
        std::fs::rename(&staging, out).map_err(|e| FormatError::io(out, e))?;
        std::fs::remove_dir_all(&old).map_err(|e| FormatError::io(&old, e))?;
    } else {
        std::fs::rename(&staging, out).map_err(|e| FormatError::io(out, e))?;
    }
    Ok(value)
}
