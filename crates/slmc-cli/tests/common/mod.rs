//! What the end-to-end tests share: the repository root, running the built `slmc` in a
//! directory, and its combined output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root (recipes and fixture paths are relative to it).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Runs the built `slmc` with `args` in `dir`.
pub fn slmc(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slmc"))
        .current_dir(dir)
        .args(args)
        .env("COLUMNS", "100")
        .output()
        .unwrap()
}

/// stdout and stderr, concatenated.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}
