//! Pruning for slmc (docs/algorithms.md §5–§6).
//!
//! Unstructured pruning (magnitude, Wanda, SparseGPT; N:M patterns; OWL layer ratios) leaves
//! the model's shapes alone and produces exact sparsity masks, the records later stages keep.
//! Structured pruning (attention heads, MLP channels, hidden channels, whole layers) physically
//! shrinks the model and its config.
//!
//! The unstructured kernels are data-level: a weight is a row-major `[rows = out_features,
//! cols = in_features]` `&[f32]` (Hugging Face layout; burn's `[in, out]` weights need a
//! transpose), and the calibration statistic is the f64 `[cols, cols]` input Hessian
//! `slmc_calib::Hessian::mean()` (Wanda reads its diagonal). Every kernel reproduces the mask of
//! llm-compressor 0.14's (= the original repositories') kernel on the same inputs
//! (tests/fixtures/prune).

pub mod error;
pub mod magnitude;
pub mod mask;
pub mod owl;
mod rank;
pub mod records;
pub mod sequential;
pub mod sparsegpt;
pub mod structured;
pub mod summary;
pub mod target;
pub mod wanda;

pub use error::PruneError;
pub use magnitude::{MagnitudeScope, magnitude};
pub use mask::Mask;
pub use owl::{ScoredLinear, outlier_ratio, owl_layer_sparsity};
pub use records::{Masks, load_masks, save_masks};
pub use sequential::{Algorithm, PruneConfig, PruneDetail, PruneEvent, owl_ratios, prune};
pub use sparsegpt::{SparseGptOptions, SparseGptStats, sparsegpt};
pub use summary::SparsitySummary;
pub use target::{MAX_RATIO, Sparsity};
pub use wanda::wanda;
