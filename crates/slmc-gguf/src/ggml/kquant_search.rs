//! The scale searches behind ggml's reference K-quant quantizers (`make_qkx2_quants` and
//! `make_qx_quants` in `ggml-quants.c`), ported operation for operation so that the f32 results
//! are bit-identical (same evaluation order, no fused multiply-add).

use super::scalar::nearest_int;

/// Parameters of the grid of inverse scales [`make_qkx2_quants`] tries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScaleGrid {
    /// First offset added to `nmax`.
    pub rmin: f32,
    /// Step between offsets.
    pub rdelta: f32,
    /// Number of steps (`nstep + 1` candidates are tried).
    pub nstep: i32,
}

/// Asymmetric (scale + min) quantization of one sub-block to levels `0..=nmax`, minimising the
/// weighted squared error over a grid of scales. Writes the levels to `l`, returns
/// `(scale, the_min)` where the values are `scale · l − the_min`.
pub(crate) fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    l: &mut [u8],
    grid: ScaleGrid,
) -> (f32, f32) {
    let n = x.len();
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l.fill(0);
        return (0.0, -min);
    }
    let nmax_f = nmax as f32;
    let mut iscale = nmax_f / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l[i] = q as u8;
        let diff = scale * q as f32 + min - x[i];
        best_error += weights[i] * (diff * diff);
    }
    if grid.nstep < 1 {
        return (scale, -min);
    }
    let mut laux = [0u8; 32];
    let laux = &mut laux[..n];
    for is in 0..=grid.nstep {
        iscale = (grid.rmin + grid.rdelta * is as f32 + nmax_f) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = q as u8;
            let w = weights[i];
            let qf = q as f32;
            sum_l += w * qf;
            sum_l2 += w * qf * qf;
            sum_xl += w * qf * x[i];
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                let diff = this_scale * laux[i] as f32 + this_min - x[i];
                cur_error += weights[i] * (diff * diff);
            }
            if cur_error < best_error {
                l.copy_from_slice(laux);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Symmetric quantization of one sub-block to levels `−nmax..nmax` (stored as `l + nmax`),
/// weighted by `x²` (`rmse_type = 1`, no importance weights), refining the scale over 18
/// candidates. Returns the scale (values are `scale · (L − nmax)`).
pub(crate) fn make_qx_quants<const N: usize>(nmax: i32, x: &[f32; N], l: &mut [i8; N]) -> f32 {
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax < super::kquants::GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let nmax_f = nmax as f32;
    // w = x² and w·x per element, computed once (the same f32 values ggml recomputes per candidate).
    // N is a compile-time constant so the loops unroll and the two sums run as parallel chains.
    let n = N;
    let mut w = [0.0f32; N];
    let mut wx = [0.0f32; N];
    for (i, &v) in x.iter().enumerate() {
        w[i] = v * v;
        wx[i] = w[i] * v;
    }
    let mut iscale = -nmax_f / max;
    let mut sumlx = 0.0f32;
    let mut suml2 = 0.0f32;
    for (i, &v) in x.iter().enumerate() {
        let q = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
        l[i] = (q + nmax) as i8;
        let qf = q as f32;
        sumlx += wx[i] * qf;
        suml2 += w[i] * qf * qf;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    let mut cand = [0i32; N];
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax_f + 0.1 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        // Levels first (a loop the compiler vectorises), then the sums in ggml's order.
        for i in 0..n {
            cand[i] = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        }
        for i in 0..n {
            let qf = cand[i] as f32;
            sumlx += wx[i] * qf;
            suml2 += w[i] * qf * qf;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for i in 0..n {
                l[i] = (nmax + cand[i]) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}
