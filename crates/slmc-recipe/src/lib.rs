//! slmc recipes: one TOML file describing inputs, data, an ordered list of stages, exports and
//! gates.
//!
//! `text ──parse──▶ Node tree (spans) ──--set──▶ Node tree ──validate──▶ Recipe ──plan──▶ Plan`
//!
//! Every problem found is reported at once, each as a [`Diagnostic`] naming the file, line and
//! column (or the `--set` argument) with the offending line, a caret and, for misspelt keys or
//! values, the closest valid one. No burn here: `slmc check` works without a tensor backend.

pub mod diag;
pub mod plan;
mod plan_distill;
mod plan_eval;
mod plan_finetune;
pub mod plan_lora;
mod plan_prune;
mod plan_quantize;
mod reader;
pub mod schema;
mod schema_data;
pub mod schema_lora;
mod schema_prune;
pub mod select;
mod suggest;
pub mod tree;
mod validate;
mod validate_data;
mod validate_distill;
mod validate_eval;
mod validate_lora;
mod validate_prune;
mod validate_quantize;
mod validate_train;

pub use diag::{Diagnostic, Diagnostics, Sources};
pub use plan::{Plan, plan};
pub use schema::*;
pub use schema_data::*;
pub use schema_lora::*;
pub use schema_prune::*;

/// Parses, overrides and validates a recipe. `sets` are `key.path=value` overrides applied to the
/// document before validation. On failure every problem is returned, renderable with `sources`.
pub fn load_str(text: &str, file_name: &str, sets: &[String]) -> Result<Recipe, (Sources, Diagnostics)> {
    let sources = Sources { file_name: file_name.to_string(), text: text.to_string(), sets: sets.to_vec() };
    let mut diags = Diagnostics::default();
    let Some(mut root) = tree::parse(text, &mut diags) else {
        return Err((sources, diags));
    };
    for (i, set) in sets.iter().enumerate() {
        if let Err(d) = tree::apply_set(&mut root, set, i) {
            diags.push(d);
        }
    }
    if !diags.is_empty() {
        return Err((sources, diags));
    }
    match validate::recipe(&root, &mut diags) {
        Some(r) if diags.is_empty() => Ok(r),
        _ => {
            diags.sort_by_position();
            Err((sources, diags))
        }
    }
}
