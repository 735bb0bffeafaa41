//! Weight quantization for slmc: round-to-nearest and GPTQ (docs/algorithms.md §2–§3), run block
//! by block over calibration data with resumable record files, and the encodings exporters need:
//! packed GPTQ tensors (§4) and ggml blocks for GGUF.
//!
//! A quantize stage leaves two things behind: the model with fake-quantized weights (what the
//! codes dequantize to, so evaluation measures the real quantized model) and a [`Records`] map
//! with the exact codes, scales and zero points of every quantized module.

pub mod error;
pub mod ggml_codes;
pub mod gptq;
pub mod gptq_dir;
pub mod grid;
pub mod pack;
pub mod record;
pub mod sequential;

pub use error::QuantError;
pub use gptq::{GptqOptions, GptqStats, gptq, gptq_masked, output_energy, relative_output_error, rtn};
pub use gptq_dir::{GptqSettings, save_gptq};
pub use grid::{Grid, Params};
pub use record::{QuantRecord, Records, load_records, save_records};
pub use sequential::{Control, Method, ModuleReport, QuantEvent, QuantizeConfig, apply_records, quantize};
pub use slmc_calib::hessian;
