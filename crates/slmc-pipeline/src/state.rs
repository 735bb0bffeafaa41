//! What one stage hands to the next: the model plus the exact records earlier stages made
//! (quantization codes), saved and loaded once per stage directory.

use crate::PipelineError;
use slmc_model::hf_dir::{SaveOptions, save};
use slmc_model::{CausalLm, HfModel};
use std::path::Path;

/// The exact codes of a quantize stage, in a stage directory.
pub(crate) const QUANT_RECORDS: &str = "quant.safetensors";

/// Records the exporters consume, beside the model's dense f32 weights.
#[derive(Debug, Clone, Default)]
pub struct Records {
    /// Quantization codes, scales and zero points per module (after a quantize stage).
    pub quant: Option<slmc_quant::Records>,
}

impl Records {
    /// Whether no stage has left records yet.
    pub fn is_empty(&self) -> bool {
        self.quant.is_none()
    }
}

/// The pipeline's state between stages.
pub struct State {
    /// The model the stages act on (weights dense, f32; fake-quantized after a quantize stage).
    pub model: CausalLm,
    /// Exact records of earlier stages.
    pub records: Records,
}

impl State {
    /// Writes the state into a stage directory: `model/` (in f32 when records exist, since
    /// fake-quantized values are not exact in 16-bit floats; else in the model's dtype) and one
    /// file per kind of record.
    pub(crate) fn save(&self, sdir: &Path, tokenizer_dir: Option<&Path>) -> Result<(), PipelineError> {
        let dtype = (!self.records.is_empty()).then_some(slmc_formats::FloatDtype::F32);
        let opts =
            SaveOptions { tokenizer_dir: tokenizer_dir.map(Path::to_path_buf), dtype, ..Default::default() };
        save(&self.model, &sdir.join("model"), &opts)?;
        if let Some(q) = &self.records.quant {
            slmc_quant::save_records(q, &sdir.join(QUANT_RECORDS))?;
        }
        Ok(())
    }

    /// The state a finished stage saved, if it saved one (an eval stage does not).
    pub(crate) fn load(sdir: &Path, device: &burn::prelude::Device) -> Result<Option<Self>, PipelineError> {
        if !sdir.join("model").join("config.json").is_file() {
            return Ok(None);
        }
        let model = HfModel::load(&sdir.join("model"), device)?.model;
        let quant_file = sdir.join(QUANT_RECORDS);
        let quant = if quant_file.is_file() { Some(slmc_quant::load_records(&quant_file)?) } else { None };
        Ok(Some(Self { model, records: Records { quant } }))
    }
}
