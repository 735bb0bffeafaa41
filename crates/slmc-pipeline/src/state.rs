//! What one stage hands to the next: the model plus the exact records earlier stages made
//! (quantization codes, sparsity masks, LoRA adapters), saved and loaded once per stage directory.

use crate::PipelineError;
use crate::fingerprint::file_sha256;
use slmc_formats::fsutil::{hash_tree, remove_any};
use slmc_model::hf_dir::{SaveOptions, save};
use slmc_model::{CausalLm, HfModel};
use std::collections::BTreeMap;
use std::path::Path;

/// The exact codes of a quantize stage, in a stage directory.
pub(crate) const QUANT_RECORDS: &str = "quant.safetensors";
/// The sparsity masks of an unstructured prune stage (kept by every later stage).
pub(crate) const MASK_RECORDS: &str = "masks.safetensors";

/// The LoRA adapters the model carries (a PEFT directory; the model beside it is the base).
pub(crate) const ADAPTER_RECORDS: &str = "adapter";

/// Records the exporters consume, beside the model's dense f32 weights.
#[derive(Debug, Clone, Default)]
pub struct Records {
    /// Quantization codes, scales and zero points per module (after a quantize stage).
    pub quant: Option<slmc_quant::Records>,
    /// Which weights are pruned, per module (after an unstructured prune stage).
    pub masks: Option<slmc_prune::Masks>,
}

impl Records {
    /// Whether no stage has left records yet.
    pub fn is_empty(&self) -> bool {
        self.quant.is_none() && self.masks.is_none()
    }

    /// The masks as `(module, keep)` pairs (row-major `[out, in]`, true = not pruned), the form
    /// training and GPTQ take.
    pub fn keep_masks(&self) -> Vec<(String, Vec<bool>)> {
        self.masks
            .iter()
            .flatten()
            .map(|(name, m)| (name.clone(), m.to_pruned().into_iter().map(|p| !p).collect()))
            .collect()
    }
}

/// The pipeline's state between stages.
pub struct State {
    /// The model the stages act on (weights dense, f32; fake-quantized after a quantize stage).
    pub model: CausalLm,
    /// Exact records of earlier stages.
    pub records: Records,
}

/// What a stage directory holds of the state, beside `done.json`.
pub(crate) const STATE_ENTRIES: [&str; 4] = ["model", QUANT_RECORDS, MASK_RECORDS, ADAPTER_RECORDS];

impl State {
    /// Writes the state into a stage directory: `model/` (weights in f32, exactly what the next
    /// stage receives, so a resumed run continues bit-identically; `config.json` keeps the
    /// model's dtype; the base weights when adapters are attached) and one file per kind of
    /// record, the adapters as a PEFT directory `adapter/`. Returns the sha256 of every file
    /// written, by path relative to `sdir` (for `done.json`).
    pub(crate) fn save(
        &self,
        sdir: &Path,
        tokenizer_dir: Option<&Path>,
    ) -> Result<BTreeMap<String, String>, PipelineError> {
        let opts = SaveOptions {
            tokenizer_dir: tokenizer_dir.map(Path::to_path_buf),
            tensor_dtype: Some(slmc_config::FloatDtype::F32),
            ..Default::default()
        };
        // Records an earlier, interrupted attempt of this stage may have left (`model/` is
        // replaced atomically below).
        for entry in &STATE_ENTRIES[1..] {
            let stale = sdir.join(entry);
            if stale.exists() {
                remove_any(&stale).map_err(|e| PipelineError::io(&stale, e))?;
            }
        }
        save(&self.model, &sdir.join("model"), &opts)?;
        if let Some(q) = &self.records.quant {
            slmc_quant::save_records(q, &sdir.join(QUANT_RECORDS))?;
        }
        if let Some(m) = &self.records.masks {
            slmc_prune::save_masks(m, &sdir.join(MASK_RECORDS))?;
        }
        if let Some(adapter) = slmc_model::lora::extract(&self.model)? {
            slmc_formats::adapter::write_peft(&adapter, &sdir.join(ADAPTER_RECORDS))?;
        }
        Ok(hash_tree(sdir, &STATE_ENTRIES)?)
    }

    /// Why the files a finished stage saved in `sdir` no longer match the hashes its `done.json`
    /// lists (`None`: they all do).
    pub(crate) fn stale(
        sdir: &Path,
        outputs: &BTreeMap<String, String>,
    ) -> Result<Option<String>, PipelineError> {
        for (rel, want) in outputs {
            let path = sdir.join(rel);
            if !path.is_file() {
                return Ok(Some(format!("{} is missing", path.display())));
            }
            if &file_sha256(&path)? != want {
                return Ok(Some(format!("{} changed since the stage finished", path.display())));
            }
        }
        Ok(None)
    }

    /// The state a finished stage saved in `sdir` (checked with [`State::stale`] first).
    pub(crate) fn load(sdir: &Path, device: &burn::prelude::Device) -> Result<Self, PipelineError> {
        let mut model = HfModel::load(&sdir.join("model"), device)?.model;
        let adapter_dir = sdir.join(ADAPTER_RECORDS);
        if adapter_dir.is_dir() {
            let adapter = slmc_formats::adapter::read_peft(&adapter_dir)?;
            model = slmc_model::lora::attach(model, &adapter)?;
        }
        let quant_file = sdir.join(QUANT_RECORDS);
        let quant = if quant_file.is_file() { Some(slmc_quant::load_records(&quant_file)?) } else { None };
        let mask_file = sdir.join(MASK_RECORDS);
        let masks = if mask_file.is_file() { Some(slmc_prune::load_masks(&mask_file)?) } else { None };
        Ok(Self { model, records: Records { quant, masks } })
    }
}
