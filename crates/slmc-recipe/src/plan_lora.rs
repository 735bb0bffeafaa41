//! Planning an adapter stage: which modules get adapters, how many parameters train, and the
//! memory of a LoRA / DoRA / QLoRA step.

use crate::diag::Diagnostic;
use crate::plan::Memory;
use crate::schema::{Selection, Selector};
use crate::schema_lora::{AdapterKind, AdapterParams, AdapterTargets};
use crate::tree::Origin;
use slmc_config::ModelConfig;

/// The decoder linear modules (Hugging Face names) that get adapters.
pub fn adapter_modules(a: &AdapterParams, model: &ModelConfig) -> Result<Vec<String>, Vec<Diagnostic>> {
    let all = model.linear_modules();
    match &a.targets {
        AdapterTargets::Default => {
            // PEFT's defaults (utils/constants.py): q_proj + v_proj; Phi-3's fused qkv_proj;
            // Phi-2 adds fc1/fc2. (PEFT has no entry for granite or smollm3: q_proj + v_proj.)
            let names: &[&str] = match model.arch {
                a if a.fused_projections() => &["qkv_proj"],
                slmc_config::Arch::Phi => &["q_proj", "v_proj", "fc1", "fc2"],
                _ => &["q_proj", "v_proj"],
            };
            let targets =
                names.iter().map(|n| Selector { text: n.to_string(), origin: Origin::Nowhere }).collect();
            crate::select::resolve(&Selection { targets, ignore: Vec::new() }, &all)
        }
        AdapterTargets::AllLinear(sel) | AdapterTargets::Selected(sel) => crate::select::resolve(sel, &all),
    }
}

/// Parameters that train: `r·(in + out)` per adapted module (+ `out` for DoRA's magnitude) and
/// the tensors of `modules-to-save`.
pub fn trainable_params(a: &AdapterParams, model: &ModelConfig, modules: &[String]) -> usize {
    let dora = a.kind == AdapterKind::Dora;
    let adapters: usize = modules
        .iter()
        .filter_map(|m| model.linear_shape(m))
        .map(|[out, inp]| a.r * (inp + out) + if dora { out } else { 0 })
        .sum();
    let table = model.vocab_size * model.hidden_size;
    let saved: usize = a
        .modules_to_save
        .iter()
        .map(|m| match m.trim_start_matches("model.") {
            "lm_head" if model.tie_word_embeddings => 0,
            _ => table,
        })
        .sum();
    adapters + saved
}

/// Bytes of the frozen weights: f32, except QLoRA's decoder linears in NF4 with double
/// quantization (4 bits + one u8 absmax code per 64 values + one f32 per 256 codes).
pub fn frozen_weight_bytes(a: &AdapterParams, model: &ModelConfig) -> u64 {
    let params = model.num_params() as u64;
    if a.kind != AdapterKind::Qlora {
        return 4 * params;
    }
    let linear: u64 = model
        .linear_modules()
        .iter()
        .filter_map(|m| model.linear_shape(m))
        .map(|[o, i]| (o * i) as u64)
        .sum();
    let nf4 = linear / 2 + linear / 64 + 4 * linear / (64 * 256);
    // One layer's weights are dequantized at a time (the largest projection twice: forward and
    // the backward pass of the same layer).
    let widest: u64 = model
        .linear_modules()
        .iter()
        .filter_map(|m| model.linear_shape(m))
        .map(|[o, i]| (o * i) as u64)
        .max()
        .unwrap_or(0);
    4 * (params - linear) + nf4 + 8 * widest
}

/// Memory of one adapter training step: frozen weights, gradients and AdamW moments of the
/// trained parameters, and `activations` (as for full training: the activations of the frozen
/// layers are kept for the input gradients).
pub fn memory(a: &AdapterParams, model: &ModelConfig, modules: &[String], activations: u64) -> Memory {
    let trained = trainable_params(a, model, modules) as u64;
    Memory {
        weights: frozen_weight_bytes(a, model),
        gradients: 4 * trained,
        optimizer: 8 * trained,
        activations,
        ..Default::default()
    }
}

/// One line describing the adapters.
pub fn summary(a: &AdapterParams, model: &ModelConfig, modules: &[String]) -> String {
    let trained = trainable_params(a, model, modules);
    let mut suffixes: Vec<&str> = modules.iter().filter_map(|m| m.rsplit('.').next()).collect();
    suffixes.sort();
    suffixes.dedup();
    format!(
        "{} r={} α={}{}{} on {} modules ({}), {} trainable params ({:.2}% of {:.2}M){}",
        a.kind.name(),
        a.r,
        a.alpha,
        if a.rslora { " rsLoRA" } else { "" },
        if a.dropout > 0.0 { format!(" dropout {}", a.dropout) } else { String::new() },
        modules.len(),
        suffixes.join(", "),
        trained,
        100.0 * trained as f64 / model.num_params() as f64,
        model.num_params() as f64 / 1e6,
        if a.modules_to_save.is_empty() {
            String::new()
        } else {
            format!(", saved whole: {}", a.modules_to_save.join(", "))
        }
    )
}
