//! `[export]`: the artifacts written from the final state into `artifacts/`.

use crate::PipelineError;
use crate::events::{Event, Observer};
use crate::state::State;
use slmc_config::FloatDtype;
use slmc_model::hf_dir::{SaveOptions, save};
use slmc_recipe::{ExportFormat, Recipe};
use std::path::{Path, PathBuf};

/// Where exports go and what they copy from the input model.
pub(crate) struct ExportTarget<'a> {
    /// `artifacts/` of the run directory.
    pub dir: PathBuf,
    /// The directory whose tokenizer files the exports carry.
    pub tokenizer_dir: Option<&'a Path>,
    /// The input model's stored dtype (the default of the safetensors export).
    pub stored_dtype: FloatDtype,
}

/// Writes every format of the recipe's `[export]` table; returns the paths written.
pub(crate) fn write_all(
    recipe: &Recipe,
    state: &State,
    target: &ExportTarget<'_>,
    observer: &mut dyn Observer,
) -> Result<Vec<PathBuf>, PipelineError> {
    let Some(e) = &recipe.export else {
        return Ok(Vec::new());
    };
    // After adapter training the model formats hold the merged weights; `peft` and `gguf-lora`
    // write the adapters themselves.
    let adapter = slmc_model::lora::extract(&state.model)?;
    let merged = adapter.is_some().then(|| slmc_model::lora::merge(state.model.clone()));
    let model = merged.as_ref().unwrap_or(&state.model);
    let tokenizer_dir = target.tokenizer_dir.map(Path::to_path_buf);
    let mut artifacts = Vec::new();
    for f in &e.formats {
        let out = match f {
            ExportFormat::Safetensors => {
                let out = target.dir.join(format!("{}-safetensors", recipe.name));
                let opts = SaveOptions {
                    dtype: Some(e.dtype.unwrap_or(target.stored_dtype)),
                    max_shard_bytes: None,
                    tokenizer_dir: tokenizer_dir.clone(),
                    tensor_dtype: None,
                };
                save(model, &out, &opts)?;
                out
            }
            ExportFormat::Gguf => {
                let tok = tokenizer_dir.clone().ok_or_else(|| {
                    PipelineError::Recipe("GGUF export needs the model's tokenizer.json".into())
                })?;
                let file_type = recipe.gguf_type();
                let out = target.dir.join(format!("{}-{}.gguf", recipe.name, file_type.name()));
                let opts = slmc_model::gguf_export::GgufOptions {
                    file_type,
                    tokenizer_dir: tok,
                    name: Some(recipe.name.clone()),
                    encoded: match (&state.records.quant, e.requantize) {
                        (Some(r), false) => slmc_quant::ggml_codes::gguf_tensors(model, r)?,
                        _ => Default::default(),
                    },
                };
                slmc_model::gguf_export::export_model_gguf(model, &opts, &out)?;
                out
            }
            ExportFormat::Gptq => {
                let (Some(r), Some(q)) = (&state.records.quant, recipe.last_quantize()) else {
                    return Err(PipelineError::Recipe("the gptq export needs a quantize stage".into()));
                };
                let out = target.dir.join(format!("{}-gptq", recipe.name));
                let settings = slmc_quant::GptqSettings {
                    act_order: q.act_order,
                    damp: q.damp,
                    true_sequential: q.true_sequential,
                };
                slmc_quant::save_gptq(model, r, settings, tokenizer_dir.clone(), &out)?;
                out
            }
            ExportFormat::Peft => {
                let adapter = adapter.as_ref().ok_or_else(no_adapter)?;
                let out = target.dir.join(format!("{}-peft", recipe.name));
                if state.model.config.features.multimodal {
                    // Named as in the multimodal class the user's PEFT loads the base with.
                    slmc_formats::adapter::write_peft(&adapter.for_multimodal_base(), &out)?;
                } else {
                    slmc_formats::adapter::write_peft(adapter, &out)?;
                }
                out
            }
            ExportFormat::GgufLora => {
                let adapter = adapter.as_ref().ok_or_else(no_adapter)?;
                let file_type = match e.dtype {
                    Some(FloatDtype::F16) => slmc_gguf::FileType::F16,
                    Some(FloatDtype::BF16) => slmc_gguf::FileType::BF16,
                    _ => slmc_gguf::FileType::F32,
                };
                let out = target.dir.join(format!("{}-lora-{}.gguf", recipe.name, file_type.name()));
                let gguf_target = slmc_gguf::GgufLoraTarget::from_config(&state.model.config);
                slmc_gguf::write_gguf_lora(adapter, &gguf_target, file_type, &out)?;
                out
            }
        };
        observer.event(&Event::Artifact(out.display().to_string()));
        artifacts.push(out);
    }
    Ok(artifacts)
}

fn no_adapter() -> PipelineError {
    PipelineError::Recipe("the `peft` and `gguf-lora` exports need LoRA adapters on the final model".into())
}
