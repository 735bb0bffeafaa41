//! GPTQ (arXiv 2210.17323; docs/algorithms.md §3): columns are quantized one after another and each
//! column's rounding error is pushed onto the columns not yet quantized through the upper
//! Cholesky factor of the inverse Hessian, 128 columns at a time with one GEMM per block.
//!
//! Weights are handled in burn's `[in, out]` layout (`wt`, one row per input column), where the
//! per-column work is contiguous. The Hessian is `[in, in]`, f64, any positive scale.

use crate::QuantError;
use crate::grid::{Grid, Params};
use crate::record::QuantRecord;
use faer::{Accum, MatMut, MatRef, Par};

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

/// Quantizes `wt` (`[cols, rows]`: burn's `[in, out]` layout) with Hessian `h` (`[cols, cols]`).
pub fn gptq(
    wt: &[f32],
    rows: usize,
    cols: usize,
    h: &[f64],
    grid: Grid,
    opts: GptqOptions,
) -> Result<(QuantRecord, GptqStats), QuantError> {
    gptq_masked(wt, rows, cols, h, grid, opts, None)
}

/// [`gptq`] keeping a sparsity mask (llm-compressor's `preserve_sparsity_mask`): where `keep`
/// (row-major `[rows, cols]`) is false the code is the zero point, so the weight dequantizes to
/// exactly 0, and its rounding error is compensated by the columns after it like any other.
pub fn gptq_masked(
    wt: &[f32],
    rows: usize,
    cols: usize,
    h: &[f64],
    grid: Grid,
    opts: GptqOptions,
    keep: Option<&[bool]>,
) -> Result<(QuantRecord, GptqStats), QuantError> {
    assert_eq!(wt.len(), rows * cols, "weight size");
    if let Some(k) = keep
        && k.len() != rows * cols
    {
        return Err(QuantError::Input(format!(
            "sparsity mask of {} entries for a {rows}x{cols} weight",
            k.len()
        )));
    }
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
    let dead = slmc_calib::dead_columns(&mut h, cols);
    for &c in &dead {
        w0[c * rows..(c + 1) * rows].fill(0.0);
    }
    let dead_columns = dead.len();

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
    let slmc_calib::InverseFactor { u, damp, retries } =
        slmc_calib::inverse_upper_factor(&hp, cols, opts.damp)?;

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
                let q = match keep {
                    Some(k) if !k[r * cols + col] => p.zero,
                    _ => grid.code(wi[r], p),
                };
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

pub use slmc_calib::{output_energy, relative_output_error};
