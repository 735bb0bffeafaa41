//! Training checkpoints: `<root>/step-000123/` holding the model (`model.safetensors`, f32, Hugging
//! Face names; for a LoRA run only the adapters, as a PEFT directory `adapter/`), the AdamW state (`optimizer.bpk`, keyed by the model's stable parameter ids) and
//! `state.json` (step, data position), and `checksums.json` (the sha256 of every other file).
//! Each is assembled in a `.partial` directory and renamed, so a directory named `step-*` is
//! always complete; one whose files no longer match their checksums (truncated, flipped bytes)
//! is passed over for the previous checkpoint.

use crate::TrainError;
use crate::trainer::TrainModel;
use burn::optim::ModuleOptimizer;
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use slmc_config::{FloatDtype, ModelConfig};
use slmc_formats::adapter::{read_peft, write_peft};
use slmc_formats::fsutil::atomic_write;
use slmc_formats::{Checkpoint, TensorToWrite, write_checkpoint};
use slmc_model::{lora, weights};

/// The checkpoint subdirectory holding the adapters of a LoRA run (PEFT's layout).
const ADAPTER_DIR: &str = "adapter";
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Counters saved with a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainState {
    /// Optimizer steps completed.
    pub step: usize,
    /// Training tokens consumed.
    pub tokens_seen: u64,
    /// Sequences drawn from the data order so far (the data position).
    pub sequences_drawn: u64,
    /// Seed of the data order.
    pub seed: u64,
}

fn err(path: &Path, reason: impl ToString) -> TrainError {
    TrainError::Checkpoint { path: path.display().to_string(), reason: reason.to_string() }
}

/// Writes a checkpoint and deletes older ones beyond the newest `keep`.
pub fn save<M: TrainModel>(
    root: &Path,
    model: &M,
    optim: &ModuleOptimizer,
    state: &TrainState,
    keep: usize,
) -> Result<PathBuf, TrainError> {
    let final_dir = root.join(format!("step-{:06}", state.step));
    let partial = root.join(format!(".step-{:06}.partial", state.step));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(|e| err(&partial, e))?;
    }
    std::fs::create_dir_all(&partial).map_err(|e| err(&partial, e))?;
    // With adapters only they train: the checkpoint holds them (a PEFT directory), not the
    // frozen base the stage started from.
    match lora::extract(model.lm())? {
        Some(adapter) => {
            write_peft(&adapter, &partial.join(ADAPTER_DIR))?;
        }
        None => {
            let tensors = weights::export(model.lm())
                .into_iter()
                .map(|t| TensorToWrite::from_f32(t.name, t.shape, &t.values, FloatDtype::F32))
                .collect();
            write_checkpoint(&partial, tensors, None)?;
        }
    }
    model.save_extra(&partial)?;
    optim.save(partial.join("optimizer.bpk")).map_err(|e| err(&partial, format!("{e:?}")))?;
    let json = serde_json::to_string_pretty(state).expect("json");
    atomic_write(&partial.join("state.json"), json.as_bytes())?;
    let sums = serde_json::to_string_pretty(&checksums(&partial)?).expect("json");
    atomic_write(&partial.join(CHECKSUMS), sums.as_bytes())?;
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(|e| err(&final_dir, e))?;
    }
    std::fs::rename(&partial, &final_dir).map_err(|e| err(&final_dir, e))?;
    let mut all = list(root);
    while all.len() > keep.max(1) {
        let (_, old) = all.remove(0);
        std::fs::remove_dir_all(&old).map_err(|e| err(&old, e))?;
    }
    Ok(final_dir)
}

/// Complete checkpoints under `root`, oldest first.
pub fn list(root: &Path) -> Vec<(usize, PathBuf)> {
    let mut out: Vec<(usize, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let step = name.strip_prefix("step-")?.parse().ok()?;
            e.path().join("state.json").is_file().then_some((step, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// The checksum file of a checkpoint directory.
const CHECKSUMS: &str = "checksums.json";

/// sha256 of every file under `dir` but the checksum file, by relative path.
fn checksums(dir: &Path) -> Result<BTreeMap<String, String>, TrainError> {
    let entries: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| err(dir, e))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != CHECKSUMS)
        .collect();
    let entries: Vec<&str> = entries.iter().map(String::as_str).collect();
    Ok(slmc_formats::fsutil::hash_tree(dir, &entries)?)
}

/// Why the checkpoint `dir` cannot be trusted, if it cannot: a file missing, changed or added
/// since it was written. (Checkpoints written before checksums existed are trusted.)
fn damage(dir: &Path) -> Result<Option<String>, TrainError> {
    let Ok(text) = std::fs::read_to_string(dir.join(CHECKSUMS)) else {
        return Ok(None);
    };
    let Ok(want) = serde_json::from_str::<BTreeMap<String, String>>(&text) else {
        return Ok(Some(format!("its {CHECKSUMS} is unreadable")));
    };
    let have = checksums(dir)?;
    for (file, sum) in &want {
        match have.get(file) {
            None => return Ok(Some(format!("{file} is missing"))),
            Some(h) if h != sum => return Ok(Some(format!("{file} does not match its checksum"))),
            Some(_) => {}
        }
    }
    Ok(have.keys().find(|f| !want.contains_key(*f)).map(|f| format!("{f} was not part of it")))
}

/// What [`load_latest`] found: the restored model, optimizer and counters, or (no checkpoint)
/// the template model back.
pub type Restored<M> = Result<(M, ModuleOptimizer, TrainState), M>;

/// Loads the newest intact checkpoint into `template` (same shapes; plain device): model,
/// optimizer state and counters. A damaged checkpoint (see [`damage`]) is reported to
/// `rejected` with the reason and passed over for the one before it.
pub fn load_latest<M: TrainModel>(
    root: &Path,
    template: M,
    optim: ModuleOptimizer,
    device: &Device,
    rejected: &mut dyn FnMut(&Path, &str),
) -> Result<Restored<M>, TrainError> {
    for (_, dir) in list(root).into_iter().rev() {
        match damage(&dir)? {
            Some(why) => rejected(&dir, &why),
            None => return load_dir(&dir, template, optim, device).map(Ok),
        }
    }
    Ok(Err(template))
}

/// Loads the checkpoint `dir`.
fn load_dir<M: TrainModel>(
    dir: &Path,
    template: M,
    optim: ModuleOptimizer,
    device: &Device,
) -> Result<(M, ModuleOptimizer, TrainState), TrainError> {
    let config: ModelConfig = template.lm().config.clone();
    let state: TrainState =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).map_err(|e| err(dir, e))?)
            .map_err(|e| err(dir, e))?;
    let lm = if dir.join(ADAPTER_DIR).is_dir() {
        let adapter = read_peft(&dir.join(ADAPTER_DIR))?;
        lora::attach_trainable(template.lm().clone(), &adapter)?
    } else {
        let ckpt = Checkpoint::open_dir(dir)?;
        weights::load(&config, &ckpt, &dir.display().to_string(), device)?.0
    };
    let model = template.with_lm(lm).load_extra(dir)?;
    let optim = optim.load(dir.join("optimizer.bpk")).map_err(|e| err(dir, format!("{e:?}")))?;
    Ok((model, optim, state))
}
