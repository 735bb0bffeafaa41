//! LoRA adapters as data, without burn: the adapter set in memory (plain f32 matrices per
//! module, DoRA magnitudes, tensors of `modules_to_save`), its merge into base weights, and its
//! files: PEFT adapter directories (llama.cpp GGUF LoRA adapters: `slmc_gguf::lora_adapter`).
//!
//! * [`config`]: [`LoraConfig`] (rank, alpha, rsLoRA / DoRA, targets, `modules_to_save`).
//! * [`lora`]: [`LoraAdapter`], [`LoraWeights`], [`Matrix`]: `scale · B·A`, LoRA and DoRA merge,
//!   [`check_fits`] against a model's shapes.
//! * [`peft_config`]: `adapter_config.json` exactly as PEFT 0.21.2 writes it, and reading it back
//!   with every unsupported feature refused by name.
//! * [`peft`]: [`read_peft`] / [`write_peft`] for PEFT adapter directories.

pub mod config;
pub mod lora;
pub mod multimodal;
pub mod peft;
pub mod peft_config;

pub use config::{LoraConfig, LoraInit, TargetModules};
pub use lora::{LoraAdapter, LoraWeights, Matrix, SavedTensor, check_fits};
pub use peft::{read_peft, write_peft};
