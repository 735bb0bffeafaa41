//! Scalar conversions and rounding exactly as ggml does them (`ggml-impl.h`, `ggml-quants.c`).

/// f32 → IEEE binary16 bits, round to nearest even, overflow to ±inf, NaN → `sign | 0x7E00`
/// (ggml's `GGML_FP32_TO_FP16`).
#[inline]
pub fn f16_bits(x: f32) -> u16 {
    if x.is_nan() {
        return ((x.to_bits() >> 16) as u16 & 0x8000) | 0x7E00;
    }
    half::f16::from_f32(x).to_bits()
}

/// IEEE binary16 bits → f32 (exact).
#[inline]
pub fn f16_value(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}

/// f32 → bfloat16 bits as ggml's `ggml_compute_fp32_to_bf16`: NaN → quiet NaN with the top bits
/// kept, everything else rounded to nearest even.
#[inline]
pub fn bf16_bits(x: f32) -> u16 {
    let u = x.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    (u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16) as u16
}

/// bfloat16 bits → f32 (exact).
#[inline]
pub fn bf16_value(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// ggml's `nearest_int`: adds 1.5·2²³ so the FPU rounds to nearest even, then reads the integer
/// out of the mantissa. Exact for |x| ≤ 4194303 (ggml asserts that bound; beyond it this returns a
/// meaningless value instead of aborting, and the callers clamp).
#[inline]
pub fn nearest_int(x: f32) -> i32 {
    let val = x + 12_582_912.0;
    let i = val.to_bits() as i32;
    (i & 0x007f_ffff) - 0x0040_0000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_half_to_even() {
        let cases = [(0.5, 0), (1.5, 2), (2.5, 2), (-0.5, 0), (-1.5, -2), (3.49, 3), (-7.51, -8)];
        for (x, want) in cases {
            assert_eq!(nearest_int(x), want, "{x}");
        }
        assert_eq!(nearest_int(4_194_303.0), 4_194_303);
    }

    #[test]
    fn half_conversions_match_ggml() {
        assert_eq!(f16_bits(1.0), 0x3C00);
        assert_eq!(f16_bits(65520.0), 0x7C00); // rounds to +inf
        assert_eq!(f16_bits(f32::NAN), 0x7E00);
        assert_eq!(f16_bits(-f32::NAN), 0xFE00);
        assert_eq!(f16_value(0x3555), 0.333_251_95);
        // bf16: round to nearest even on the dropped 16 bits.
        assert_eq!(bf16_bits(f32::from_bits(0x3F80_8000)), 0x3F80); // tie, even stays
        assert_eq!(bf16_bits(f32::from_bits(0x3F81_8000)), 0x3F82); // tie, odd rounds up
        assert_eq!(bf16_bits(f32::from_bits(0x3F80_8001)), 0x3F81);
        assert_eq!(bf16_bits(f32::from_bits(0x7F80_0001)), 0x7FC0); // NaN stays NaN
        assert_eq!(bf16_value(0x3F80), 1.0);
        assert_eq!(bf16_bits(f32::MAX), 0x7F80); // overflows to +inf like ggml
    }
}
