//! The 32-value block formats: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 (`ggml-common.h`), with ggml's
//! reference quantizers (`quantize_row_q*_ref` in `ggml-quants.c`).
//!
//! Rounding follows ggml exactly: Q8_0 rounds half away from zero (`roundf`), the 4/5-bit types
//! truncate `x·id + 8.5` (etc.) toward zero, and `id` is computed from the unrounded f32 scale;
//! only the stored scale is f16. Each type also has a `from_codes` constructor so that codes
//! chosen elsewhere (a GPTQ record, say) can be written as-is.

use super::block::assert_block_size;
use super::scalar::{f16_bits, f16_value};
use super::{Block, GgmlType};

const QK: usize = 32;

/// Largest |x| of a block, and the signed value that has it (first one wins ties).
fn signed_absmax(x: &[f32]) -> f32 {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

/// Minimum and maximum of a block, as ggml's Q4_1/Q5_1 loops compute them.
fn min_max(x: &[f32]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

/// Packs 32 4-bit codes: element `j` in the low nibble of byte `j`, element `j + 16` in the high.
fn pack_nibbles(q: &[u8; QK]) -> [u8; 16] {
    std::array::from_fn(|j| (q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4))
}

/// Collects the fifth bits of 32 codes: bit `j` of the u32 is bit 4 of code `j`.
fn high_bits(q: &[u8; QK]) -> [u8; 4] {
    let mut qh = 0u32;
    for (j, &v) in q.iter().enumerate() {
        qh |= u32::from((v & 0x10) >> 4) << j;
    }
    qh.to_le_bytes()
}

/// Unpacks the 32 codes of a Q4/Q5 block (the fifth bit from `qh` when given).
fn unpack(qs: &[u8; 16], qh: Option<[u8; 4]>) -> [u8; QK] {
    let qh = qh.map_or(0, u32::from_le_bytes);
    std::array::from_fn(|j| {
        let (nib, bit) = if j < 16 { (qs[j] & 0x0F, j) } else { (qs[j - 16] >> 4, j) };
        nib | ((((qh >> bit) & 1) as u8) << 4)
    })
}

/// `block_q8_0`: f16 scale + 32 signed bytes; value = `q · d`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ8_0 {
    /// Scale (f16 bits).
    pub d: u16,
    /// Codes.
    pub qs: [i8; QK],
}
assert_block_size!(BlockQ8_0, 34);

impl BlockQ8_0 {
    /// A block from a scale and codes chosen elsewhere.
    pub fn from_codes(d: f32, qs: [i8; QK]) -> Self {
        Self { d: f16_bits(d), qs }
    }
}

impl Block for BlockQ8_0 {
    const TYPE: GgmlType = GgmlType::Q8_0;
    const ELEMS: usize = QK;
    const BYTES: usize = 34;

    fn quantize(x: &[f32]) -> Self {
        let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        Self { d: f16_bits(d), qs: std::array::from_fn(|j| (x[j] * id).round() as i8) }
    }

    fn dequantize(&self, y: &mut [f32]) {
        let d = f16_value(self.d);
        for (o, &q) in y.iter_mut().zip(&self.qs) {
            *o = f32::from(q) * d;
        }
    }

    fn write(&self, out: &mut [u8]) {
        out[..2].copy_from_slice(&self.d.to_le_bytes());
        for (o, &q) in out[2..34].iter_mut().zip(&self.qs) {
            *o = q as u8;
        }
    }

    fn read(b: &[u8]) -> Self {
        Self { d: u16::from_le_bytes([b[0], b[1]]), qs: std::array::from_fn(|j| b[2 + j] as i8) }
    }
}

/// `block_q4_0`: f16 scale + 32 4-bit codes; value = `(q − 8) · d`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ4_0 {
    /// Scale (f16 bits).
    pub d: u16,
    /// Packed nibbles.
    pub qs: [u8; 16],
}
assert_block_size!(BlockQ4_0, 18);

impl BlockQ4_0 {
    /// A block from a scale and codes in `0..16` (value `(q − 8) · d`) chosen elsewhere.
    pub fn from_codes(d: f32, q: [u8; QK]) -> Self {
        Self { d: f16_bits(d), qs: pack_nibbles(&q) }
    }
}

impl Block for BlockQ4_0 {
    const TYPE: GgmlType = GgmlType::Q4_0;
    const ELEMS: usize = QK;
    const BYTES: usize = 18;

    fn quantize(x: &[f32]) -> Self {
        let d = signed_absmax(x) / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        // (int8_t)(x*id + 8.5f): the value is in [0.5, 16.5], where truncation through i32 is the same.
        let q: [u8; QK] = std::array::from_fn(|j| ((x[j] * id + 8.5) as i32).min(15) as u8);
        Self { d: f16_bits(d), qs: pack_nibbles(&q) }
    }

    fn dequantize(&self, y: &mut [f32]) {
        let d = f16_value(self.d);
        for (o, q) in y.iter_mut().zip(unpack(&self.qs, None)) {
            *o = (i32::from(q) - 8) as f32 * d;
        }
    }

    fn write(&self, out: &mut [u8]) {
        out[..2].copy_from_slice(&self.d.to_le_bytes());
        out[2..18].copy_from_slice(&self.qs);
    }

    fn read(b: &[u8]) -> Self {
        Self { d: u16::from_le_bytes([b[0], b[1]]), qs: b[2..18].try_into().expect("16 bytes") }
    }
}

/// `block_q4_1`: f16 scale and minimum + 32 4-bit codes; value = `q · d + m`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ4_1 {
    /// Scale (f16 bits).
    pub d: u16,
    /// Minimum (f16 bits).
    pub m: u16,
    /// Packed nibbles.
    pub qs: [u8; 16],
}
assert_block_size!(BlockQ4_1, 20);

impl BlockQ4_1 {
    /// A block from a scale, a minimum and codes in `0..16` chosen elsewhere.
    pub fn from_codes(d: f32, m: f32, q: [u8; QK]) -> Self {
        Self { d: f16_bits(d), m: f16_bits(m), qs: pack_nibbles(&q) }
    }
}

impl Block for BlockQ4_1 {
    const TYPE: GgmlType = GgmlType::Q4_1;
    const ELEMS: usize = QK;
    const BYTES: usize = 20;

    fn quantize(x: &[f32]) -> Self {
        let (min, max) = min_max(x);
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let q: [u8; QK] = std::array::from_fn(|j| (((x[j] - min) * id + 0.5) as i32).min(15) as u8);
        Self { d: f16_bits(d), m: f16_bits(min), qs: pack_nibbles(&q) }
    }

    fn dequantize(&self, y: &mut [f32]) {
        let (d, m) = (f16_value(self.d), f16_value(self.m));
        for (o, q) in y.iter_mut().zip(unpack(&self.qs, None)) {
            *o = f32::from(q) * d + m;
        }
    }

    fn write(&self, out: &mut [u8]) {
        out[..2].copy_from_slice(&self.d.to_le_bytes());
        out[2..4].copy_from_slice(&self.m.to_le_bytes());
        out[4..20].copy_from_slice(&self.qs);
    }

    fn read(b: &[u8]) -> Self {
        Self {
            d: u16::from_le_bytes([b[0], b[1]]),
            m: u16::from_le_bytes([b[2], b[3]]),
            qs: b[4..20].try_into().expect("16 bytes"),
        }
    }
}

/// `block_q5_0`: f16 scale + 32 5-bit codes; value = `(q − 16) · d`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ5_0 {
    /// Scale (f16 bits).
    pub d: u16,
    /// Fifth bits (a little-endian u32: bit `j` belongs to element `j`).
    pub qh: [u8; 4],
    /// Packed low nibbles.
    pub qs: [u8; 16],
}
assert_block_size!(BlockQ5_0, 22);

impl BlockQ5_0 {
    /// A block from a scale and codes in `0..32` (value `(q − 16) · d`) chosen elsewhere.
    pub fn from_codes(d: f32, q: [u8; QK]) -> Self {
        Self { d: f16_bits(d), qh: high_bits(&q), qs: pack_nibbles(&q) }
    }
}

impl Block for BlockQ5_0 {
    const TYPE: GgmlType = GgmlType::Q5_0;
    const ELEMS: usize = QK;
    const BYTES: usize = 22;

    fn quantize(x: &[f32]) -> Self {
        let d = signed_absmax(x) / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let q: [u8; QK] = std::array::from_fn(|j| ((x[j] * id + 16.5) as i32).min(31) as u8);
        Self::from_codes(d, q)
    }

    fn dequantize(&self, y: &mut [f32]) {
        let d = f16_value(self.d);
        for (o, q) in y.iter_mut().zip(unpack(&self.qs, Some(self.qh))) {
            *o = (i32::from(q) - 16) as f32 * d;
        }
    }

    fn write(&self, out: &mut [u8]) {
        out[..2].copy_from_slice(&self.d.to_le_bytes());
        out[2..6].copy_from_slice(&self.qh);
        out[6..22].copy_from_slice(&self.qs);
    }

    fn read(b: &[u8]) -> Self {
        Self {
            d: u16::from_le_bytes([b[0], b[1]]),
            qh: b[2..6].try_into().expect("4 bytes"),
            qs: b[6..22].try_into().expect("16 bytes"),
        }
    }
}

/// `block_q5_1`: f16 scale and minimum + 32 5-bit codes; value = `q · d + m`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ5_1 {
    /// Scale (f16 bits).
    pub d: u16,
    /// Minimum (f16 bits).
    pub m: u16,
    /// Fifth bits (a little-endian u32: bit `j` belongs to element `j`).
    pub qh: [u8; 4],
    /// Packed low nibbles.
    pub qs: [u8; 16],
}
assert_block_size!(BlockQ5_1, 24);

impl BlockQ5_1 {
    /// A block from a scale, a minimum and codes in `0..32` chosen elsewhere.
    pub fn from_codes(d: f32, m: f32, q: [u8; QK]) -> Self {
        Self { d: f16_bits(d), m: f16_bits(m), qh: high_bits(&q), qs: pack_nibbles(&q) }
    }
}

impl Block for BlockQ5_1 {
    const TYPE: GgmlType = GgmlType::Q5_1;
    const ELEMS: usize = QK;
    const BYTES: usize = 24;

    fn quantize(x: &[f32]) -> Self {
        let (min, max) = min_max(x);
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        // ggml casts to uint8_t without clamping; the value never exceeds 31.5.
        let q: [u8; QK] = std::array::from_fn(|j| ((x[j] - min) * id + 0.5) as u8);
        Self::from_codes(d, min, q)
    }

    fn dequantize(&self, y: &mut [f32]) {
        let (d, m) = (f16_value(self.d), f16_value(self.m));
        for (o, q) in y.iter_mut().zip(unpack(&self.qs, Some(self.qh))) {
            *o = f32::from(q) * d + m;
        }
    }

    fn write(&self, out: &mut [u8]) {
        out[..2].copy_from_slice(&self.d.to_le_bytes());
        out[2..4].copy_from_slice(&self.m.to_le_bytes());
        out[4..8].copy_from_slice(&self.qh);
        out[8..24].copy_from_slice(&self.qs);
    }

    fn read(b: &[u8]) -> Self {
        Self {
            d: u16::from_le_bytes([b[0], b[1]]),
            m: u16::from_le_bytes([b[2], b[3]]),
            qh: b[4..8].try_into().expect("4 bytes"),
            qs: b[8..24].try_into().expect("16 bytes"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp() -> [f32; QK] {
        std::array::from_fn(|i| (i as f32 - 12.3) * 0.173)
    }

    fn round_trip<B: Block>(x: &[f32]) -> Vec<f32> {
        let mut bytes = vec![0u8; B::BYTES];
        B::quantize(x).write(&mut bytes);
        let mut y = vec![0.0; B::ELEMS];
        B::read(&bytes).dequantize(&mut y);
        y
    }

    fn max_err(x: &[f32], y: &[f32]) -> f32 {
        x.iter().zip(y).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn each_block_round_trips_within_its_step() {
        let x = ramp();
        let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let range = x.iter().cloned().fold(f32::MIN, f32::max) - x.iter().cloned().fold(f32::MAX, f32::min);
        // Half a quantization step, plus f16 rounding of the scale.
        let slack = 1.002;
        assert!(max_err(&x, &round_trip::<BlockQ8_0>(&x)) <= amax / 127.0 / 2.0 * slack);
        assert!(max_err(&x, &round_trip::<BlockQ4_0>(&x)) <= amax / 8.0 * slack);
        assert!(max_err(&x, &round_trip::<BlockQ5_0>(&x)) <= amax / 16.0 * slack);
        assert!(max_err(&x, &round_trip::<BlockQ4_1>(&x)) <= range / 15.0 / 2.0 * 1.01 + 1e-3);
        assert!(max_err(&x, &round_trip::<BlockQ5_1>(&x)) <= range / 31.0 / 2.0 * 1.01 + 1e-3);
    }

    #[test]
    fn zero_block_encodes_zero() {
        let x = [0.0f32; QK];
        for y in [
            round_trip::<BlockQ8_0>(&x),
            round_trip::<BlockQ4_0>(&x),
            round_trip::<BlockQ4_1>(&x),
            round_trip::<BlockQ5_0>(&x),
            round_trip::<BlockQ5_1>(&x),
        ] {
            assert!(y.iter().all(|v| *v == 0.0));
        }
    }

    #[test]
    fn codes_survive_packing() {
        let q: [u8; QK] = std::array::from_fn(|i| (i * 7 % 32) as u8);
        let b = BlockQ5_1::from_codes(0.5, -3.0, q);
        let mut y = [0.0; QK];
        b.dequantize(&mut y);
        for i in 0..QK {
            assert_eq!(y[i], f32::from(q[i]) * 0.5 - 3.0);
        }
        let b = BlockQ4_0::from_codes(0.25, std::array::from_fn(|i| q[i] & 15));
        b.dequantize(&mut y);
        for i in 0..QK {
            assert_eq!(y[i], (i32::from(q[i] & 15) - 8) as f32 * 0.25);
        }
    }

    #[test]
    fn q4_0_uses_the_signed_extreme() {
        // The largest magnitude is negative, so d is positive and that element maps to code 0.
        let mut x = [0.1f32; QK];
        x[5] = -2.0;
        let b = BlockQ4_0::quantize(&x);
        assert_eq!(f16_value(b.d), 0.25);
        assert_eq!(b.qs[5] & 0x0F, 0);
    }
}
