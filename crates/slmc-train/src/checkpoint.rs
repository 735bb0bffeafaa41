//! Training checkpoints: `<root>/step-000123/` holding the model (`model.safetensors`, f32, Hugging
//! Face names; for a LoRA run only the adapters, as a PEFT directory `adapter/`), the AdamW state (`optimizer.bpk`, keyed by the model's stable parameter ids) and
//! `state.json` (step, data position). Each is assembled in a `.partial` directory and renamed,
//! so a directory named `step-*` is always complete.

use crate::TrainError;
use crate::trainer::TrainModel;
use burn::optim::ModuleOptimizer;
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use slmc_formats::adapter::{read_peft, write_peft};
use slmc_formats::fsutil::atomic_write;
use slmc_formats::{Checkpoint, FloatDtype, ModelConfig, TensorToWrite, write_checkpoint};
use slmc_model::{lora, weights};

/// The checkpoint subdirectory holding the adapters of a LoRA run (PEFT's layout).
const ADAPTER_DIR: &str = "adapter";
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

/// What [`load_latest`] found: the restored model, optimizer and counters, or (no checkpoint)
/// the template model back.
pub type Restored<M> = Result<(M, ModuleOptimizer, TrainState), M>;

/// Loads the newest checkpoint into `template` (same shapes; plain device): model, optimizer
/// state and counters.
pub fn load_latest<M: TrainModel>(
    root: &Path,
    template: M,
    optim: ModuleOptimizer,
    device: &Device,
) -> Result<Restored<M>, TrainError> {
    let Some((_, dir)) = list(root).pop() else {
        return Ok(Err(template));
    };
    let config: ModelConfig = template.lm().config.clone();
    let state: TrainState =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).map_err(|e| err(&dir, e))?)
            .map_err(|e| err(&dir, e))?;
    let lm = if dir.join(ADAPTER_DIR).is_dir() {
        let adapter = read_peft(&dir.join(ADAPTER_DIR))?;
        lora::attach_trainable(template.lm().clone(), &adapter)?
    } else {
        let ckpt = Checkpoint::open_dir(&dir)?;
        weights::load(&config, &ckpt, &dir.display().to_string(), device)?.0
    };
    let model = template.with_lm(lm).load_extra(&dir)?;
    let optim = optim.load(dir.join("optimizer.bpk")).map_err(|e| err(&dir, format!("{e:?}")))?;
    Ok(Ok((model, optim, state)))
}
