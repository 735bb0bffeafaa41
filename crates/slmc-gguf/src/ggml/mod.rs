//! ggml tensor types and block quantizers, bit-exact ports of ggml's reference implementation
//! (`ggml-quants.c`, `ggml-common.h`, `ggml-impl.h`).
//!
//! * Scalar types: F32, F16 (round to nearest even), BF16 (ggml's rounding, NaN kept quiet).
//! * 32-value blocks: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 ([`legacy`]).
//! * 256-value super-blocks: Q4_K, Q5_K, Q6_K ([`kquants`]), the reference (no importance
//!   matrix) algorithms that `llama-quantize` runs by default.
//!
//! Rows are independent, so [`quantize`] splits the work across threads (rayon) with output
//! identical to a single-threaded run.

pub mod block;
mod kquant_search;
pub mod kquants;
pub mod legacy;
pub mod scalar;
mod types;

pub use block::Block;
pub use kquants::{BlockQ4K, BlockQ5K, BlockQ6K, QK_K};
pub use legacy::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0};
pub use types::GgmlType;

use crate::GgufError;
use rayon::prelude::*;

/// Values handed to one thread at a time (a multiple of every block size).
const CHUNK_VALUES: usize = 64 * 1024;

fn ggml_err(reason: String) -> GgufError {
    GgufError::Ggml { reason }
}

fn quantize_chunk(ty: GgmlType, x: &[f32], out: &mut [u8]) {
    use block::quantize_into as q;
    match ty {
        GgmlType::F32 => {
            for (o, v) in out.chunks_exact_mut(4).zip(x) {
                o.copy_from_slice(&v.to_le_bytes());
            }
        }
        GgmlType::F16 => {
            for (o, v) in out.chunks_exact_mut(2).zip(x) {
                o.copy_from_slice(&scalar::f16_bits(*v).to_le_bytes());
            }
        }
        GgmlType::BF16 => {
            for (o, v) in out.chunks_exact_mut(2).zip(x) {
                o.copy_from_slice(&scalar::bf16_bits(*v).to_le_bytes());
            }
        }
        GgmlType::Q8_0 => q::<BlockQ8_0>(x, out),
        GgmlType::Q4_0 => q::<BlockQ4_0>(x, out),
        GgmlType::Q4_1 => q::<BlockQ4_1>(x, out),
        GgmlType::Q5_0 => q::<BlockQ5_0>(x, out),
        GgmlType::Q5_1 => q::<BlockQ5_1>(x, out),
        GgmlType::Q4K => q::<BlockQ4K>(x, out),
        GgmlType::Q5K => q::<BlockQ5K>(x, out),
        GgmlType::Q6K => q::<BlockQ6K>(x, out),
        other => unreachable!("{other} is rejected by check_supported"),
    }
}

fn dequantize_chunk(ty: GgmlType, bytes: &[u8], y: &mut [f32]) {
    use block::dequantize_into as d;
    match ty {
        GgmlType::F32 => {
            for (o, b) in y.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        GgmlType::F16 => {
            for (o, b) in y.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = scalar::f16_value(u16::from_le_bytes([b[0], b[1]]));
            }
        }
        GgmlType::BF16 => {
            for (o, b) in y.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = scalar::bf16_value(u16::from_le_bytes([b[0], b[1]]));
            }
        }
        GgmlType::Q8_0 => d::<BlockQ8_0>(bytes, y),
        GgmlType::Q4_0 => d::<BlockQ4_0>(bytes, y),
        GgmlType::Q4_1 => d::<BlockQ4_1>(bytes, y),
        GgmlType::Q5_0 => d::<BlockQ5_0>(bytes, y),
        GgmlType::Q5_1 => d::<BlockQ5_1>(bytes, y),
        GgmlType::Q4K => d::<BlockQ4K>(bytes, y),
        GgmlType::Q5K => d::<BlockQ5K>(bytes, y),
        GgmlType::Q6K => d::<BlockQ6K>(bytes, y),
        other => unreachable!("{other} is rejected by check_supported"),
    }
}

fn check_supported(ty: GgmlType) -> Result<(), GgufError> {
    if ty.is_supported() {
        Ok(())
    } else {
        let names: Vec<&str> = GgmlType::SUPPORTED.iter().map(|t| t.name()).collect();
        Err(ggml_err(format!("slmc cannot (de)quantize {ty}; supported types: {}", names.join(", "))))
    }
}

/// Encodes `values` (a whole number of blocks) as `ty`, exactly as ggml's reference quantizer
/// (`ggml_quantize_chunk` without an importance matrix) would. Non-finite values are refused:
/// ggml's quantizers would silently produce garbage for them.
pub fn quantize(ty: GgmlType, values: &[f32]) -> Result<Vec<u8>, GgufError> {
    let mut out = vec![0u8; encoded_len(ty, values.len())?];
    quantize_to(ty, values, &mut out)?;
    Ok(out)
}

/// Bytes needed to store `n` values as `ty` (an error if `n` is not a whole number of blocks).
pub fn encoded_len(ty: GgmlType, n: usize) -> Result<usize, GgufError> {
    ty.row_bytes(n as u64).map(|b| b as usize).ok_or_else(|| {
        ggml_err(format!("{n} values are not a whole number of {ty} blocks of {}", ty.block_size()))
    })
}

/// [`quantize`] into a caller-provided buffer of exactly [`encoded_len`] bytes.
pub fn quantize_to(ty: GgmlType, values: &[f32], out: &mut [u8]) -> Result<(), GgufError> {
    check_supported(ty)?;
    let need = encoded_len(ty, values.len())?;
    if out.len() != need {
        return Err(ggml_err(format!("{ty}: output buffer has {} bytes, {need} needed", out.len())));
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(ggml_err(format!("value {i} is {}; only finite values can be quantized", values[i])));
    }
    let out_chunk = CHUNK_VALUES / ty.block_size() * ty.type_size();
    values
        .par_chunks(CHUNK_VALUES)
        .zip(out.par_chunks_mut(out_chunk))
        .for_each(|(x, o)| quantize_chunk(ty, x, o));
    Ok(())
}

/// Decodes `bytes` of type `ty` to f32 (ggml's `dequantize_row_*`), for every supported type.
pub fn dequantize(ty: GgmlType, bytes: &[u8]) -> Result<Vec<f32>, GgufError> {
    check_supported(ty)?;
    if !bytes.len().is_multiple_of(ty.type_size()) {
        return Err(ggml_err(format!("{} bytes are not a whole number of {ty} blocks", bytes.len())));
    }
    let n = bytes.len() / ty.type_size() * ty.block_size();
    let mut y = vec![0.0f32; n];
    let in_chunk = CHUNK_VALUES / ty.block_size() * ty.type_size();
    bytes
        .par_chunks(in_chunk)
        .zip(y.par_chunks_mut(CHUNK_VALUES))
        .for_each(|(b, o)| dequantize_chunk(ty, b, o));
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_type_round_trips_through_the_public_api() {
        // 3 rows of 512: more than one chunk boundary for no type, but several blocks each.
        let x: Vec<f32> = (0..1536).map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0).collect();
        let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        for ty in GgmlType::SUPPORTED {
            let bytes = quantize(ty, &x).unwrap();
            assert_eq!(bytes.len() as u64, ty.row_bytes(1536).unwrap(), "{ty}");
            let y = dequantize(ty, &bytes).unwrap();
            let err = x.iter().zip(&y).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            // The worst format here (Q4_0) keeps every value within amax/8 (half of a 1/16 step range).
            assert!(err <= amax / 7.9, "{ty}: max error {err}");
            if ty == GgmlType::F32 {
                assert_eq!(x, y);
            }
        }
    }

    #[test]
    fn chunked_parallel_quantization_equals_block_by_block() {
        let n = CHUNK_VALUES * 2 + 512;
        let x: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.618).sin()).collect();
        let fast = quantize(GgmlType::Q6K, &x).unwrap();
        let mut slow = vec![0u8; fast.len()];
        block::quantize_into::<BlockQ6K>(&x, &mut slow);
        assert_eq!(fast, slow);
    }

    #[test]
    fn refuses_bad_input() {
        let e = quantize(GgmlType::Q4K, &[0.0; 64]).unwrap_err().to_string();
        assert!(e.contains("whole number of Q4_K blocks"), "{e}");
        let mut x = vec![0.0; 32];
        x[3] = f32::NAN;
        let e = quantize(GgmlType::Q8_0, &x).unwrap_err().to_string();
        assert!(e.contains("value 3 is NaN"), "{e}");
        let e = quantize(GgmlType::Q2K, &[0.0; 256]).unwrap_err().to_string();
        assert!(e.contains("cannot (de)quantize Q2_K"), "{e}");
        assert!(dequantize(GgmlType::Q8_0, &[0u8; 35]).is_err());
    }
}
