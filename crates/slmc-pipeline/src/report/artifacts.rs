//! The run's exported artifacts, described from what is on disk: format, tensor types, bytes,
//! parameters.

use crate::PipelineError;
use slmc_config::ModelConfig;
use slmc_formats::Checkpoint;
use slmc_gguf::{FileType, GgufReader};
use std::collections::BTreeMap;
use std::path::Path;

/// One entry of `artifacts/`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Artifact {
    /// File or directory name.
    pub name: String,
    /// `GGUF`, `safetensors`, `GPTQ (packed)`, or `file` / `directory` for anything else.
    pub format: &'static str,
    /// What the weights are stored as (`q4_0: Q4_0 ×28, F32 ×9`, `BF16`, `4-bit g32 sym`).
    pub kind: String,
    /// Bytes of every file of the artifact.
    pub disk_bytes: u64,
    /// Bytes of the weight files: the whole `.gguf`, or a directory's `*.safetensors`.
    pub weight_bytes: u64,
    /// Parameters of the model it holds (GGUF: the tensors' values; a directory: its
    /// `config.json`), when known.
    pub params: Option<u64>,
}

impl Artifact {
    /// Bits per weight: 8 × weight-file bytes / parameters.
    pub fn bits_per_weight(&self) -> Option<f64> {
        self.params.filter(|&p| p > 0).map(|p| 8.0 * self.weight_bytes as f64 / p as f64)
    }
}

/// Describes every entry of `dir` (empty when it does not exist), sorted by name.
pub(crate) fn describe_dir(dir: &Path) -> Result<Vec<Artifact>, PipelineError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue; // a temporary name being written
        }
        let path = entry.path();
        out.push(if path.is_dir() { describe_model_dir(&path, name)? } else { describe_file(&path, name)? });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn describe_file(path: &Path, name: String) -> Result<Artifact, PipelineError> {
    let bytes = file_len(path)?;
    if !name.ends_with(".gguf") {
        return Ok(Artifact {
            name,
            format: "file",
            kind: String::new(),
            disk_bytes: bytes,
            weight_bytes: bytes,
            params: None,
        });
    }
    let reader = GgufReader::open(path)?;
    let file = reader.file();
    let mut types: BTreeMap<&str, usize> = BTreeMap::new();
    for t in &file.tensors {
        *types.entry(t.info.ggml_type.name()).or_default() += 1;
    }
    let mut types: Vec<(&str, usize)> = types.into_iter().collect();
    types.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let tensors: Vec<String> = types.iter().map(|(t, n)| format!("{t} ×{n}")).collect();
    let file_type = file
        .get("general.file_type")
        .and_then(|v| v.as_u32())
        .and_then(|v| file_type_name(v, &name))
        .map_or(String::new(), |n| format!("{n}: "));
    Ok(Artifact {
        name,
        format: "GGUF",
        kind: format!("{file_type}{}", tensors.join(", ")),
        disk_bytes: bytes,
        weight_bytes: bytes,
        params: Some(file.tensors.iter().map(|t| t.info.n_elements()).sum()),
    })
}

/// The export type with llama.cpp file type `value`; of the types sharing a value, the one the
/// file is named after.
fn file_type_name(value: u32, file_name: &str) -> Option<&'static str> {
    let candidates: Vec<&'static str> =
        FileType::all().filter(|t| t.llama_ftype() == value).map(FileType::name).collect();
    let named = candidates.iter().find(|n| file_name.ends_with(&format!("-{n}.gguf")));
    named.or(candidates.first()).copied()
}

/// Describes the model directory `dir` (safetensors or packed GPTQ; any other directory by its
/// size only).
pub(crate) fn describe_model_dir(dir: &Path, name: String) -> Result<Artifact, PipelineError> {
    let disk_bytes = walk(dir)?.iter().map(|f| file_len(f)).sum::<Result<u64, _>>()?;
    let config_path = dir.join("config.json");
    let (Ok(config), Ok(ckpt)) = (ModelConfig::from_file(&config_path), Checkpoint::open_dir(dir)) else {
        return Ok(Artifact {
            name,
            format: "directory",
            kind: String::new(),
            disk_bytes,
            weight_bytes: disk_bytes,
            params: None,
        });
    };
    let raw: serde_json::Value = std::fs::read_to_string(&config_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let quant = raw.get("quantization_config").filter(|q| q["quant_method"] == "gptq");
    let (format, kind) = match quant {
        Some(q) => {
            let group = q["group_size"].as_i64().unwrap_or(-1);
            let sym = if q["sym"].as_bool().unwrap_or(true) { "sym" } else { "asym" };
            let group = if group < 0 { "per channel".to_string() } else { format!("g{group}") };
            ("GPTQ (packed)", format!("{}-bit {group} {sym}, other tensors F16", q["bits"]))
        }
        None => {
            let dtypes: Vec<String> = ckpt.dtype_histogram().into_keys().collect();
            ("safetensors", dtypes.join(", "))
        }
    };
    let weight_bytes = ckpt.files().map(file_len).sum::<Result<u64, _>>()?;
    Ok(Artifact { name, format, kind, disk_bytes, weight_bytes, params: Some(config.num_params() as u64) })
}

/// Bytes of a file.
pub(crate) fn file_len(path: &Path) -> Result<u64, PipelineError> {
    Ok(std::fs::metadata(path).map_err(|e| PipelineError::io(path, e))?.len())
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Result<Vec<std::path::PathBuf>, PipelineError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| PipelineError::io(dir, e))?.filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path)?);
        } else {
            out.push(path);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_per_weight_is_eight_times_weight_bytes_per_parameter() {
        let a = Artifact {
            name: "m.gguf".into(),
            format: "GGUF",
            kind: String::new(),
            disk_bytes: 4_500_000,
            weight_bytes: 4_500_000,
            params: Some(8_000_000),
        };
        assert_eq!(a.bits_per_weight(), Some(4.5));
        assert_eq!(Artifact { params: None, ..a }.bits_per_weight(), None);
    }

    #[test]
    fn shared_file_type_values_resolve_by_file_name() {
        // q4_k and q4_k_s are both llama_ftype 14.
        assert_eq!(file_type_name(14, "run-q4_k_s.gguf"), Some("q4_k_s"));
        assert_eq!(file_type_name(14, "run-q4_k.gguf"), Some("q4_k"));
        assert_eq!(file_type_name(2, "anything.gguf"), Some("q4_0"));
        assert_eq!(file_type_name(999, "x.gguf"), None);
    }
}
