//! The plan of a prune stage: the modules and weights it touches, the model's shape after it,
//! and its peak memory.

use crate::diag::Diagnostic;
use crate::plan::{Memory, calibration_memory, tensor_count};
use crate::schema_prune::*;
use slmc_config::ModelConfig;

/// What a prune stage will do.
pub(crate) struct PrunePlan {
    /// One-line description.
    pub summary: String,
    /// Tensors and parameters it changes.
    pub touched: (usize, usize),
    /// Peak memory.
    pub memory: Memory,
    /// The model after the stage (smaller after structured pruning).
    pub model: ModelConfig,
    /// The linear modules an unstructured prune zeroes weights of.
    pub modules: Vec<String>,
}

/// Plans prune stage `p` for the plan's loop (the model after it, the modules an unstructured
/// prune binds, or the problems that keep it from being planned).
pub(crate) fn plan_stage(
    p: &PruneParams,
    at: &crate::plan::PlanInput<'_>,
    origin: &crate::tree::Origin,
) -> crate::plan::KindPlan {
    match plan(p, at.model, at.seq, origin) {
        Ok(pp) => crate::plan::KindPlan {
            summary: pp.summary,
            touched: pp.touched,
            memory: pp.memory,
            modules: p.is_unstructured().then_some(pp.modules),
            model: Some(pp.model),
            problems: Vec::new(),
        },
        Err(problems) => crate::plan::KindPlan {
            summary: "prune: cannot be planned on this model".into(),
            touched: (0, 0),
            memory: Memory::default(),
            modules: None,
            model: None,
            problems,
        },
    }
}

/// Plans prune stage `p` on `model` with `seq`-token data.
pub(crate) fn plan(
    p: &PruneParams,
    model: &ModelConfig,
    seq: usize,
    origin: &crate::tree::Origin,
) -> Result<PrunePlan, Vec<Diagnostic>> {
    let weights = 4 * model.num_params() as u64;
    let calib_len = p.calibration.len.unwrap_or(seq);
    let calib = |widest: usize| {
        if p.needs_data() { calibration_memory(model, &p.calibration, calib_len, widest) } else { 0 }
    };
    let data_note = if p.needs_data() {
        format!(", {} calibration windows × {calib_len} tokens", p.calibration.samples)
    } else {
        String::new()
    };
    match &p.method {
        PruneMethod::Unstructured { algorithm, sparsity, owl, select, .. } => {
            let all = model.linear_modules();
            let modules = crate::select::resolve(select, &all)?;
            let shapes: Vec<[usize; 2]> = modules.iter().filter_map(|m| model.linear_shape(m)).collect();
            if let SparsityTarget::NofM { m, .. } = sparsity
                && let Some((name, cols)) =
                    modules.iter().zip(&shapes).map(|(n, s)| (n, s[1])).find(|(_, cols)| cols % m != 0)
            {
                return Err(vec![Diagnostic::new(
                    format!("{name} has {cols} input columns, not a multiple of the pattern's group of {m}"),
                    origin.clone(),
                )]);
            }
            let params: usize = shapes.iter().map(|[o, i]| o * i).sum();
            let widest = shapes.iter().map(|s| s[1]).max().unwrap_or(0);
            let summary = format!(
                "prune: {} {}{}, {} of {} linear modules ({:.2}M weights → {:.2}M zeros){data_note}",
                algorithm.name(),
                sparsity.describe(),
                owl.map_or(String::new(), |o| format!(" with OWL layer ratios (λ {}, m {})", o.lambda, o.m)),
                modules.len(),
                all.len(),
                params as f64 / 1e6,
                params as f64 * sparsity.ratio() / 1e6,
            );
            // The walk holds two f32 copies of the block being solved (as for GPTQ); SparseGPT
            // also keeps the block's compensated weights until its block file is written. Wanda
            // reads feature norms only: no Hessian and Cholesky factor per module, just the first
            // batch's f64 Gram matrix for the output error. Masks are a bit per weight.
            let block = 4 * (params / model.num_layers.max(1)) as u64;
            let (calibration, held) = match algorithm {
                MaskAlgorithm::SparseGpt => (calib(widest), 3 * block),
                MaskAlgorithm::Wanda => (calib(0) + 8 * (widest * widest) as u64, 2 * block),
                MaskAlgorithm::Magnitude(_) => (calib(widest), 2 * block),
            };
            Ok(PrunePlan {
                summary,
                touched: (modules.len(), params),
                memory: Memory {
                    weights,
                    activations: calibration + held,
                    records: params as u64 / 8,
                    ..Default::default()
                },
                model: model.clone(),
                modules,
            })
        }
        PruneMethod::Width { importance, .. } | PruneMethod::Depth { importance, .. } => {
            let targets = p.shape_targets().expect("structured");
            let to = slmc_config::prune_shape::pruned_config(model, &targets)
                .map_err(|e| vec![Diagnostic::new(e, origin.clone())])?;
            let what = if matches!(p.method, PruneMethod::Width { .. }) {
                format!(
                    "width ({} importance): heads {}→{}, KV heads {}→{}, intermediate {}→{}, hidden {}→{}",
                    importance_name(*importance),
                    model.num_heads,
                    to.num_heads,
                    model.num_kv_heads,
                    to.num_kv_heads,
                    model.intermediate_size,
                    to.intermediate_size,
                    model.hidden_size,
                    to.hidden_size,
                )
            } else {
                format!(
                    "depth ({}): {} → {} layers",
                    if *importance == ImportanceSource::Activation {
                        "block influence"
                    } else {
                        "weight magnitude"
                    },
                    model.num_layers,
                    to.num_layers
                )
            };
            let summary = format!(
                "prune: {what} ({:.2}M → {:.2}M parameters){data_note}",
                model.num_params() as f64 / 1e6,
                to.num_params() as f64 / 1e6,
            );
            let widest = model.intermediate_size.max(model.hidden_size);
            Ok(PrunePlan {
                summary,
                touched: (tensor_count(model), model.num_params() - to.num_params()),
                // The pruned copy is built beside the original.
                memory: Memory {
                    weights: weights + 4 * to.num_params() as u64,
                    activations: calib(widest),
                    ..Default::default()
                },
                model: to,
                modules: Vec::new(),
            })
        }
    }
}

fn importance_name(i: ImportanceSource) -> &'static str {
    match i {
        ImportanceSource::Activation => "activation",
        ImportanceSource::Magnitude => "magnitude",
    }
}
