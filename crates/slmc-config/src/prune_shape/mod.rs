//! The shape of a structurally pruned model, computed from its configuration alone (no tensors,
//! no backend), so `slmc check` plans a width or depth prune before any weights are loaded:
//! target sizes (explicit, or a fraction of parameters to keep) resolved and checked against the
//! model, and the pruned `config.json` with `head_dim` explicit and per-layer settings renumbered
//! (docs/algorithms.md §6.6). Errors are one-line messages naming the config key.

mod config;
mod targets;

pub use config::{pruned_config, shrunk_config};
pub use targets::{Shape, TargetSizes, Targets, resolve};
