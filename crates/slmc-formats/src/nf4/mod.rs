//! NF4 with double quantization, bit for bit as bitsandbytes 0.49.2 quantizes on CPU (QLoRA's
//! frozen base weights), as data: no burn, no torch.
//!
//! * [`codebook`]: the NF4 levels and the double quantization's dynamic map, with bitsandbytes'
//!   rules for choosing a code.
//! * [`quantize`]: block absmax, NF4 codes, packing (first value in the high nibble).
//! * [`torch_mean`]: torch's f32 mean, whose last bit is the double quantization's offset.
//! * [`double`]: [`DoubleQuant`], the block absmaxes as u8 codes + nested absmax + offset.
//! * [`tensor`]: [`Nf4Tensor`] (quantize, dequantize, dequantize a range of rows).
//! * [`quant_state`]: the quant-state JSON, written byte for byte as Python writes it.
//! * [`checkpoint`]: the tensors transformers + bitsandbytes save for a 4-bit linear, written and
//!   read back with validation.
//!
//! Sources: `docs/algorithms.md` §9 (QLoRA, arXiv 2305.14314; bitsandbytes' `quantize_4bit` CPU
//! path); checked against bitsandbytes 0.49.2 outputs in `tests/fixtures/nf4/`
//! (`scripts/make_nf4_fixture.py`).

pub mod checkpoint;
pub mod codebook;
pub mod double;
pub mod quant_state;
pub mod quantize;
pub mod tensor;
pub mod torch_mean;

pub use checkpoint::{QUANT_STATE_SUFFIX, StoredTensor, TensorSource};
pub use codebook::{NF4, dynamic_map};
pub use double::DoubleQuant;
pub use quant_state::QuantStateJson;
pub use tensor::{Absmax, Nf4Options, Nf4Tensor};
