//! `[export]`: the artifacts written from the final state into `artifacts/`, each through the
//! one export path ([`crate::export`]).

use crate::PipelineError;
use crate::events::{Event, Observer};
use crate::export::{ExportRequest, ExportSource, export, gguf_type};
use crate::state::State;
use slmc_config::FloatDtype;
use slmc_gguf::FileType;
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
    let src = ExportSource {
        model: &state.model,
        records: &state.records,
        stored_dtype: target.stored_dtype,
        adapter: None,
    };
    let mut artifacts = Vec::new();
    for &format in &e.formats {
        let mut req = ExportRequest::new(format, PathBuf::new());
        req.tokenizer_dir = target.tokenizer_dir.map(Path::to_path_buf);
        req.name = Some(recipe.name.clone());
        req.dtype = e.dtype;
        req.requantize = e.requantize;
        req.gguf_type = match format {
            ExportFormat::GgufLora => match e.dtype {
                Some(FloatDtype::F16) => Some(FileType::F16),
                Some(FloatDtype::BF16) => Some(FileType::BF16),
                _ => None,
            },
            _ => recipe.gguf_type(),
        };
        req.gptq = recipe.last_quantize().map(|q| slmc_quant::GptqSettings {
            act_order: q.act_order,
            damp: q.damp,
            true_sequential: q.true_sequential,
        });
        req.out = target.dir.join(artifact_name(&recipe.name, &req, &src));
        export(&src, &req)?;
        observer.event(&Event::Artifact(req.out.display().to_string()));
        artifacts.push(req.out);
    }
    Ok(artifacts)
}

/// The artifact's file or directory name (`<name>-safetensors`, `<name>-q4_0.gguf`, …).
fn artifact_name(name: &str, req: &ExportRequest, src: &ExportSource<'_>) -> String {
    match req.format {
        ExportFormat::Gguf => format!("{name}-{}.gguf", gguf_type(req, src).name()),
        ExportFormat::GgufLora => {
            format!("{name}-lora-{}.gguf", req.gguf_type.unwrap_or(FileType::F32).name())
        }
        other => format!("{name}-{}", other.name()),
    }
}
