//! The uniform affine grid shared by RTN and GPTQ (docs/algorithms.md §2.1): per output row and input
//! group, a scale and an integer zero point, `q = clamp(round(w / scale) + zero, 0, maxq)` and
//! `ŵ = scale · (q − zero)`.

/// How weights are gridded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    /// Bits per code (2, 3, 4 or 8).
    pub bits: u8,
    /// Input columns per group; `None` = one group per output row (per channel).
    pub group_size: Option<usize>,
    /// Symmetric grid (zero point fixed at `2^(bits-1)`) or asymmetric (min/max).
    pub sym: bool,
    /// Round every scale to the nearest f16 before choosing codes, so the fake-quantized weights
    /// are exactly what a GPTQ checkpoint (f16 scales) or a GGUF block (f16 `d`) dequantizes to.
    /// Off only to compare against reference code that keeps f32 scales.
    pub f16_scales: bool,
}

/// Scale and zero point of one (row, group).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Step between adjacent codes.
    pub scale: f32,
    /// The code that dequantizes to 0.
    pub zero: u8,
}

impl Grid {
    /// The largest code, `2^bits − 1`.
    pub fn maxq(&self) -> u32 {
        (1u32 << self.bits) - 1
    }

    /// The zero point of a symmetric grid, `2^(bits-1)` (8 for 4-bit).
    pub fn sym_zero(&self) -> u32 {
        1 << (self.bits - 1)
    }

    /// Groups per row for `cols` input columns.
    pub fn groups(&self, cols: usize) -> usize {
        self.group_size.map_or(1, |g| cols.div_ceil(g))
    }

    /// The group of input column `col` (columns are grouped in natural order, also with
    /// act-order, whose groups are static).
    pub fn group_of(&self, col: usize) -> usize {
        self.group_size.map_or(0, |g| col / g)
    }

    /// The input columns of group `g` (all of them per channel).
    pub fn columns(&self, g: usize, cols: usize) -> std::ops::Range<usize> {
        match self.group_size {
            None => 0..cols,
            Some(gs) => g * gs..((g + 1) * gs).min(cols),
        }
    }

    /// Chooses scale and zero for `values` (one row's slice of a group). The range always holds
    /// 0; symmetric grids use `[-absmax, absmax]` even when every value has one sign; an
    /// all-zero slice gets the range `[-1, 1]`. Asymmetric zero points are kept ≥ 1 so that the
    /// GPTQ "v1" checkpoint convention (stored zero − 1) can always represent them.
    pub fn params(&self, values: impl Iterator<Item = f32>) -> Params {
        let maxq = self.maxq() as f32;
        let (mut lo, mut hi) = values.fold((0.0f32, 0.0f32), |(lo, hi), v| (lo.min(v), hi.max(v)));
        if self.sym {
            hi = hi.max(-lo);
            lo = -hi;
        }
        if lo == 0.0 && hi == 0.0 {
            (lo, hi) = (-1.0, 1.0);
        }
        let mut scale = (hi - lo) / maxq;
        if self.f16_scales {
            scale = half::f16::from_f32(scale).to_f32().max(half::f16::MIN_POSITIVE_SUBNORMAL.to_f32());
        }
        let zero = if self.sym {
            self.sym_zero()
        } else {
            ((-lo / scale).round_ties_even() as u32).clamp(1, self.maxq())
        };
        Params { scale, zero: zero as u8 }
    }

    /// The code of `w` (round half to even, as `torch.round`).
    pub fn code(&self, w: f32, p: Params) -> u8 {
        let q = (w / p.scale).round_ties_even() + f32::from(p.zero);
        q.clamp(0.0, self.maxq() as f32) as u8
    }

    /// The value a code stands for.
    pub fn dequant(code: u8, p: Params) -> f32 {
        p.scale * (f32::from(code) - f32::from(p.zero))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(bits: u8, sym: bool) -> Grid {
        Grid { bits, group_size: None, sym, f16_scales: false }
    }

    #[test]
    fn symmetric_4bit_uses_zero_8_and_clips_the_positive_extreme() {
        let g = grid(4, true);
        let p = g.params([-0.3f32, 0.75, 0.1].into_iter());
        assert_eq!(p.zero, 8);
        assert!((p.scale - 1.5 / 15.0).abs() < 1e-7);
        // +absmax is 7.5 steps above zero: rounds to 8 (ties to even) → code 16 → clamped to 15.
        assert_eq!(g.code(0.75, p), 15);
        assert_eq!(g.code(-0.75, p), 0);
        assert_eq!(Grid::dequant(g.code(0.0, p), p), 0.0);
    }

    #[test]
    fn asymmetric_grid_spans_min_to_max_and_holds_zero_exactly() {
        let g = grid(3, false);
        let p = g.params([-0.2f32, 0.5, 0.1].into_iter());
        assert!((p.scale - 0.1).abs() < 1e-7);
        assert_eq!(p.zero, 2);
        assert_eq!(g.code(-0.2, p), 0);
        assert_eq!(g.code(0.5, p), 7);
        assert_eq!(Grid::dequant(g.code(0.0, p), p), 0.0);
    }

    #[test]
    fn rounding_is_half_to_even_and_degenerate_rows_get_a_unit_range() {
        let g = grid(8, false);
        let p = Params { scale: 1.0, zero: 10 };
        assert_eq!(g.code(2.5, p), 12);
        assert_eq!(g.code(3.5, p), 14);
        let z = g.params([0.0f32; 4].into_iter());
        assert!((z.scale - 2.0 / 255.0).abs() < 1e-9);
        // An all-positive asymmetric slice keeps its zero point at 1, not 0 (GPTQ v1 packing).
        let pos = grid(4, false).params([0.5f32, 1.5].into_iter());
        assert_eq!(pos.zero, 1);
    }

    #[test]
    fn f16_scales_are_representable_in_f16() {
        let g = Grid { bits: 4, group_size: Some(32), sym: true, f16_scales: true };
        let p = g.params([0.123_456_7f32, -0.01].into_iter());
        assert_eq!(half::f16::from_f32(p.scale).to_f32(), p.scale);
        assert_eq!(g.groups(100), 4);
        assert_eq!(g.group_of(65), 2);
    }
}
