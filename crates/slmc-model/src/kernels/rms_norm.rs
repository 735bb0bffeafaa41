//! RMSNorm over the last dimension in one pass each way, instead of burn's square / mean / add /
//! sqrt / recip / two products and their backward nodes:
//! `y = x · r · (w + offset)` with `r = 1 / √(mean(x²) + ε)` (`offset` 1 for Gemma's `1 + w`).
//! Backward, with `g = dy · (w + offset)` and `x̂ = x · r`:
//! `dx = r · (g − x̂ · mean(g · x̂))`, `dw = Σ_rows dy · x̂`.

use super::vmath::{self, dispatch};
use rayon::prelude::*;

/// Rows per rayon task.
const ROWS: usize = 64;

#[inline(always)]
fn forward_body(x: &[f32], w: &[f32], eps: f32, offset: f32, y: &mut [f32], inv: &mut [f32]) {
    let h = w.len();
    for ((xr, yr), r) in x.chunks_exact(h).zip(y.chunks_exact_mut(h)).zip(inv.iter_mut()) {
        let ms = vmath::dot(xr, xr) / h as f32;
        *r = 1.0 / (ms + eps).sqrt();
        for ((o, &v), &wv) in yr.iter_mut().zip(xr).zip(w) {
            *o = v * *r * (wv + offset);
        }
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn backward_body(
    x: &[f32],
    w: &[f32],
    offset: f32,
    inv: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    dw: &mut [f32],
    g: &mut [f32],
) {
    let h = w.len();
    for (((xr, dyr), dxr), &r) in
        x.chunks_exact(h).zip(dy.chunks_exact(h)).zip(dx.chunks_exact_mut(h)).zip(inv)
    {
        for (((gv, &d), &wv), (dwv, &v)) in g.iter_mut().zip(dyr).zip(w).zip(dw.iter_mut().zip(xr)) {
            *gv = d * (wv + offset);
            *dwv += d * v * r;
        }
        let mean = vmath::dot(g, xr) * r / h as f32;
        for ((o, &gv), &v) in dxr.iter_mut().zip(g.iter()).zip(xr) {
            *o = r * (gv - v * r * mean);
        }
    }
}

dispatch!(forward_rows, forward_body, (x: &[f32], w: &[f32], eps: f32, offset: f32, y: &mut [f32], inv: &mut [f32]));
dispatch!(backward_rows, backward_body, (x: &[f32], w: &[f32], offset: f32, inv: &[f32], dy: &[f32], dx: &mut [f32], dw: &mut [f32], g: &mut [f32]));

/// `y` and each row's `1 / rms` for `x` (rows of `w.len()` values).
pub fn forward(x: &[f32], w: &[f32], eps: f32, offset: f32) -> (Vec<f32>, Vec<f32>) {
    let h = w.len();
    assert!(h > 0 && x.len().is_multiple_of(h), "rms_norm: {} values are not rows of {h}", x.len());
    let mut y = vec![0.0f32; x.len()];
    let mut inv = vec![0.0f32; x.len() / h];
    y.par_chunks_mut(ROWS * h).zip(inv.par_chunks_mut(ROWS)).enumerate().for_each(|(i, (yc, ic))| {
        forward_rows(&x[i * ROWS * h..i * ROWS * h + yc.len()], w, eps, offset, yc, ic);
    });
    (y, inv)
}

/// `(dx, dw)` from the forward's input, weight, `1 / rms` per row and the output gradient. The
/// per-task partial sums of `dw` are added in task order, so the result does not depend on how
/// the pool scheduled them (training resumes bit-exactly).
pub fn backward(x: &[f32], w: &[f32], offset: f32, inv: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let h = w.len();
    let mut dx = vec![0.0f32; x.len()];
    let dw = dx
        .par_chunks_mut(ROWS * h)
        .enumerate()
        .map(|(i, dxc)| {
            let r = i * ROWS * h..i * ROWS * h + dxc.len();
            let rows = i * ROWS..i * ROWS + dxc.len() / h;
            let (mut dw, mut g) = (vec![0.0f32; h], vec![0.0f32; h]);
            backward_rows(&x[r.clone()], w, offset, &inv[rows], &dy[r], dxc, &mut dw, &mut g);
            dw
        })
        .collect::<Vec<_>>()
        .into_iter()
        .reduce(|mut a, b| {
            a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
            a
        })
        .unwrap_or_else(|| vec![0.0f32; h]);
    (dx, dw)
}
