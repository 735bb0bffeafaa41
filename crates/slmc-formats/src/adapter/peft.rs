//! PEFT adapter directories (`adapter_config.json` + `adapter_model.safetensors`), the form
//! `PeftModel.from_pretrained` loads (`docs/algorithms.md` §8.5).
//!
//! Tensor keys, as `save_pretrained` writes them for a `*ForCausalLM` base:
//! `base_model.model.<module>.lora_A.weight` `[r, in]`, `….lora_B.weight` `[out, r]`, DoRA's
//! `….lora_magnitude_vector` `[out]` (no `.weight`), and the tensors of `modules_to_save` under
//! `base_model.model.<parameter>` (e.g. `base_model.model.lm_head.weight`). Reading also accepts
//! keys that still carry the adapter name (`lora_A.default.weight`,
//! `lm_head.modules_to_save.default.weight`) and keys without the `base_model.model.` prefix.

use super::config::TargetModules;
use super::lora::{LoraAdapter, LoraWeights, Matrix, SavedTensor};
use super::peft_config::{config_from_json, config_to_string};
use crate::FormatError;
use crate::checkpoint::{Checkpoint, SINGLE_FILE, TensorToWrite, write_checkpoint};
use crate::fsutil::atomic_write;
use slmc_config::FloatDtype;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The configuration file of a PEFT adapter directory.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
/// The weights file of a PEFT adapter directory.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
/// The prefix PEFT puts before the base model's own parameter names.
pub const KEY_PREFIX: &str = "base_model.model.";

/// What one stored tensor is.
#[derive(Debug, PartialEq)]
enum Role {
    A,
    B,
    Magnitude,
}

const ROLE_SUFFIXES: &[(&str, Role)] = &[
    (".lora_A.weight", Role::A),
    (".lora_A.default.weight", Role::A),
    (".lora_B.weight", Role::B),
    (".lora_B.default.weight", Role::B),
    (".lora_magnitude_vector", Role::Magnitude),
    (".lora_magnitude_vector.weight", Role::Magnitude),
    (".lora_magnitude_vector.default", Role::Magnitude),
    (".lora_magnitude_vector.default.weight", Role::Magnitude),
];

/// Features whose tensors slmc refuses, found by a key fragment.
const REFUSED_KEYS: &[(&str, &str)] = &[
    (".lora_B.bias", "a trained lora_B bias (lora_bias = true)"),
    (".lora_B.default.bias", "a trained lora_B bias (lora_bias = true)"),
    (".lora_embedding_A", "LoRA on an embedding"),
    (".lora_embedding_B", "LoRA on an embedding"),
    ("trainable_tokens", "trainable token embeddings"),
];

fn bad_tensor(name: &str, reason: impl Into<String>) -> FormatError {
    FormatError::BadTensor { name: name.to_string(), reason: reason.into() }
}

#[derive(Default)]
struct Parts {
    a: Option<Matrix>,
    b: Option<Matrix>,
    magnitude: Option<Vec<f32>>,
}

fn matrix(key: &str, shape: &[usize], data: Vec<f32>, what: &str) -> Result<Matrix, FormatError> {
    match shape {
        [rows, cols] => Matrix::new(*rows, *cols, data),
        _ => Err(bad_tensor(
            key,
            format!(
                "{what} has shape {shape:?}; only Linear LoRA (2-D lora_A/lora_B) is supported, not convolution LoRA"
            ),
        )),
    }
}

/// Reads a PEFT adapter directory. Unsupported configurations (see `peft_config`) and tensors
/// (embedding or convolution LoRA, `lora_bias`, trainable tokens, anything that is neither an
/// adapter tensor nor part of `modules_to_save`) are errors naming the key.
pub fn read_peft(dir: &Path) -> Result<LoraAdapter, FormatError> {
    let config_path = dir.join(ADAPTER_CONFIG);
    let text = std::fs::read_to_string(&config_path).map_err(|e| FormatError::io(&config_path, e))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| FormatError::Json { path: config_path.clone(), reason: e.to_string() })?;
    let weights_path = dir.join(ADAPTER_WEIGHTS);
    if !weights_path.is_file() {
        let bin = dir.join("adapter_model.bin");
        let reason = if bin.is_file() {
            "only adapter_model.bin found: pickled weights are refused because loading them can execute code \
             (save with safe_serialization=True)"
        } else {
            "missing"
        };
        return Err(FormatError::Config { file: weights_path.display().to_string(), reason: reason.into() });
    }
    let file = config_path.display().to_string();
    let config = config_from_json(&json, &file)?;
    let ckpt = Checkpoint::open_files(std::slice::from_ref(&weights_path))?;

    let mut parts: BTreeMap<String, Parts> = BTreeMap::new();
    let mut others: Vec<(String, String)> = Vec::new(); // (stored key, parameter name)
    let mut dtype: Option<FloatDtype> = None;
    // A multimodal class's names (`model.language_model.…`) become the text model's.
    let mut config = config;
    if let TargetModules::Names(names) = &mut config.target_modules {
        names.iter_mut().for_each(|n| *n = super::multimodal::text_model_name(n));
    }
    config.modules_to_save.iter_mut().for_each(|n| *n = super::multimodal::text_model_name(n));
    for key in ckpt.names() {
        let name = super::multimodal::text_model_name(key.strip_prefix(KEY_PREFIX).unwrap_or(key));
        let name = name.as_str();
        if let Some((_, what)) = REFUSED_KEYS.iter().find(|(frag, _)| name.contains(frag)) {
            return Err(bad_tensor(key, format!("{what} is not supported by slmc")));
        }
        let Some((module, role)) =
            ROLE_SUFFIXES.iter().find_map(|(suffix, role)| name.strip_suffix(suffix).map(|m| (m, role)))
        else {
            others.push((key.to_string(), name.replace(".modules_to_save.default", "")));
            continue;
        };
        let (shape, stored, values) = ckpt.read_f32(key)?;
        finite(key, &values)?;
        dtype.get_or_insert(stored);
        let p = parts.entry(module.to_string()).or_default();
        match role {
            Role::A => p.a = Some(matrix(key, &shape, values, "lora_A")?),
            Role::B => p.b = Some(matrix(key, &shape, values, "lora_B")?),
            Role::Magnitude => {
                if shape.len() != 1 {
                    return Err(bad_tensor(key, format!("a DoRA magnitude must be 1-D, got {shape:?}")));
                }
                p.magnitude = Some(values);
            }
        }
    }

    let mut adapter = LoraAdapter::new(config);
    if json.get("target_modules").is_none_or(|t| t.is_null()) {
        // Hand-written configs only: PEFT always writes the resolved list.
        let mut t: Vec<String> =
            parts.keys().filter_map(|m| m.rsplit('.').next().map(str::to_string)).collect();
        t.sort();
        t.dedup();
        adapter.config.target_modules = TargetModules::Names(t);
    }
    adapter.dtype = dtype.unwrap_or(FloatDtype::F32);
    for (key, param) in others {
        let module = param.rsplit_once('.').map_or(param.as_str(), |(m, _)| m);
        if !adapter.config.is_saved_module(module) {
            return Err(bad_tensor(
                &key,
                "neither a LoRA tensor (lora_A / lora_B / lora_magnitude_vector) nor part of modules_to_save",
            ));
        }
        let (shape, _, data) = ckpt.read_f32(&key)?;
        finite(&key, &data)?;
        adapter.saved.insert(param, SavedTensor { shape, data });
    }
    for (module, p) in parts {
        if let (TargetModules::Names(_), Some(false)) =
            (&adapter.config.target_modules, adapter.config.target_modules.matches(&module))
        {
            return Err(FormatError::Config {
                file: file.clone(),
                reason: format!("the weights adapt `{module}`, which `target_modules` does not target"),
            });
        }
        let (Some(a), Some(b)) = (p.a, p.b) else {
            return Err(bad_tensor(&module, "needs both lora_A and lora_B; one of them is missing"));
        };
        let w = LoraWeights::new(&module, a, b, p.magnitude)?;
        adapter.modules.insert(module, w);
    }
    adapter.validate()?;
    Ok(adapter)
}

/// Refuses a tensor holding NaN or an infinity (a diverged training run's adapter), which would
/// otherwise be merged or exported silently.
fn finite(key: &str, values: &[f32]) -> Result<(), FormatError> {
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => Err(bad_tensor(
            key,
            format!(
                "holds {} at index {i}: the adapter is not usable (did its training diverge?)",
                values[i]
            ),
        )),
    }
}

/// The tensors of `adapter` under PEFT's keys, in its storage dtype.
fn peft_tensors(adapter: &LoraAdapter) -> Vec<TensorToWrite> {
    let dt = adapter.dtype;
    let mut out = Vec::new();
    for (module, w) in &adapter.modules {
        let key = |suffix: &str| format!("{KEY_PREFIX}{module}.{suffix}");
        out.push(TensorToWrite::from_f32(key("lora_A.weight"), vec![w.a.rows, w.a.cols], &w.a.data, dt));
        out.push(TensorToWrite::from_f32(key("lora_B.weight"), vec![w.b.rows, w.b.cols], &w.b.data, dt));
        if let Some(m) = &w.magnitude {
            out.push(TensorToWrite::from_f32(key("lora_magnitude_vector"), vec![m.len()], m, dt));
        }
    }
    for (name, t) in &adapter.saved {
        out.push(TensorToWrite::from_f32(format!("{KEY_PREFIX}{name}"), t.shape.clone(), &t.data, dt));
    }
    out
}

/// Writes `adapter` as a PEFT adapter directory `dir` (`adapter_config.json` with every key PEFT
/// 0.21.2 writes, `adapter_model.safetensors` with PEFT's keys). The directory is assembled
/// next to `dir` and renamed into place, replacing an existing one, so a failure never leaves a
/// half-written adapter. Returns the files written.
pub fn write_peft(adapter: &LoraAdapter, dir: &Path) -> Result<Vec<PathBuf>, FormatError> {
    adapter.validate()?;
    crate::fsutil::replace_dir(dir, |staging| {
        atomic_write(&staging.join(ADAPTER_CONFIG), config_to_string(&adapter.config).as_bytes())?;
        // write_checkpoint names a single file model.safetensors; PEFT's name is another.
        write_checkpoint(staging, peft_tensors(adapter), None)?;
        let (from, to) = (staging.join(SINGLE_FILE), staging.join(ADAPTER_WEIGHTS));
        std::fs::rename(&from, &to).map_err(|e| FormatError::io(&to, e))
    })?;
    Ok(vec![dir.join(ADAPTER_CONFIG), dir.join(ADAPTER_WEIGHTS)])
}
