//! Content hashes of a run's inputs (sha256), for the manifest and resume checks.

use crate::PipelineError;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Hex sha256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Hex sha256 of a file, streamed.
pub fn file_sha256(path: &Path) -> Result<String, PipelineError> {
    Ok(slmc_formats::fsutil::file_sha256(path)?)
}

/// The files of a model directory that define it (config, weights, tokenizer, generation config).
pub fn model_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            p.is_file()
                && (name.ends_with(".safetensors") || name.ends_with(".json") || name == "tokenizer.model")
        })
        .collect();
    out.sort();
    out
}

/// Hashes of every input file, keyed by path.
pub fn hash_files(files: &[PathBuf]) -> Result<BTreeMap<String, String>, PipelineError> {
    files.iter().map(|p| Ok((p.display().to_string(), file_sha256(p)?))).collect()
}

/// sha256 of every file under the entries `entries` of `root` (files or directory trees), keyed
/// by path relative to `root` with `/` separators.
pub fn hash_tree(root: &Path, entries: &[&str]) -> Result<BTreeMap<String, String>, PipelineError> {
    let mut out = BTreeMap::new();
    let mut todo: Vec<PathBuf> = entries.iter().map(|e| root.join(e)).filter(|p| p.exists()).collect();
    while let Some(path) = todo.pop() {
        if path.is_dir() {
            let entries = std::fs::read_dir(&path).map_err(|e| PipelineError::io(&path, e))?;
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
