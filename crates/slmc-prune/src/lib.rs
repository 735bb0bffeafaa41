//! Pruning for slmc (algorithms.md §7).
//!
//! Unstructured pruning (magnitude, Wanda, SparseGPT; N:M patterns; OWL layer ratios) leaves
//! the model's shapes alone and produces exact sparsity masks, the records later stages keep.
//! Structured pruning (attention heads, MLP channels, hidden channels, whole layers) physically
//! shrinks the model and its config.

pub mod error;

pub use error::PruneError;
