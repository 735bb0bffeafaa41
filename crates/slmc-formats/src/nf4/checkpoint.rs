//! The tensors transformers + bitsandbytes save for a 4-bit linear (`Linear4bit._save_to_state_dict`
//! → `QuantState.as_dict(packed=True)`, `docs/algorithms.md` §9.4), for a weight named
//! `W` (e.g. `model.layers.0.self_attn.q_proj.weight`):
//!
//! | key | dtype | shape |
//! |---|---|---|
//! | `W` | uint8 | `[ceil(n/2), 1]` packed codes |
//! | `W.absmax` | uint8 codes (double quant) or float32 | `[blocks]` |
//! | `W.quant_map` | float32 | `[16]`, the NF4 levels |
//! | `W.nested_absmax` | float32 | `[ceil(blocks/256)]` (double quant only) |
//! | `W.nested_quant_map` | float32 | `[256]` (double quant only) |
//! | `W.quant_state.bitsandbytes__nf4` | uint8 | `[len]`, JSON (see [`QuantStateJson`]) |

use super::codebook::NF4;
use super::double::DoubleQuant;
use super::quant_state::QuantStateJson;
use super::tensor::{Absmax, Nf4Tensor, check_blocksize};
use crate::FormatError;
use crate::checkpoint::{Checkpoint, TensorToWrite};
use safetensors::Dtype;
use slmc_config::FloatDtype;

/// Suffix of the packed quant-state JSON tensor.
pub const QUANT_STATE_SUFFIX: &str = ".quant_state.bitsandbytes__nf4";
/// The same for FP4, which slmc refuses by name.
const FP4_STATE_SUFFIX: &str = ".quant_state.bitsandbytes__fp4";

/// One stored tensor as a [`TensorSource`] hands it out.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTensor<'a> {
    /// Element type.
    pub dtype: Dtype,
    /// Shape, outermost first.
    pub shape: Vec<usize>,
    /// Little-endian bytes, C order.
    pub data: &'a [u8],
}

/// Somewhere named tensors can be read from: an opened [`Checkpoint`], or the tensors
/// [`Nf4Tensor::to_tensors`] made.
pub trait TensorSource {
    /// The tensor called `name`, or `None` when there is none.
    fn stored(&self, name: &str) -> Result<Option<StoredTensor<'_>>, FormatError>;
}

impl TensorSource for Checkpoint {
    fn stored(&self, name: &str) -> Result<Option<StoredTensor<'_>>, FormatError> {
        let Some(meta) = self.meta(name) else { return Ok(None) };
        Ok(Some(StoredTensor { dtype: meta.dtype, shape: meta.shape, data: self.bytes(name)? }))
    }
}

impl TensorSource for [TensorToWrite] {
    fn stored(&self, name: &str) -> Result<Option<StoredTensor<'_>>, FormatError> {
        Ok(self.iter().find(|t| t.name == name).map(|t| StoredTensor {
            dtype: t.dtype,
            shape: t.shape.clone(),
            data: &t.data,
        }))
    }
}

fn bad(name: &str, reason: impl Into<String>) -> FormatError {
    FormatError::BadTensor { name: name.to_string(), reason: reason.into() }
}

fn u8_tensor(name: String, shape: Vec<usize>, data: Vec<u8>) -> TensorToWrite {
    TensorToWrite { name, dtype: Dtype::U8, shape, data }
}

impl Nf4Tensor {
    /// The tensors bitsandbytes saves for this weight under `name` (the weight's own name), in
    /// `as_dict` order: `name`, `.absmax`, `.quant_map`, then with double quantization
    /// `.nested_absmax`, `.nested_quant_map`, and last the quant-state JSON, byte for byte as
    /// bitsandbytes 0.49.2 writes it.
    pub fn to_tensors(&self, name: &str) -> Vec<TensorToWrite> {
        let n = self.packed().len();
        let mut out = vec![u8_tensor(name.to_string(), vec![n, 1], self.packed().to_vec())];
        let f32s = |suffix: &str, values: &[f32]| {
            TensorToWrite::from_f32(format!("{name}{suffix}"), vec![values.len()], values, FloatDtype::F32)
        };
        let nested = match self.absmax() {
            Absmax::Plain(a) => {
                out.push(f32s(".absmax", a));
                out.push(f32s(".quant_map", &NF4));
                None
            }
            Absmax::Double(d) => {
                out.push(u8_tensor(format!("{name}.absmax"), vec![d.codes.len()], d.codes.clone()));
                out.push(f32s(".quant_map", &NF4));
                out.push(f32s(".nested_absmax", &d.nested_absmax));
                out.push(f32s(".nested_quant_map", &d.code_map[..]));
                Some((d.nested_blocksize, d.offset))
            }
        };
        let state =
            QuantStateJson { blocksize: self.blocksize(), dtype: self.dtype(), shape: self.shape(), nested };
        let json = state.to_json().into_bytes();
        out.push(u8_tensor(format!("{name}{QUANT_STATE_SUFFIX}"), vec![json.len()], json));
        out
    }

    /// Reads the weight `name` saved in bitsandbytes' layout (see the module documentation).
    /// Every tensor's dtype, shape and length is checked against the quant-state JSON; a missing,
    /// truncated or inconsistent piece, an FP4 state, a `quant_map` other than NF4's, or nested
    /// tensors without a nested state (or the reverse) is an error naming the tensor.
    pub fn from_tensors<S: TensorSource + ?Sized>(name: &str, source: &S) -> Result<Self, FormatError> {
        let state_name = format!("{name}{QUANT_STATE_SUFFIX}");
        let Some(state_bytes) = source.stored(&state_name)? else {
            if source.stored(&format!("{name}{FP4_STATE_SUFFIX}"))?.is_some() {
                return Err(bad(name, "is stored as bitsandbytes FP4; only NF4 is supported"));
            }
            return Err(FormatError::MissingTensor { name: state_name });
        };
        let bytes = expect(&state_name, state_bytes, Dtype::U8, None)?;
        let state = QuantStateJson::parse(bytes).map_err(|e| bad(&state_name, e))?;
        check_blocksize("blocksize", state.blocksize, 32, 4096).map_err(|e| bad(&state_name, e))?;
        if let Some((nested_blocksize, _)) = state.nested {
            check_blocksize("nested_blocksize", nested_blocksize, 64, 4096)
                .map_err(|e| bad(&state_name, e))?;
        }
        let [rows, cols] = state.shape;
        let n = rows
            .checked_mul(cols)
            .filter(|&n| n > 0)
            .ok_or_else(|| bad(&state_name, format!("shape {:?} is empty or too large", state.shape)))?;
        let blocks = n.div_ceil(state.blocksize);

        let packed = required(source, name, Dtype::U8, n.div_ceil(2))?.to_vec();
        let quant_map =
            FloatDtype::F32.decode(required(source, &format!("{name}.quant_map"), Dtype::F32, 16)?);
        if let Some(i) = (0..16).find(|&i| quant_map[i].to_bits() != NF4[i].to_bits()) {
            return Err(bad(
                &format!("{name}.quant_map"),
                format!("entry {i} is {}, not the NF4 level {}", quant_map[i], NF4[i]),
            ));
        }
        let absmax_name = format!("{name}.absmax");
        let nested_names = [format!("{name}.nested_absmax"), format!("{name}.nested_quant_map")];
        let absmax = match state.nested {
            None => {
                if let Some(extra) = present(source, &nested_names)? {
                    return Err(bad(extra, "is stored, but the quant state has no nested_offset"));
                }
                Absmax::Plain(FloatDtype::F32.decode(required(source, &absmax_name, Dtype::F32, blocks)?))
            }
            Some((nested_blocksize, offset)) => {
                let codes = required(source, &absmax_name, Dtype::U8, blocks)?.to_vec();
                let nested = blocks.div_ceil(nested_blocksize);
                let nested_absmax =
                    FloatDtype::F32.decode(required(source, &nested_names[0], Dtype::F32, nested)?);
                let map = FloatDtype::F32.decode(required(source, &nested_names[1], Dtype::F32, 256)?);
                let mut code_map = Box::new([0.0f32; 256]);
                code_map.copy_from_slice(&map);
                Absmax::Double(DoubleQuant { codes, nested_absmax, offset, code_map, nested_blocksize })
            }
        };
        Nf4Tensor::from_parts(state.shape, state.blocksize, state.dtype, packed, absmax).map_err(
            |e| match e {
                FormatError::Nf4 { reason } => bad(name, reason),
                other => other,
            },
        )
    }
}

/// The first of `names` that `source` holds.
fn present<'n, S: TensorSource + ?Sized>(
    source: &S,
    names: &'n [String],
) -> Result<Option<&'n str>, FormatError> {
    for n in names {
        if source.stored(n)?.is_some() {
            return Ok(Some(n));
        }
    }
    Ok(None)
}

/// The bytes of `name`, which must exist, be `dtype` and hold `numel` elements.
fn required<'s, S: TensorSource + ?Sized>(
    source: &'s S,
    name: &str,
    dtype: Dtype,
    numel: usize,
) -> Result<&'s [u8], FormatError> {
    let stored = source.stored(name)?.ok_or_else(|| FormatError::MissingTensor { name: name.to_string() })?;
    expect(name, stored, dtype, Some(numel))
}

/// Checks a stored tensor's dtype, element count (when given) and byte length.
fn expect<'s>(
    name: &str,
    t: StoredTensor<'s>,
    dtype: Dtype,
    numel: Option<usize>,
) -> Result<&'s [u8], FormatError> {
    if t.dtype != dtype {
        return Err(bad(name, format!("is {:?}; bitsandbytes stores it as {dtype:?}", t.dtype)));
    }
    let count = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if let Some(want) = numel.filter(|&w| Some(w) != count) {
        return Err(bad(name, format!("has shape {:?}; expected {want} elements", t.shape)));
    }
    if count.and_then(|c| c.checked_mul(dtype.bitsize() / 8)) != Some(t.data.len()) {
        return Err(bad(name, format!("holds {} bytes for shape {:?}", t.data.len(), t.shape)));
    }
    Ok(t.data)
}
