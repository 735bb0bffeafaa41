//! The slmc training engine: AdamW with warmup + cosine/linear decay, global-norm gradient
//! clipping, gradient accumulation, periodic evaluation, and checkpoints (model, optimizer state,
//! data position) from which a killed run resumes on the same loss curve.
//!
//! The loss is pluggable ([`StepLoss`]), so distillation reuses the same loop.

pub mod batch;
pub mod checkpoint;
pub mod chunked;
pub mod clip;
pub mod distill;
pub mod error;
pub mod eval;
pub mod kd;
pub mod layerwise;
pub mod loss;
pub mod schedule;
pub mod sparse;
pub mod teacher_cache;
pub mod trainer;

pub use error::TrainError;
pub use sparse::GradMask;
pub use trainer::{
    Batch, CrossEntropy, Event, GradOptions, StepLoss, TrainData, TrainModel, TrainOptions, train,
};
