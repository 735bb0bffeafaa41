//! The packed GPTQ checkpoint directory (docs/algorithms.md §4): every quantized linear as
//! `qweight`/`qzeros`/`scales`/`g_idx`, everything else f16, `quantization_config` in
//! `config.json` and the same dict in `quantize_config.json`.

use crate::QuantError;
use crate::pack::{pack, quantization_config};
use crate::record::Records;
use slmc_config::FloatDtype;
use slmc_model::CausalLm;
use slmc_model::hf_dir::{Overlay, SaveOptions, save_with};
use std::path::{Path, PathBuf};

/// How the records were made (written to `quantization_config`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GptqSettings {
    /// Act-order (`desc_act`; groups are static, so `g_idx` stays `c / group_size`).
    pub act_order: bool,
    /// Dampening fraction.
    pub damp: f64,
    /// True-sequential quantization.
    pub true_sequential: bool,
}

/// Writes `model` with `records` packed, atomically (staged next to `out`). Every decoder
/// linear module must be quantized on one grid: GPTQ loaders replace all of them.
pub fn save_gptq(
    model: &CausalLm,
    records: &Records,
    settings: GptqSettings,
    tokenizer_dir: Option<PathBuf>,
    out: &Path,
) -> Result<Vec<PathBuf>, QuantError> {
    let missing: Vec<String> =
        model.config.linear_modules().into_iter().filter(|m| !records.contains_key(m)).collect();
    if let Some(first) = missing.first() {
        return Err(QuantError::Input(format!(
            "the gptq export needs every decoder linear module quantized (GPTQ loaders replace them all); {} are not, e.g. {first}",
            missing.len()
        )));
    }
    let first =
        records.values().next().ok_or_else(|| QuantError::Input("no quantized modules to export".into()))?;
    if let Some((name, _)) = records.iter().find(|(_, r)| r.grid != first.grid) {
        return Err(QuantError::Input(format!(
            "{name} is on a different grid; a GPTQ checkpoint has one quantization_config"
        )));
    }
    let mut overlay = Overlay::default();
    for (name, rec) in records {
        overlay.replace.insert(format!("{name}.weight"), pack(name, rec)?);
    }
    let qc = quantization_config(first, settings.act_order, settings.damp, settings.true_sequential);
    overlay.files.push((
        "quantize_config.json".into(),
        (serde_json::to_string_pretty(&qc).expect("json") + "\n").into_bytes(),
    ));
    overlay.config.insert("quantization_config".into(), qc);
    let options = SaveOptions { dtype: Some(FloatDtype::F16), tokenizer_dir, ..Default::default() };
    Ok(save_with(model, out, &options, overlay)?)
}
