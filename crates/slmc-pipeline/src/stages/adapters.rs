//! Adapter training in finetune and distill stages (`method = "lora" | "dora" | "qlora"`):
//! attach fresh adapters (or keep training the ones the model carries), freeze the rest, hold a
//! QLoRA base in NF4 while training, and merge adapters before stages that change the weights.

use crate::PipelineError;
use crate::context::StageContext;
use crate::events::Event;
use slmc_formats::adapter::{LoraConfig, LoraInit, TargetModules};
use slmc_formats::nf4::Nf4Options;
use slmc_model::{CausalLm, lora};
use slmc_recipe::schema_lora::{AdapterInit, AdapterKind, AdapterParams};

/// PEFT's `target_modules` for `modules`: the module suffixes (`q_proj`) when they select
/// exactly `modules` among `all`, else the full names.
pub(crate) fn target_names(modules: &[String], all: &[String]) -> Vec<String> {
    let mut suffixes: Vec<String> =
        modules.iter().filter_map(|m| m.rsplit('.').next().map(str::to_string)).collect();
    suffixes.sort();
    suffixes.dedup();
    let selected: Vec<&String> =
        all.iter().filter(|m| suffixes.iter().any(|s| m.ends_with(&format!(".{s}")))).collect();
    if selected.len() == modules.len() { suffixes } else { modules.to_vec() }
}

/// The model ready to train adapters under `a`: fresh adapters on the stage's modules (resolved
/// when the recipe was bound), or the model's own adapters when it already carries some (their
/// rank and kind must agree with the stage), frozen base, NF4 base for QLoRA.
pub(crate) fn prepare(
    model: CausalLm,
    a: &AdapterParams,
    ctx: &mut StageContext<'_>,
) -> Result<CausalLm, PipelineError> {
    let model = match &model.lora_config {
        Some(existing) => {
            if existing.r != a.r || existing.dora != (a.kind == AdapterKind::Dora) {
                return Err(PipelineError::Recipe(format!(
                    "stage {} trains {} r={} but the model already carries a {} adapter with r={}; merge it first (`slmc export DIR --adapter ADIR`) or match the stage to it",
                    ctx.index,
                    a.kind.name(),
                    a.r,
                    if existing.dora { "DoRA" } else { "LoRA" },
                    existing.r
                )));
            }
            let saved = existing.modules_to_save.clone();
            ctx.observer.event(&Event::Info(format!(
                "stage {}: continuing to train the model's {} adapters",
                ctx.index,
                lora::adapter_modules(&model).len()
            )));
            lora::trainable_adapters(model, &saved)
        }
        None => {
            let modules = ctx.modules();
            let all = model.config.linear_modules();
            let mut config = LoraConfig::new(a.r, a.alpha, target_names(&modules, &all));
            config.dora = a.kind == AdapterKind::Dora;
            config.rslora = a.rslora;
            config.dropout = a.dropout;
            config.modules_to_save =
                a.modules_to_save.iter().map(|m| m.trim_start_matches("model.").to_string()).collect();
            config.init = match a.init {
                AdapterInit::Default => LoraInit::Default,
                AdapterInit::Gaussian => LoraInit::Gaussian,
            };
            config.base_model_name_or_path = match &ctx.recipe.model {
                slmc_recipe::ModelSource::Path { path, .. } => Some(path.display().to_string()),
                slmc_recipe::ModelSource::Config { .. } => None,
            };
            debug_assert!(matches!(config.target_modules, TargetModules::Names(_)));
            let adapter = lora::init_adapter(&model, &config, &modules, ctx.seed())?;
            lora::attach_trainable(model, &adapter)?
        }
    };
    if a.kind == AdapterKind::Qlora {
        return Ok(lora::pack_nf4(model, &Nf4Options::default())?);
    }
    Ok(model)
}

/// After training: a QLoRA base goes back to dense weights (the dequantized NF4 values the
/// adapters were trained against), so later stages and exports see one kind of model.
pub(crate) fn finish(model: CausalLm) -> CausalLm {
    lora::unpack_nf4(model)
}

/// Before a stage that changes or rewrites the weights (quantize, prune, full training): the
/// adapters are folded into the weights.
pub(crate) fn merge_for(model: CausalLm, ctx: &mut StageContext<'_>, kind: &str) -> CausalLm {
    if !lora::has_adapters(&model) {
        return model;
    }
    ctx.observer.event(&Event::Info(format!(
        "stage {}: merging the LoRA adapters into the weights before {kind}",
        ctx.index
    )));
    lora::merge(model)
}
