//! The decoder of slmc, in burn: one implementation configured per architecture (`llama`,
//! `mistral`, `qwen2`, `phi3`, `gemma`, `gemma2`, `gemma3_text`, `granite`, `phi`, `qwen3`,
//! `smollm3`; see [`config::Features`]), Hugging Face checkpoint load/save, tokenizer,
//! KV-cache generation and perplexity.
//!
//! Tensor names are Hugging Face names everywhere (`model.layers.3.self_attn.q_proj.weight`);
//! the architecture differences live in [`config`] and [`weights`].

/// The model configuration (parsed in `slmc-formats`, which needs no burn).
pub use slmc_config::hf_config as config;
pub mod error;
pub mod generate;
pub mod gguf_export;
pub mod hf_dir;
pub mod kernels;
pub mod layers;
pub mod lora;
pub mod model;
pub mod norm;
pub mod perplexity;
pub mod proj;
pub mod rope;
pub mod tokenizer;
pub mod tokenizer_train;
pub mod weights;

pub use config::{Arch, ModelConfig, RopeConfig, RopeScaling};
pub use error::ModelError;
pub use hf_dir::{HfModel, SaveOptions};
pub use model::{CausalLm, KvCache};
pub use tokenizer::Tokenizer;
