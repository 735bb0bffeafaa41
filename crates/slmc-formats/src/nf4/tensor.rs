//! [`Nf4Tensor`]: a `[rows, cols]` matrix in NF4, packed as bitsandbytes packs it, with its
//! quantization state.

use super::double::DoubleQuant;
use super::quantize::{block_absmax, dequantize_range, nf4_codes, pack};
use crate::FormatError;
use slmc_config::FloatDtype;
use std::ops::Range;

/// How to quantize (bitsandbytes' `quantize_4bit` arguments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nf4Options {
    /// Values per absmax (bitsandbytes' `blocksize`): a power of two in 32…4096; QLoRA uses 64.
    pub blocksize: usize,
    /// Double quantization of the absmaxes (`compress_statistics`, transformers'
    /// `bnb_4bit_use_double_quant`), as QLoRA does.
    pub double_quant: bool,
    /// Absmax codes per nested absmax: a power of two in 64…4096; bitsandbytes always uses 256.
    pub nested_blocksize: usize,
    /// The dtype the weight had (quant-state `dtype`; bitsandbytes dequantizes to it). The values
    /// handed to [`Nf4Tensor::quantize`] are f32 either way: bitsandbytes scales bf16/f16 inputs in
    /// f32 too, so quantizing their f32 values gives the same codes.
    pub dtype: FloatDtype,
}

impl Default for Nf4Options {
    /// QLoRA's settings: blocksize 64, double quantization with 256 codes per nested absmax, f32.
    fn default() -> Self {
        Self { blocksize: 64, double_quant: true, nested_blocksize: 256, dtype: FloatDtype::F32 }
    }
}

/// The block absmaxes of an [`Nf4Tensor`].
#[derive(Debug, Clone, PartialEq)]
pub enum Absmax {
    /// One f32 per block (`compress_statistics = False`).
    Plain(Vec<f32>),
    /// Double-quantized (`compress_statistics = True`).
    Double(DoubleQuant),
}

impl Absmax {
    /// Number of blocks described.
    pub fn len(&self) -> usize {
        match self {
            Self::Plain(a) => a.len(),
            Self::Double(d) => d.codes.len(),
        }
    }

    /// Whether no block is described.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The absmax of one block.
    fn get(&self, block: usize) -> f32 {
        match self {
            Self::Plain(a) => a[block],
            Self::Double(d) => d.absmax(block),
        }
    }
}

/// A `[rows, cols]` matrix quantized to NF4, bit for bit what bitsandbytes 0.49.2's
/// `quantize_4bit(W, blocksize, compress_statistics, quant_type="nf4")` produces on CPU.
///
/// The matrix is flattened row-major and cut into blocks of `blocksize` consecutive values (a
/// block may span rows; the last may be short), each scaled by its absmax and coded to the
/// nearest NF4 level. Codes are packed two a byte, the first value in the high nibble.
#[derive(Debug, Clone, PartialEq)]
pub struct Nf4Tensor {
    rows: usize,
    cols: usize,
    blocksize: usize,
    dtype: FloatDtype,
    packed: Vec<u8>,
    absmax: Absmax,
}

fn nf4_error(reason: impl Into<String>) -> FormatError {
    FormatError::Nf4 { reason: reason.into() }
}

/// Checks a blocksize is a power of two in `lo..=hi`.
pub(crate) fn check_blocksize(what: &str, size: usize, lo: usize, hi: usize) -> Result<(), String> {
    if size.is_power_of_two() && (lo..=hi).contains(&size) {
        Ok(())
    } else {
        Err(format!("{what} {size} is not a power of two in {lo}..={hi}"))
    }
}

impl Nf4Tensor {
    /// Quantizes `values` (row-major, `shape = [rows, cols]`). An odd element count is padded with
    /// the code of 0.0 as bitsandbytes 0.50 does (0.49.2 fails on it). Errors: an empty shape, a
    /// length that disagrees with it, a non-finite value, an invalid blocksize.
    pub fn quantize(values: &[f32], shape: [usize; 2], opts: &Nf4Options) -> Result<Self, FormatError> {
        check_blocksize("blocksize", opts.blocksize, 32, 4096).map_err(nf4_error)?;
        if opts.double_quant {
            check_blocksize("nested blocksize", opts.nested_blocksize, 64, 4096).map_err(nf4_error)?;
        }
        let [rows, cols] = shape;
        let n = rows.checked_mul(cols).filter(|&n| n > 0);
        if n != Some(values.len()) {
            return Err(nf4_error(format!("shape {shape:?} does not hold {} values", values.len())));
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(nf4_error(format!("value {i} is {}; NF4 needs finite weights", values[i])));
        }
        let absmax = block_absmax(values, opts.blocksize);
        let packed = pack(&nf4_codes(values, &absmax, opts.blocksize));
        let absmax = if opts.double_quant {
            Absmax::Double(DoubleQuant::quantize(&absmax, opts.nested_blocksize))
        } else {
            Absmax::Plain(absmax)
        };
        Ok(Self { rows, cols, blocksize: opts.blocksize, dtype: opts.dtype, packed, absmax })
    }

    /// Assembles a tensor from stored parts, checking that they agree: `packed` holds
    /// `ceil(rows·cols / 2)` bytes, `absmax` one entry per block, a double-quantized state one
    /// nested absmax per `nested_blocksize` codes, valid blocksizes and finite scales.
    pub fn from_parts(
        shape: [usize; 2],
        blocksize: usize,
        dtype: FloatDtype,
        packed: Vec<u8>,
        absmax: Absmax,
    ) -> Result<Self, FormatError> {
        check_blocksize("blocksize", blocksize, 32, 4096).map_err(nf4_error)?;
        let [rows, cols] = shape;
        let n = rows
            .checked_mul(cols)
            .filter(|&n| n > 0)
            .ok_or_else(|| nf4_error(format!("shape {shape:?} is empty or too large")))?;
        if packed.len() != n.div_ceil(2) {
            return Err(nf4_error(format!(
                "{} packed bytes for shape {shape:?}; expected {} (two 4-bit codes a byte)",
                packed.len(),
                n.div_ceil(2)
            )));
        }
        let blocks = n.div_ceil(blocksize);
        if absmax.len() != blocks {
            return Err(nf4_error(format!(
                "{} absmax entries for {n} values in blocks of {blocksize}; expected {blocks}",
                absmax.len()
            )));
        }
        match &absmax {
            Absmax::Plain(a) => check_finite("absmax", a)?,
            Absmax::Double(d) => {
                check_blocksize("nested blocksize", d.nested_blocksize, 64, 4096).map_err(nf4_error)?;
                let nested = blocks.div_ceil(d.nested_blocksize);
                if d.nested_absmax.len() != nested {
                    return Err(nf4_error(format!(
                        "{} nested absmax entries for {blocks} absmax codes in blocks of {}; expected {nested}",
                        d.nested_absmax.len(),
                        d.nested_blocksize
                    )));
                }
                check_finite("nested absmax", &d.nested_absmax)?;
                check_finite("nested offset", &[d.offset])?;
                check_finite("nested code map", &d.code_map[..])?;
            }
        }
        Ok(Self { rows, cols, blocksize, dtype, packed, absmax })
    }

    /// `[rows, cols]`.
    pub fn shape(&self) -> [usize; 2] {
        [self.rows, self.cols]
    }

    /// Values per absmax.
    pub fn blocksize(&self) -> usize {
        self.blocksize
    }

    /// The dtype the weight had (bitsandbytes dequantizes to it).
    pub fn dtype(&self) -> FloatDtype {
        self.dtype
    }

    /// The packed codes, `ceil(rows·cols / 2)` bytes, first value in the high nibble.
    pub fn packed(&self) -> &[u8] {
        &self.packed
    }

    /// The block absmaxes as stored.
    pub fn absmax(&self) -> &Absmax {
        &self.absmax
    }

    /// The f32 absmax of every block (decoded from the double quantization if there is one).
    pub fn block_absmax(&self) -> Vec<f32> {
        (0..self.absmax.len()).map(|b| self.absmax.get(b)).collect()
    }

    /// All values, row-major: `NF4[code] · absmax` in f32.
    ///
    /// This is the correct dequantization, equal to bitsandbytes' pure-torch
    /// `_dequantize_4bit_impl` for f32 weights. Where bitsandbytes differs:
    /// * 0.49.2 and 0.50's native CPU `dequantize_4bit` takes a vectorised path on AVX512 CPUs when
    ///   `cols` is a multiple of 16, and that path assumes every row starts a block: for `cols`
    ///   not a multiple of `blocksize` (e.g. 64×96) it scales values with the wrong absmax (errors
    ///   of 0.13 on N(0, 0.1²) weights). Other widths, and CPUs without AVX512, are correct.
    /// * For bf16/f16 weights bitsandbytes returns these values rounded to that dtype (the native
    ///   kernel; its pure-torch fallback rounds the NF4 level to the dtype before multiplying).
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.rows * self.cols);
        let n = self.rows * self.cols;
        dequantize_range(&self.packed, self.blocksize, 0, n, |b| self.absmax.get(b), &mut out);
        out
    }

    /// Rows `rows` of the matrix, row-major, dequantized as [`Self::dequantize`] does, touching
    /// only the blocks they span (what a QLoRA forward needs one layer at a time).
    pub fn dequantize_rows(&self, rows: Range<usize>) -> Result<Vec<f32>, FormatError> {
        if rows.start > rows.end || rows.end > self.rows {
            return Err(nf4_error(format!("rows {rows:?} are outside 0..{}", self.rows)));
        }
        let mut out = Vec::with_capacity(rows.len() * self.cols);
        let (start, end) = (rows.start * self.cols, rows.end * self.cols);
        dequantize_range(&self.packed, self.blocksize, start, end, |b| self.absmax.get(b), &mut out);
        Ok(out)
    }
}

fn check_finite(what: &str, values: &[f32]) -> Result<(), FormatError> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(nf4_error(format!("{what} entry {i} is {}", values[i]))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(n: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0).collect()
    }

    #[test]
    fn rows_equal_the_matching_slice_of_the_whole_matrix() {
        for double_quant in [false, true] {
            let opts = Nf4Options { double_quant, ..Nf4Options::default() };
            let t = Nf4Tensor::quantize(&ramp(7 * 50), [7, 50], &opts).unwrap();
            let all = t.dequantize();
            for (a, b) in [(0, 7), (2, 5), (6, 7), (3, 3)] {
                assert_eq!(t.dequantize_rows(a..b).unwrap(), all[a * 50..b * 50]);
            }
            assert!(t.dequantize_rows(5..8).is_err());
        }
    }

    #[test]
    fn dequantize_is_close_to_the_input() {
        let v = ramp(64 * 10);
        let t = Nf4Tensor::quantize(&v, [10, 64], &Nf4Options::default()).unwrap();
        let worst = v.iter().zip(t.dequantize()).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        // Half the widest NF4 gap (0.30 · absmax 1.25), plus the absmax's own error.
        assert!(worst < 0.2, "worst {worst}");
    }

    #[test]
    fn odd_count_is_padded_with_the_zero_code() {
        let t = Nf4Tensor::quantize(&[1.0, -1.0, 0.5], [1, 3], &Nf4Options::default()).unwrap();
        assert_eq!(t.packed().len(), 2);
        assert_eq!(t.packed()[1] & 0x0f, 7);
        assert_eq!(t.dequantize().len(), 3);
    }

    #[test]
    fn bad_requests_are_errors() {
        let opts = Nf4Options::default();
        assert!(Nf4Tensor::quantize(&[1.0; 6], [2, 4], &opts).is_err());
        assert!(Nf4Tensor::quantize(&[], [0, 4], &opts).is_err());
        assert!(Nf4Tensor::quantize(&[1.0, f32::NAN], [1, 2], &opts).is_err());
        let bad = Nf4Options { blocksize: 48, ..opts };
        let err = Nf4Tensor::quantize(&[1.0; 2], [1, 2], &bad).unwrap_err().to_string();
        assert!(err.contains("blocksize 48"), "{err}");
        let bad = Nf4Options { nested_blocksize: 3, ..opts };
        assert!(Nf4Tensor::quantize(&[1.0; 2], [1, 2], &bad).is_err());
    }

    #[test]
    fn from_parts_refuses_inconsistent_parts() {
        let t = Nf4Tensor::quantize(&ramp(200), [2, 100], &Nf4Options::default()).unwrap();
        let Absmax::Double(dq) = t.absmax().clone() else { panic!("double quant expected") };
        let ok =
            Nf4Tensor::from_parts([2, 100], 64, FloatDtype::F32, t.packed().to_vec(), t.absmax().clone());
        assert_eq!(ok.unwrap(), t);
        let short = t.packed()[1..].to_vec();
        assert!(Nf4Tensor::from_parts([2, 100], 64, FloatDtype::F32, short, t.absmax().clone()).is_err());
        let mut fewer = dq.clone();
        fewer.codes.pop();
        let absmax = Absmax::Double(fewer);
        assert!(Nf4Tensor::from_parts([2, 100], 64, FloatDtype::F32, t.packed().to_vec(), absmax).is_err());
        let mut nested = dq;
        nested.nested_absmax.push(1.0);
        let absmax = Absmax::Double(nested);
        assert!(Nf4Tensor::from_parts([2, 100], 64, FloatDtype::F32, t.packed().to_vec(), absmax).is_err());
        let absmax = Absmax::Plain(vec![1.0, f32::INFINITY, 1.0, 1.0]);
        assert!(Nf4Tensor::from_parts([2, 100], 64, FloatDtype::F32, t.packed().to_vec(), absmax).is_err());
    }
}
