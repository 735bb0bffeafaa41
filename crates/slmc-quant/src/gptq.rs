//! GPTQ (arXiv 2210.17323; algorithms.md §2): columns are quantized one after another and each
//! column's rounding error is pushed onto the columns not yet quantized through the upper
//! Cholesky factor of the inverse Hessian, 128 columns at a time with one GEMM per block.
//!
//! Weights are handled in burn's `[in, out]` layout (`wt`, one row per input column), where the
//! per-column work is contiguous. The Hessian is `[in, in]`, f64, any positive scale.

use crate::QuantError;
use crate::grid::{Grid, Params};
use crate::record::QuantRecord;
use faer::linalg::solvers::DenseSolveCore;
use faer::{Accum, Mat, MatMut, MatRef, Par, Side};

/// GPTQ settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GptqOptions {
    /// Dampening added to the diagonal, as a fraction of its mean (0.01).
    pub damp: f64,
    /// Columns per lazy batch update (128; a multiple of the group size).
    pub block_size: usize,
    /// Quantize columns in order of decreasing Hessian diagonal. Groups stay static (computed
    /// up front from the original weights in natural column order), so `g_idx` stays `c / gs`.
    pub act_order: bool,
}

impl Default for GptqOptions {
    fn default() -> Self {
        Self { damp: 0.01, block_size: 128, act_order: false }
    }
}

/// What happened while quantizing one weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GptqStats {
    /// The dampening that made the Hessian factorisable (≥ the requested one).
    pub damp: f64,
    /// Cholesky failures before that.
    pub retries: u32,
    /// Input columns never active on the calibration data (their weights become 0).
    pub dead_columns: usize,
    /// GPTQ's own loss estimate `Σ (w − q)² / (2 d²)`.
    pub loss: f64,
}

/// Parameters of row `r` over input columns `cols` of `wt` (`[cols_total, rows]`).
pub(crate) fn params_of(
    grid: &Grid,
    wt: &[f32],
    rows: usize,
    r: usize,
    cols: std::ops::Range<usize>,
) -> Params {
    grid.params(cols.map(|c| wt[c * rows + r]))
}

/// Upper factor `U` (row-major f32, `H⁻¹ = Uᵀ U`) of the damped Hessian, raising the
/// dampening by 0.01 of the mean diagonal after every Cholesky failure.
fn inverse_factor(h: &[f64], n: usize, damp: f64) -> Result<(Vec<f32>, f64, u32), QuantError> {
    let mean_diag = (0..n).map(|i| h[i * n + i]).sum::<f64>() / n as f64;
    let mut damp = damp;
    let mut retries = 0;
    while damp < 1.0 + 1e-9 {
        let m = Mat::<f64>::from_fn(n, n, |i, j| h[i * n + j] + if i == j { damp * mean_diag } else { 0.0 });
        let factored = m.llt(Side::Lower).ok().map(|l| l.inverse()).and_then(|inv| inv.llt(Side::Lower).ok());
        if let Some(l) = factored {
            let l = l.L();
            let u: Vec<f32> = (0..n * n).map(|k| l[(k % n, k / n)] as f32).collect();
            if u.iter().all(|v| v.is_finite()) && (0..n).all(|i| u[i * n + i] > 0.0) {
                return Ok((u, damp, retries));
            }
        }
        retries += 1;
        damp += 0.01;
    }
    Err(QuantError::Numerical(format!(
        "the Hessian stayed singular with dampening up to 1.0 (x mean diagonal {mean_diag:.3e}) after {retries} tries"
    )))
}

/// Quantizes `wt` (`[cols, rows]`: burn's `[in, out]` layout) with Hessian `h` (`[cols, cols]`).
pub fn gptq(
    wt: &[f32],
    rows: usize,
    cols: usize,
    h: &[f64],
    grid: Grid,
    opts: GptqOptions,
) -> Result<(QuantRecord, GptqStats), QuantError> {
    assert_eq!(wt.len(), rows * cols, "weight size");
    assert_eq!(h.len(), cols * cols, "Hessian size");
    let bs = opts.block_size.max(1);
    if let Some(gs) = grid.group_size
        && !bs.is_multiple_of(gs)
    {
        return Err(QuantError::Numerical(format!("block size {bs} is not a multiple of group size {gs}")));
    }
    let groups = grid.groups(cols);

    // Dead input columns: never active, so any value is free; the reference zeroes them.
    let mut h = h.to_vec();
    let mut w0 = wt.to_vec();
    let mut dead_columns = 0;
    for c in 0..cols {
        if h[c * cols + c] == 0.0 {
            h[c * cols + c] = 1.0;
            w0[c * rows..(c + 1) * rows].fill(0.0);
            dead_columns += 1;
        }
    }

    // Static parameters (per channel, or every group up front under act-order).
    let static_params =
        (grid.group_size.is_none() || opts.act_order).then(|| all_params(&grid, &w0, rows, cols));

    // Column order.
    let perm: Vec<usize> = if opts.act_order {
        let mut p: Vec<usize> = (0..cols).collect();
        p.sort_by(|&a, &b| h[b * cols + b].total_cmp(&h[a * cols + a]));
        p
    } else {
        (0..cols).collect()
    };
    let hp: Vec<f64> = if opts.act_order {
        (0..cols * cols).map(|k| h[perm[k / cols] * cols + perm[k % cols]]).collect()
    } else {
        h
    };
    let mut w: Vec<f32> = perm.iter().flat_map(|&c| w0[c * rows..(c + 1) * rows].iter().copied()).collect();
    let (u, damp, retries) = inverse_factor(&hp, cols, opts.damp)?;

    let mut codes = vec![0u8; rows * cols];
    let mut scales = vec![0f32; rows * groups];
    let mut zeros = vec![0u8; rows * groups];
    if let Some(p) = &static_params {
        for (k, q) in p.iter().enumerate() {
            scales[k] = q.scale;
            zeros[k] = q.zero;
        }
    }
    let mut current = vec![Params { scale: 1.0, zero: 0 }; rows];
    let mut loss = 0.0f64;
    for i1 in (0..cols).step_by(bs) {
        let i2 = (i1 + bs).min(cols);
        let nb = i2 - i1;
        let mut err = vec![0f32; nb * rows];
        for i in i1..i2 {
            let col = perm[i];
            let g = grid.group_of(col);
            if static_params.is_none()
                && let Some(gs) = grid.group_size
                && col.is_multiple_of(gs)
            {
                // The group's rows (all inside this block) already carry every earlier update.
                for (r, cur) in current.iter_mut().enumerate() {
                    *cur = params_of(&grid, &w, rows, r, grid.columns(g, cols));
                    scales[r * groups + g] = cur.scale;
                    zeros[r * groups + g] = cur.zero;
                }
            }
            let d = u[i * cols + i];
            let (done, rest) = w.split_at_mut((i + 1) * rows);
            let wi = &done[i * rows..];
            let ei = &mut err[(i - i1) * rows..(i - i1 + 1) * rows];
            for r in 0..rows {
                let p = match &static_params {
                    Some(sp) => sp[r * groups + g],
                    None => current[r],
                };
                let q = grid.code(wi[r], p);
                codes[r * cols + col] = q;
                let diff = wi[r] - Grid::dequant(q, p);
                ei[r] = diff / d;
                loss += f64::from(diff) * f64::from(diff) / (2.0 * f64::from(d) * f64::from(d));
            }
            // Intra-block update of the columns i+1..i2.
            for j in i + 1..i2 {
                let uij = u[i * cols + j];
                if uij != 0.0 {
                    let wj = &mut rest[(j - i - 1) * rows..(j - i) * rows];
                    for (x, e) in wj.iter_mut().zip(ei.iter()) {
                        *x -= uij * e;
                    }
                }
            }
        }
        // Lazy batch update of every later column: W[i2.., :] -= U[i1..i2, i2..]ᵀ · Err.
        if i2 < cols {
            let lhs =
                MatRef::from_row_major_slice(&u, cols, cols).submatrix(i1, i2, nb, cols - i2).transpose();
            let rhs = MatRef::from_row_major_slice(&err, nb, rows);
            let dst = MatMut::from_row_major_slice_mut(&mut w[i2 * rows..], cols - i2, rows);
            faer::linalg::matmul::matmul(dst, Accum::Add, lhs, rhs, -1.0f32, Par::rayon(0));
        }
    }
    let record = QuantRecord { grid, rows, cols, codes, scales, zeros };
    Ok((record, GptqStats { damp, retries, dead_columns, loss }))
}

/// Scale and zero of every (row, group), row-major `[rows, groups]`, from `wt` as it is.
fn all_params(grid: &Grid, wt: &[f32], rows: usize, cols: usize) -> Vec<Params> {
    let groups = grid.groups(cols);
    (0..rows * groups)
        .map(|k| params_of(grid, wt, rows, k / groups, grid.columns(k % groups, cols)))
        .collect()
}

/// Round-to-nearest on the same grid (no error feedback): the baseline GPTQ must beat.
pub fn rtn(wt: &[f32], rows: usize, cols: usize, grid: Grid) -> QuantRecord {
    let params = all_params(&grid, wt, rows, cols);
    let groups = grid.groups(cols);
    let codes = (0..rows * cols)
        .map(|k| {
            let (r, c) = (k / cols, k % cols);
            grid.code(wt[c * rows + r], params[r * groups + grid.group_of(c)])
        })
        .collect();
    let (scales, zeros) = params.iter().map(|p| (p.scale, p.zero)).unzip();
    QuantRecord { grid, rows, cols, codes, scales, zeros }
}

/// `tr(M H Mᵀ)` for `M` in `[in, out]` layout (`mt`, `[cols, rows]`): the output energy
/// `Σ ‖M x‖²` of the calibration inputs when `H = Σ x xᵀ` (or its mean).
pub fn output_energy(mt: &[f64], rows: usize, cols: usize, h: &[f64]) -> f64 {
    let hm = MatRef::from_row_major_slice(h, cols, cols);
    let x = MatRef::from_row_major_slice(mt, cols, rows);
    let mut hx = Mat::<f64>::zeros(cols, rows);
    faer::linalg::matmul::matmul(hx.as_mut(), Accum::Replace, hm, x, 1.0, Par::rayon(0));
    (0..cols).map(|c| (0..rows).map(|r| x[(c, r)] * hx[(c, r)]).sum::<f64>()).sum()
}

/// `tr(Δ H Δᵀ) / tr(W H Wᵀ)` with `Δ = W − Ŵ`: the output error of the quantized layer on the
/// calibration inputs relative to the output energy. Both weights in `[in, out]` layout.
pub fn relative_output_error(wt: &[f32], deq_t: &[f32], rows: usize, cols: usize, h: &[f64]) -> f64 {
    let w: Vec<f64> = wt.iter().map(|&v| f64::from(v)).collect();
    let delta: Vec<f64> = wt.iter().zip(deq_t).map(|(&a, &b)| f64::from(a) - f64::from(b)).collect();
    let energy = output_energy(&w, rows, cols, h);
    if energy > 0.0 { output_energy(&delta, rows, cols, h) / energy } else { 0.0 }
}
