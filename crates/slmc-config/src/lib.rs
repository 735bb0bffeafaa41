//! What a model is, without its weights and without burn: what `slmc check` plans from.
//!
//! * [`hf_config`]: a Hugging Face `config.json` (transformers 4.x and 5.x forms) normalised into
//!   one [`ModelConfig`] for every supported family (architecture, shapes, RoPE, per-family
//!   features), with sizes bounded before anything is allocated from them.
//! * [`dtype`]: the float dtypes checkpoints are stored in.
//! * [`prune_shape`]: the shapes a structured (width / depth) prune leads to, and the config of
//!   the pruned model.
//! * [`prune_scope`]: the scope of a magnitude-pruning threshold.
//!
//! One error type, [`ConfigError`].

pub mod dtype;
pub mod error;
pub mod hf_config;
pub mod prune_scope;
pub mod prune_shape;

pub use dtype::FloatDtype;
pub use error::ConfigError;
pub use hf_config::{Arch, ModelConfig, RopeConfig, RopeScaling};
