//! The 256-value "K-quant" super-blocks Q4_K, Q5_K and Q6_K (`ggml-common.h`), with ggml's
//! reference quantizers (`quantize_row_q{4,5,6}_K_ref`, what `llama-quantize` runs without an
//! importance matrix).

use super::block::assert_block_size;
use super::kquant_search::{ScaleGrid, make_qkx2_quants, make_qx_quants};
use super::scalar::{f16_bits, f16_value, nearest_int};
use super::{Block, GgmlType};

/// Values per super-block (`QK_K`).
pub const QK_K: usize = 256;
/// Bytes of packed 6-bit scales and mins in Q4_K/Q5_K (`K_SCALE_SIZE`).
const K_SCALE_SIZE: usize = 12;
/// Below this a group counts as all zero (`GROUP_MAX_EPS`).
pub(crate) const GROUP_MAX_EPS: f32 = 1e-15;

/// Packs eight 6-bit scales and mins the way `get_scale_min_k4` unpacks them.
fn pack_scales_mins(ls: &[u8; 8], lm: &[u8; 8]) -> [u8; K_SCALE_SIZE] {
    let mut s = [0u8; K_SCALE_SIZE];
    for j in 0..8 {
        if j < 4 {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = (ls[j] & 0xF) | ((lm[j] & 0xF) << 4);
            s[j - 4] |= (ls[j] >> 4) << 6;
            s[j] |= (lm[j] >> 4) << 6;
        }
    }
    s
}

/// ggml's `get_scale_min_k4`: the 6-bit scale and min of sub-block `j`.
fn scale_min_k4(j: usize, q: &[u8; K_SCALE_SIZE]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// The shared first half of the Q4_K and Q5_K quantizers: per-sub-block scale/min search, 6-bit
/// scale packing, f16 super-scales, and requantisation with the rounded scales. Returns
/// `(d, dmin, scales, levels)`.
fn quantize_scale_min(x: &[f32], nmax: i32, grid: ScaleGrid) -> (u16, u16, [u8; K_SCALE_SIZE], [u8; QK_K]) {
    let mut l = [0u8; QK_K];
    let mut scales = [0.0f32; 8];
    let mut mins = [0.0f32; 8];
    let mut weights = [0.0f32; 32];
    let mut max_scale = 0.0f32;
    let mut max_min = 0.0f32;
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        let mut sum_x2 = 0.0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        for (w, &v) in weights.iter_mut().zip(xs) {
            *w = av_x + v.abs();
        }
        let (scale, min) = make_qkx2_quants(nmax, xs, &weights, &mut l[32 * j..32 * j + 32], grid);
        scales[j] = scale;
        mins[j] = min;
        if scale > max_scale {
            max_scale = scale;
        }
        if min > max_min {
            max_min = min;
        }
    }
    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    // ggml stores nearest_int's result in a uint8_t before clamping to 63.
    let ls: [u8; 8] = std::array::from_fn(|j| (nearest_int(inv_scale * scales[j]) as u8).min(63));
    let lm: [u8; 8] = std::array::from_fn(|j| (nearest_int(inv_min * mins[j]) as u8).min(63));
    let packed = pack_scales_mins(&ls, &lm);
    let d = f16_bits(max_scale / 63.0);
    let dmin = f16_bits(max_min / 63.0);
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, &packed);
        let dd = f16_value(d) * f32::from(sc);
        if dd == 0.0 {
            continue;
        }
        let dm = f16_value(dmin) * f32::from(m);
        for ii in 0..32 {
            l[32 * j + ii] = nearest_int((x[32 * j + ii] + dm) / dd).clamp(0, nmax) as u8;
        }
    }
    (d, dmin, packed, l)
}

/// `block_q4_K`: 8 sub-blocks of 32 with 6-bit scales and mins; value = `d·sc·q − dmin·m`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ4K {
    /// Super-block scale of the scales (f16 bits).
    pub d: u16,
    /// Super-block scale of the mins (f16 bits).
    pub dmin: u16,
    /// Packed 6-bit scales and mins.
    pub scales: [u8; K_SCALE_SIZE],
    /// Nibbles: byte `32c + l` holds element `64c + l` (low) and `64c + 32 + l` (high).
    pub qs: [u8; QK_K / 2],
}
assert_block_size!(BlockQ4K, 144);

impl Block for BlockQ4K {
    const TYPE: GgmlType = GgmlType::Q4K;
    const ELEMS: usize = QK_K;
    const BYTES: usize = 144;

    fn quantize(x: &[f32]) -> Self {
        let grid = ScaleGrid { rmin: -1.0, rdelta: 0.1, nstep: 20 };
        let (d, dmin, scales, l) = quantize_scale_min(x, 15, grid);
        let mut qs = [0u8; QK_K / 2];
        for c in 0..4 {
            for i in 0..32 {
                qs[32 * c + i] = l[64 * c + i] | (l[64 * c + 32 + i] << 4);
            }
        }
        Self { d, dmin, scales, qs }
    }

    fn dequantize(&self, y: &mut [f32]) {
        let d = f16_value(self.d);
        let min = f16_value(self.dmin);
        for c in 0..4 {
            let (sc1, m1) = scale_min_k4(2 * c, &self.scales);
            let (sc2, m2) = scale_min_k4(2 * c + 1, &self.scales);
            let (d1, m1) = (d * f32::from(sc1), min * f32::from(m1));
            let (d2, m2) = (d * f32::from(sc2), min * f32::from(m2));
            let q = &self.qs[32 * c..32 * c + 32];
            for i in 0..32 {
                y[64 * c + i] = d1 * f32::from(q[i] & 0xF) - m1;
                y[64 * c + 32 + i] = d2 * f32::from(q[i] >> 4) - m2;
            }
        }
    }

    fn write(&self, out: &mut [u8]) {
        out[0..2].copy_from_slice(&self.d.to_le_bytes());
        out[2..4].copy_from_slice(&self.dmin.to_le_bytes());
        out[4..16].copy_from_slice(&self.scales);
        out[16..144].copy_from_slice(&self.qs);
    }

    fn read(b: &[u8]) -> Self {
        Self {
            d: u16::from_le_bytes([b[0], b[1]]),
            dmin: u16::from_le_bytes([b[2], b[3]]),
            scales: b[4..16].try_into().expect("12 bytes"),
            qs: b[16..144].try_into().expect("128 bytes"),
        }
    }
}

/// `block_q5_K`: as Q4_K with a fifth bit per value in `qh`; value = `d·sc·(q + 16·h) − dmin·m`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ5K {
    /// Super-block scale of the scales (f16 bits).
    pub d: u16,
    /// Super-block scale of the mins (f16 bits).
    pub dmin: u16,
    /// Packed 6-bit scales and mins.
    pub scales: [u8; K_SCALE_SIZE],
    /// Fifth bits: bit `2c` of `qh[l]` belongs to element `64c + l`, bit `2c+1` to `64c + 32 + l`.
    pub qh: [u8; QK_K / 8],
    /// Low nibbles, laid out as in Q4_K.
    pub qs: [u8; QK_K / 2],
}
assert_block_size!(BlockQ5K, 176);

impl Block for BlockQ5K {
    const TYPE: GgmlType = GgmlType::Q5K;
    const ELEMS: usize = QK_K;
    const BYTES: usize = 176;

    fn quantize(x: &[f32]) -> Self {
        let grid = ScaleGrid { rmin: -0.5, rdelta: 0.1, nstep: 15 };
        let (d, dmin, scales, l) = quantize_scale_min(x, 31, grid);
        let mut qh = [0u8; QK_K / 8];
        let mut qs = [0u8; QK_K / 2];
        for c in 0..4 {
            let (m1, m2) = (1u8 << (2 * c), 2u8 << (2 * c));
            for j in 0..32 {
                let mut l1 = l[64 * c + j];
                if l1 > 15 {
                    l1 -= 16;
                    qh[j] |= m1;
                }
                let mut l2 = l[64 * c + j + 32];
                if l2 > 15 {
                    l2 -= 16;
                    qh[j] |= m2;
                }
                qs[32 * c + j] = l1 | (l2 << 4);
            }
        }
        Self { d, dmin, scales, qh, qs }
    }

    fn dequantize(&self, y: &mut [f32]) {
        let d = f16_value(self.d);
        let min = f16_value(self.dmin);
        for c in 0..4 {
            let (sc1, m1) = scale_min_k4(2 * c, &self.scales);
            let (sc2, m2) = scale_min_k4(2 * c + 1, &self.scales);
            let (d1, m1) = (d * f32::from(sc1), min * f32::from(m1));
            let (d2, m2) = (d * f32::from(sc2), min * f32::from(m2));
            let (u1, u2) = (1u8 << (2 * c), 2u8 << (2 * c));
            let q = &self.qs[32 * c..32 * c + 32];
            for i in 0..32 {
                let h1 = if self.qh[i] & u1 != 0 { 16 } else { 0 };
                let h2 = if self.qh[i] & u2 != 0 { 16 } else { 0 };
                y[64 * c + i] = d1 * f32::from((q[i] & 0xF) + h1) - m1;
                y[64 * c + 32 + i] = d2 * f32::from((q[i] >> 4) + h2) - m2;
            }
        }
    }

    fn write(&self, out: &mut [u8]) {
        out[0..2].copy_from_slice(&self.d.to_le_bytes());
        out[2..4].copy_from_slice(&self.dmin.to_le_bytes());
        out[4..16].copy_from_slice(&self.scales);
        out[16..48].copy_from_slice(&self.qh);
        out[48..176].copy_from_slice(&self.qs);
    }

    fn read(b: &[u8]) -> Self {
        Self {
            d: u16::from_le_bytes([b[0], b[1]]),
            dmin: u16::from_le_bytes([b[2], b[3]]),
            scales: b[4..16].try_into().expect("12 bytes"),
            qh: b[16..48].try_into().expect("32 bytes"),
            qs: b[48..176].try_into().expect("128 bytes"),
        }
    }
}

/// `block_q6_K`: 16 sub-blocks of 16 with signed 8-bit scales; value = `d·sc·(q − 32)`.
/// Note the f16 scale `d` is the **last** field.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ6K {
    /// Low 4 bits of the codes.
    pub ql: [u8; QK_K / 2],
    /// High 2 bits of the codes.
    pub qh: [u8; QK_K / 4],
    /// Sub-block scales.
    pub scales: [i8; QK_K / 16],
    /// Super-block scale (f16 bits).
    pub d: u16,
}
assert_block_size!(BlockQ6K, 210);

impl Block for BlockQ6K {
    const TYPE: GgmlType = GgmlType::Q6K;
    const ELEMS: usize = QK_K;
    const BYTES: usize = 210;

    fn quantize(x: &[f32]) -> Self {
        let mut l = [0i8; QK_K];
        let mut scales = [0.0f32; QK_K / 16];
        let mut max_scale = 0.0f32;
        let mut max_abs_scale = 0.0f32;
        for ib in 0..QK_K / 16 {
            let xs: &[f32; 16] = x[16 * ib..16 * ib + 16].try_into().expect("16 values");
            let ls: &mut [i8; 16] = (&mut l[16 * ib..16 * ib + 16]).try_into().expect("16 levels");
            let scale = make_qx_quants(32, xs, ls);
            scales[ib] = scale;
            if scale.abs() > max_abs_scale {
                max_abs_scale = scale.abs();
                max_scale = scale;
            }
        }
        if max_abs_scale < GROUP_MAX_EPS {
            return Self { ql: [0; QK_K / 2], qh: [0; QK_K / 4], scales: [0; QK_K / 16], d: f16_bits(0.0) };
        }
        let iscale = -128.0 / max_scale;
        let d = f16_bits(1.0 / iscale);
        let sc: [i8; QK_K / 16] = std::array::from_fn(|ib| nearest_int(iscale * scales[ib]).min(127) as i8);
        for j in 0..QK_K / 16 {
            let dd = f16_value(d) * f32::from(sc[j]);
            if dd == 0.0 {
                continue;
            }
            for ii in 0..16 {
                l[16 * j + ii] = (nearest_int(x[16 * j + ii] / dd).clamp(-32, 31) + 32) as i8;
            }
        }
        let mut ql = [0u8; QK_K / 2];
        let mut qh = [0u8; QK_K / 4];
        for half in 0..2 {
            let (lb, qlb, qhb) = (128 * half, 64 * half, 32 * half);
            for i in 0..32 {
                let q = |k: usize| l[lb + i + 32 * k] as u8;
                ql[qlb + i] = (q(0) & 0xF) | ((q(2) & 0xF) << 4);
                ql[qlb + i + 32] = (q(1) & 0xF) | ((q(3) & 0xF) << 4);
                qh[qhb + i] = (q(0) >> 4) | ((q(1) >> 4) << 2) | ((q(2) >> 4) << 4) | ((q(3) >> 4) << 6);
            }
        }
        Self { ql, qh, scales: sc, d }
    }

    fn dequantize(&self, y: &mut [f32]) {
        let d = f16_value(self.d);
        for half in 0..2 {
            let (ql, qh) = (&self.ql[64 * half..64 * half + 64], &self.qh[32 * half..32 * half + 32]);
            let sc = &self.scales[8 * half..8 * half + 8];
            let y = &mut y[128 * half..128 * half + 128];
            for i in 0..32 {
                let is = i / 16;
                let q1 = ((ql[i] & 0xF) | ((qh[i] & 3) << 4)) as i8 - 32;
                let q2 = ((ql[i + 32] & 0xF) | (((qh[i] >> 2) & 3) << 4)) as i8 - 32;
                let q3 = ((ql[i] >> 4) | (((qh[i] >> 4) & 3) << 4)) as i8 - 32;
                let q4 = ((ql[i + 32] >> 4) | (((qh[i] >> 6) & 3) << 4)) as i8 - 32;
                y[i] = d * f32::from(sc[is]) * f32::from(q1);
                y[i + 32] = d * f32::from(sc[is + 2]) * f32::from(q2);
                y[i + 64] = d * f32::from(sc[is + 4]) * f32::from(q3);
                y[i + 96] = d * f32::from(sc[is + 6]) * f32::from(q4);
            }
        }
    }

    fn write(&self, out: &mut [u8]) {
        out[0..128].copy_from_slice(&self.ql);
        out[128..192].copy_from_slice(&self.qh);
        for (o, &s) in out[192..208].iter_mut().zip(&self.scales) {
            *o = s as u8;
        }
        out[208..210].copy_from_slice(&self.d.to_le_bytes());
    }

    fn read(b: &[u8]) -> Self {
        Self {
            ql: b[0..128].try_into().expect("128 bytes"),
            qh: b[128..192].try_into().expect("64 bytes"),
            scales: std::array::from_fn(|i| b[192 + i] as i8),
            d: u16::from_le_bytes([b[208], b[209]]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random super-block with a few outliers.
    fn block(seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..QK_K)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                let u = (s as f32 / u32::MAX as f32) - 0.5;
                if i % 97 == 3 { u * 8.0 } else { u }
            })
            .collect()
    }

    fn rmse<B: Block>(x: &[f32]) -> f32 {
        let mut bytes = vec![0u8; B::BYTES];
        B::quantize(x).write(&mut bytes);
        let mut y = vec![0.0; QK_K];
        B::read(&bytes).dequantize(&mut y);
        let se: f32 = x.iter().zip(&y).map(|(a, b)| (a - b) * (a - b)).sum();
        (se / QK_K as f32).sqrt()
    }

    #[test]
    fn k_quants_round_trip_with_decreasing_error() {
        for seed in 0..8 {
            let x = block(seed);
            let rms = (x.iter().map(|v| v * v).sum::<f32>() / QK_K as f32).sqrt();
            let (e4, e5, e6) = (rmse::<BlockQ4K>(&x), rmse::<BlockQ5K>(&x), rmse::<BlockQ6K>(&x));
            // Typical relative RMSE of these formats on near-uniform data: ~7 %, ~3.5 %, ~2 %.
            assert!(e4 < 0.12 * rms, "q4_k {e4} vs rms {rms}");
            assert!(e5 < 0.06 * rms, "q5_k {e5} vs rms {rms}");
            assert!(e6 < 0.035 * rms, "q6_k {e6} vs rms {rms}");
            assert!(e6 < e5 && e5 < e4, "{e4} {e5} {e6}");
        }
    }

    #[test]
    fn zero_and_constant_blocks() {
        let zero = vec![0.0f32; QK_K];
        assert_eq!(rmse::<BlockQ4K>(&zero), 0.0);
        assert_eq!(rmse::<BlockQ5K>(&zero), 0.0);
        assert_eq!(rmse::<BlockQ6K>(&zero), 0.0);
        assert_eq!(BlockQ6K::quantize(&zero).d, 0);
        // A constant positive block: min clamps to 0, one level represents it closely.
        let c = vec![0.75f32; QK_K];
        assert!(rmse::<BlockQ4K>(&c) < 1e-3);
        assert!(rmse::<BlockQ6K>(&c) < 1e-3);
    }

    #[test]
    fn scale_packing_inverts() {
        let ls: [u8; 8] = [0, 1, 17, 63, 32, 45, 5, 62];
        let lm: [u8; 8] = [63, 2, 40, 0, 16, 31, 48, 9];
        let p = pack_scales_mins(&ls, &lm);
        for j in 0..8 {
            assert_eq!(scale_min_k4(j, &p), (ls[j], lm[j]), "{j}");
        }
    }
}
