//! Structured pruning (docs/algorithms.md §6, Minitron §7.6): attention heads, KV groups, MLP
//! channels, hidden (embedding) channels and whole layers are removed, and the model and its
//! configuration physically shrink, so the result is an ordinary, smaller Hugging Face model.
//!
//! The steps, each usable on its own:
//!
//! 1. [`importance::collect`] (Minitron activation importance over calibration windows) or
//!    [`magnitude::magnitude`] (data-free) score every unit;
//! 2. [`resolve`] turns [`Targets`] (explicit sizes or a fraction of parameters to keep)
//!    into a checked [`Shape`]; [`pruned_config`] gives the pruned configuration without
//!    any tensors, for planning;
//! 3. [`select::keep_sets`] picks the units to keep ([`KeepSets`]);
//! 4. [`shrink::shrink`] slices the tensors into a new model.
//!
//! [`prune`] runs 2–4.

pub mod depth;
pub mod importance;
pub mod keep;
pub mod magnitude;
pub mod select;
pub mod shrink;
mod tensors;

pub use importance::{Importance, ImportanceMethod, collect};
pub use keep::{KeepSets, LayerKeep};
pub use magnitude::magnitude;
pub use shrink::shrink;
pub use slmc_config::prune_shape::{Shape, TargetSizes, Targets, pruned_config, resolve, shrunk_config};

use crate::PruneError;
use serde::Serialize;
use slmc_model::CausalLm;

/// What [`prune`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PruneReport {
    /// Sizes before.
    pub before: Shape,
    /// Sizes after.
    pub after: Shape,
    /// Parameters before (tied embeddings counted once).
    pub params_before: usize,
    /// Parameters after.
    pub params_after: usize,
    /// Original indices of the dropped layers, increasing.
    pub dropped_layers: Vec<usize>,
    /// The units kept.
    pub keep: KeepSets,
}

/// Prunes `model` to `targets`, keeping the most important units by `importance` (computed on
/// this model): width and depth in one shrink. Returns the smaller model and a report.
pub fn prune(
    model: &CausalLm,
    targets: &Targets,
    importance: &Importance,
) -> Result<(CausalLm, PruneReport), PruneError> {
    let config = &model.config;
    let after = resolve(config, targets).map_err(PruneError::Input)?;
    let keep = select::keep_sets(config, importance, &after)?;
    let pruned = shrink(model, &keep)?;
    let kept = keep.sources();
    let report = PruneReport {
        before: Shape::of(config),
        after,
        params_before: config.num_params(),
        params_after: pruned.config.num_params(),
        dropped_layers: (0..config.num_layers).filter(|l| !kept.contains(l)).collect(),
        keep,
    };
    Ok((pruned, report))
}
