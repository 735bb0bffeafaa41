//! The first level: NF4 codes with one f32 absmax per block, packed two codes a byte.

use super::codebook::{NF4, NF4_ZERO, nearest_nf4};

/// The f32 absolute maximum of each `blocksize` consecutive values (the last block may be short).
pub fn block_absmax(values: &[f32], blocksize: usize) -> Vec<f32> {
    values.chunks(blocksize).map(|b| b.iter().fold(0.0f32, |m, v| m.max(v.abs()))).collect()
}

/// NF4 codes of `values`, one per value, scaled by their block's absmax as bitsandbytes 0.49.2
/// does on CPU: `s = clamp(x · (1/absmax), −1, 1)` in f32 (a reciprocal, then a product), then
/// [`nearest_nf4`]. An all-zero block gets code 0 (see [`nearest_nf4`]).
pub fn nf4_codes(values: &[f32], absmax: &[f32], blocksize: usize) -> Vec<u8> {
    let mut codes = Vec::with_capacity(values.len());
    for (block, &m) in values.chunks(blocksize).zip(absmax) {
        let inv = 1.0f32 / m;
        codes.extend(block.iter().map(|&x| nearest_nf4((x * inv).clamp(-1.0, 1.0))));
    }
    codes
}

/// Packs codes two a byte, the first in the high nibble; an odd count is padded with the code of
/// 0.0 (7), as bitsandbytes 0.50 does (0.49.2 cannot quantize an odd count).
pub fn pack(codes: &[u8]) -> Vec<u8> {
    codes.chunks(2).map(|pair| (pair[0] << 4) | pair.get(1).copied().unwrap_or(NF4_ZERO)).collect()
}

/// The NF4 code of value `index` in packed bytes.
pub fn code_at(packed: &[u8], index: usize) -> u8 {
    let byte = packed[index / 2];
    if index.is_multiple_of(2) { byte >> 4 } else { byte & 0x0f }
}

/// Dequantizes values `start..end` (flat row-major indices) into `out`: `NF4[code] · absmax` in
/// f32, `absmax_of(block)` giving each block's absmax.
pub fn dequantize_range(
    packed: &[u8],
    blocksize: usize,
    start: usize,
    end: usize,
    absmax_of: impl Fn(usize) -> f32,
    out: &mut Vec<f32>,
) {
    let mut i = start;
    while i < end {
        let block = i / blocksize;
        let block_end = ((block + 1) * blocksize).min(end);
        let scale = absmax_of(block);
        out.extend((i..block_end).map(|j| NF4[code_at(packed, j) as usize] * scale));
        i = block_end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absmax_per_block_with_a_short_last_block() {
        let v = [1.0, -3.0, 2.0, 0.5, -0.25];
        assert_eq!(block_absmax(&v, 2), vec![3.0, 2.0, 0.25]);
    }

    #[test]
    fn codes_of_the_block_extremes_and_zero() {
        let v = [0.5, -0.5, 0.0, 0.25];
        let codes = nf4_codes(&v, &block_absmax(&v, 4), 4);
        assert_eq!(codes, vec![15, 0, 7, nearest_nf4(0.5)]);
        assert_eq!(nf4_codes(&[0.0, 0.0], &[0.0], 2), vec![0, 0], "bnb 0.49.2 codes a zero block as 0");
    }

    #[test]
    fn first_code_goes_in_the_high_nibble_and_odd_counts_pad_with_seven() {
        assert_eq!(pack(&[0x1, 0x2, 0xf]), vec![0x12, 0xf7]);
        let packed = [0x12u8, 0xf7];
        let codes: Vec<u8> = (0..4).map(|i| code_at(&packed, i)).collect();
        assert_eq!(codes, vec![1, 2, 15, 7]);
    }

    #[test]
    fn dequantizes_any_range_across_blocks() {
        let packed = pack(&[15, 0, 7, 15, 0, 15]);
        let scales = [2.0f32, 3.0, 5.0];
        let mut out = Vec::new();
        dequantize_range(&packed, 2, 1, 5, |b| scales[b], &mut out);
        assert_eq!(out, vec![-2.0, 0.0, 3.0, -5.0]);
    }
}
