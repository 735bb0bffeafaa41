//! LoRA adapters as data, without burn: the adapter set in memory (plain f32 matrices per
//! module, DoRA magnitudes, tensors of `modules_to_save`), its merge into base weights, and its
//! files: PEFT adapter directories and llama.cpp GGUF LoRA adapters.
//!
//! * [`config`]: [`LoraConfig`] (rank, alpha, rsLoRA / DoRA, targets, `modules_to_save`).
//! * [`lora`]: [`LoraAdapter`], [`LoraWeights`], [`Matrix`]: `scale · B·A`, LoRA and DoRA merge,
//!   [`check_fits`] against a model's shapes.
//! * [`peft_config`]: `adapter_config.json` exactly as PEFT 0.21.2 writes it, and reading it back
//!   with every unsupported feature refused by name.
//! * [`peft`]: [`read_peft`] / [`write_peft`] for PEFT adapter directories.
//! * [`gguf_lora`]: [`write_gguf_lora`], what llama.cpp's `convert_lora_to_gguf.py` writes.

pub mod config;
pub mod gguf_lora;
pub mod lora;
pub mod multimodal;
pub mod peft;
pub mod peft_config;

pub use config::{LoraConfig, LoraInit, TargetModules};
pub use gguf_lora::{GgufLoraReport, GgufLoraTarget, write_gguf_lora};
pub use lora::{LoraAdapter, LoraWeights, Matrix, SavedTensor, check_fits};
pub use peft::{read_peft, write_peft};
