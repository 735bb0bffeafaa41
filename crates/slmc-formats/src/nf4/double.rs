//! The second level (QLoRA's double quantization): the f32 absmax of every NF4 block stored as one
//! u8 code of the dynamic map, with an f32 absmax per `nested_blocksize` codes and an f32 offset.

use super::codebook::{dynamic_map, nearest_code};
use super::quantize::block_absmax;
use super::torch_mean::torch_mean;

/// Double-quantized block absmaxes, as bitsandbytes' `QuantState` with `state2` holds them.
///
/// The absmax of NF4 block `b` is `code_map[codes[b]] · nested_absmax[b / nested_blocksize] +
/// offset`, computed in f32 (that order, no fused multiply-add), as bitsandbytes dequantizes it.
#[derive(Debug, Clone, PartialEq)]
pub struct DoubleQuant {
    /// One code per NF4 block (`weight.absmax`, uint8).
    pub codes: Vec<u8>,
    /// The absmax of each `nested_blocksize` consecutive codes' inputs (`weight.nested_absmax`).
    pub nested_absmax: Vec<f32>,
    /// The mean of the NF4 blocks' absmaxes, subtracted before quantizing them
    /// (`nested_offset` in the quant-state JSON).
    pub offset: f32,
    /// The 256-entry map the codes index (`weight.nested_quant_map`), kept as stored: dequantizing
    /// uses these values, whatever produced them.
    pub code_map: Box<[f32; 256]>,
    /// Codes per nested absmax (bitsandbytes: 256).
    pub nested_blocksize: usize,
}

impl DoubleQuant {
    /// Quantizes block absmaxes as bitsandbytes 0.49.2 does on CPU: `offset = absmax.mean()`
    /// (torch's f32 mean, see [`super::torch_mean`]), then `quantize_blockwise(absmax − offset,
    /// blocksize = nested_blocksize)` with the dynamic map: per nested block, its absmax, then each
    /// value times `1/nested_absmax` to the nearest code (ties to the lower one); an all-zero
    /// nested block gets code 0.
    pub fn quantize(absmax: &[f32], nested_blocksize: usize) -> Self {
        let offset = torch_mean(absmax);
        let centred: Vec<f32> = absmax.iter().map(|&a| a - offset).collect();
        let nested_absmax = block_absmax(&centred, nested_blocksize);
        let code_map = Box::new(dynamic_map());
        let mut codes = Vec::with_capacity(centred.len());
        for (block, &m) in centred.chunks(nested_blocksize).zip(&nested_absmax) {
            if m == 0.0 {
                codes.extend(std::iter::repeat_n(0u8, block.len()));
                continue;
            }
            let inv = 1.0f32 / m;
            codes.extend(block.iter().map(|&v| nearest_code(&code_map, v * inv)));
        }
        Self { codes, nested_absmax, offset, code_map, nested_blocksize }
    }

    /// The absmax of NF4 block `block` (see the type's documentation). `block` must be below
    /// `codes.len()` and `nested_absmax` must cover it (checked by [`super::Nf4Tensor`]).
    pub fn absmax(&self, block: usize) -> f32 {
        self.code_map[self.codes[block] as usize] * self.nested_absmax[block / self.nested_blocksize]
            + self.offset
    }

    /// The absmax of every NF4 block.
    pub fn absmax_all(&self) -> Vec<f32> {
        (0..self.codes.len()).map(|b| self.absmax(b)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconstructs_absmax_closely_and_keeps_one_nested_absmax_per_256() {
        let absmax: Vec<f32> = (0..600).map(|i| 0.01 + (i % 37) as f32 * 0.003).collect();
        let dq = DoubleQuant::quantize(&absmax, 256);
        assert_eq!(dq.codes.len(), 600);
        assert_eq!(dq.nested_absmax.len(), 3);
        let back = dq.absmax_all();
        let worst = absmax.iter().zip(&back).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        // The dynamic map's steps near ±1 are about 1/256 of the nested absmax (≤ 0.06 here).
        assert!(worst < 0.06 / 100.0, "worst {worst}");
    }

    #[test]
    fn equal_absmaxes_give_a_zero_nested_block_that_decodes_to_the_offset() {
        let dq = DoubleQuant::quantize(&[0.5; 10], 256);
        assert_eq!(dq.offset, 0.5);
        assert_eq!(dq.nested_absmax, vec![0.0]);
        assert!(dq.codes.iter().all(|&c| c == 0));
        assert!(dq.absmax_all().iter().all(|&a| a == 0.5));
    }
}
