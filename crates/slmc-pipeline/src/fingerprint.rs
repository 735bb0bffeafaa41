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
