//! SparseGPT (arXiv 2301.00774; docs/algorithms.md §5.3): GPTQ's column loop with pruning
//! instead of rounding. Each pruned weight's error is pushed onto the columns not yet visited
//! through the upper Cholesky factor `U` of the damped inverse Hessian (shared with GPTQ:
//! `slmc_calib::inverse_upper_factor`), 128 columns at a time with one GEMM per block, and the
//! mask of each block is chosen from the already error-compensated weights.
//!
//! The factorisation is f64; `U`, the weights and the column loop are f32, as in the reference
//! (llm-compressor `sgpt_sparsify.sparsify_weight`, bit-identical to IST-DASLab/sparsegpt
//! `fasterprune`), whose saliency is `w² / U_jj²`, not `w² / [H⁻¹]_jj`.

use crate::PruneError;
use crate::mask::Mask;
use crate::rank::{kth_smallest, lowest};
use crate::target::{Sparsity, reference_count};
use faer::{Accum, MatMut, MatRef, Par};

/// SparseGPT settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SparseGptOptions {
    /// Columns per block: the lazy-update batch and the unit an unstructured mask is chosen
    /// for (128). A multiple of `m` for N:M targets.
    pub block_size: usize,
    /// Dampening added to the Hessian diagonal, as a fraction of its mean ("percdamp", 0.01);
    /// raised by 0.01 after every Cholesky failure.
    pub damp: f64,
}

impl Default for SparseGptOptions {
    fn default() -> Self {
        Self { block_size: 128, damp: 0.01 }
    }
}

/// What happened while pruning one weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SparseGptStats {
    /// The dampening that made the Hessian factorisable (≥ the requested one).
    pub damp: f64,
    /// Cholesky failures before that.
    pub retries: u32,
    /// Input columns never active on the calibration data (their weights become 0).
    pub dead_columns: usize,
    /// SparseGPT's own loss estimate `Σ (w − q)² / (2 U_jj²)` (the reference's `loss`).
    pub loss: f64,
}

/// Prunes `w` (row-major `[rows = out, cols = in]`) to `target` with Hessian `h` (`[cols, cols]`,
/// f64, any positive scale, e.g. `slmc_calib::Hessian::mean()`), returning the error-compensated
/// weight (pruned entries exactly 0.0), its mask and statistics.
///
/// * Dead columns (`h_jj == 0`): `h_jj = 1` and the column's weights are set to 0.
/// * Unstructured: per block of `block_size` columns, scores `s = w² / U_jj²` of the block as it
///   stands after earlier blocks' updates; `thresh = sort(s)[int(rows · block · ratio)]` and every
///   `s <= thresh` is pruned, so a block loses at least one weight more than `ratio` asks (ties
///   add more) — the reference's rule. A ratio of 0 prunes nothing and returns `w` unchanged.
/// * N:M: at every `m`-th column of a block, the `n` lowest scores of the next `m` columns of
///   each row, from the weights updated so far (equal scores: the lower column goes first).
pub fn sparsegpt(
    w: &[f32],
    rows: usize,
    cols: usize,
    h: &[f64],
    target: Sparsity,
    opts: SparseGptOptions,
) -> Result<(Vec<f32>, Mask, SparseGptStats), PruneError> {
    target.check_weight(w.len(), rows, cols)?;
    let bs = opts.block_size;
    if bs == 0 {
        return Err(PruneError::Input("SparseGPT block size 0".into()));
    }
    if let Sparsity::NofM { n, m } = target
        && !bs.is_multiple_of(m)
    {
        return Err(PruneError::Input(format!(
            "SparseGPT block size {bs} is not a multiple of {m} ({n}:{m})"
        )));
    }
    if !(opts.damp.is_finite() && opts.damp >= 0.0) {
        return Err(PruneError::Input(format!(
            "SparseGPT dampening {} is not a non-negative number",
            opts.damp
        )));
    }
    if cols.checked_mul(cols) != Some(h.len()) {
        return Err(PruneError::Input(format!("a Hessian of {} values for {cols} input columns", h.len())));
    }
    if h.iter().any(|v| !v.is_finite()) || w.iter().any(|v| !v.is_finite()) {
        return Err(PruneError::Numerical("a non-finite weight or Hessian entry".into()));
    }

    if target == Sparsity::Unstructured(0.0) {
        let stats = SparseGptStats { damp: opts.damp, retries: 0, dead_columns: 0, loss: 0.0 };
        return Ok((w.to_vec(), Mask::new(rows, cols)?, stats));
    }

    // Dead input columns: never active, so any value is free; the reference zeroes them.
    let mut h = h.to_vec();
    let mut w = w.to_vec();
    let dead = slmc_calib::dead_columns(&mut h, cols);
    for &c in &dead {
        (0..rows).for_each(|r| w[r * cols + c] = 0.0);
    }
    let dead_columns = dead.len();
    let mut mask = Mask::new(rows, cols)?;
    let slmc_calib::InverseFactor { u, damp, retries } =
        slmc_calib::inverse_upper_factor(&h, cols, opts.damp)?;

    let mut loss = 0.0f64;
    for i1 in (0..cols).step_by(bs) {
        let i2 = (i1 + bs).min(cols);
        let nb = i2 - i1;
        let d: Vec<f32> = (i1..i2).map(|i| u[i * cols + i]).collect();
        if let Sparsity::Unstructured(ratio) = target {
            let scores: Vec<f32> =
                (0..rows * nb).map(|k| saliency(w[(k / nb) * cols + i1 + k % nb], d[k % nb])).collect();
            let thresh = kth_smallest(&scores, reference_count(scores.len(), ratio));
            for (k, _) in scores.iter().enumerate().filter(|(_, s)| **s <= thresh) {
                mask.set(k / nb, i1 + k % nb);
            }
        }
        // Rows are independent inside a block: walk each row's columns left to right.
        let mut err = vec![0f32; rows * nb];
        for r in 0..rows {
            let wr = &mut w[r * cols + i1..r * cols + i2];
            for i in 0..nb {
                if let Sparsity::NofM { n, m } = target
                    && i % m == 0
                {
                    let s: Vec<f32> = (i..i + m).map(|j| saliency(wr[j], d[j])).collect();
                    for j in lowest(&s, n) {
                        mask.set(r, i1 + i + j);
                    }
                }
                if mask.pruned(r, i1 + i) != Some(true) {
                    continue; // kept as it stands: no error to spread
                }
                let e = wr[i] / d[i];
                loss += f64::from(wr[i]) * f64::from(wr[i]) / (2.0 * f64::from(d[i]) * f64::from(d[i]));
                err[r * nb + i] = e;
                wr[i] = 0.0;
                let ui = &u[(i1 + i) * cols + i1..(i1 + i) * cols + i2];
                for (x, uij) in wr[i + 1..].iter_mut().zip(&ui[i + 1..]) {
                    *x -= e * uij;
                }
            }
        }
        // Lazy batch update of every later column: W[:, i2..] -= Err · U[i1..i2, i2..].
        if i2 < cols {
            let lhs = MatRef::from_row_major_slice(&err, rows, nb);
            let rhs = MatRef::from_row_major_slice(&u, cols, cols).submatrix(i1, i2, nb, cols - i2);
            let dst =
                MatMut::from_row_major_slice_mut(&mut w, rows, cols).submatrix_mut(0, i2, rows, cols - i2);
            faer::linalg::matmul::matmul(dst, Accum::Add, lhs, rhs, -1.0f32, Par::rayon(0));
        }
    }
    Ok((w, mask, SparseGptStats { damp, retries, dead_columns, loss }))
}

/// OBS saliency `w² / d²` in f32, in the reference's order of operations.
fn saliency(w: f32, d: f32) -> f32 {
    (w * w) / (d * d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small layer with correlated inputs: `(w, h)` with `h = XᵀX / T`.
    fn layer(rows: usize, cols: usize) -> (Vec<f32>, Vec<f64>) {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let w: Vec<f32> = (0..rows * cols).map(|_| next() as f32).collect();
        let tokens = 4 * cols;
        let x: Vec<f64> = (0..tokens * cols).map(|_| next()).collect();
        let mut h = vec![0.0; cols * cols];
        for t in 0..tokens {
            for i in 0..cols {
                for j in 0..cols {
                    h[i * cols + j] += (x[t * cols + i] + 0.5 * x[t * cols + (i + 1) % cols])
                        * (x[t * cols + j] + 0.5 * x[t * cols + (j + 1) % cols]);
                }
            }
        }
        h.iter_mut().for_each(|v| *v /= tokens as f64);
        (w, h)
    }

    #[test]
    fn pruned_entries_are_zero_and_kept_ones_are_compensated() {
        let (rows, cols) = (6, 24);
        let (w, h) = layer(rows, cols);
        let opts = SparseGptOptions { block_size: 8, damp: 0.01 };
        let (out, mask, stats) = sparsegpt(&w, rows, cols, &h, Sparsity::Unstructured(0.5), opts).unwrap();
        // three blocks of 6 x 8 = 48 scores: int(24) + 1 = 25 pruned in each (no ties)
        assert_eq!(mask.count(), 75);
        for r in 0..rows {
            for c in 0..cols {
                let p = mask.pruned(r, c).unwrap();
                assert_eq!(out[r * cols + c] == 0.0, p, "({r}, {c})");
            }
        }
        // the first column of the first block is never updated; later kept columns are
        let first_kept = (0..rows).find(|&r| !mask.pruned(r, 0).unwrap()).unwrap();
        assert_eq!(out[first_kept * cols], w[first_kept * cols]);
        assert!((0..rows * cols).any(|k| !mask.to_pruned()[k] && out[k] != w[k]));
        assert!(stats.loss > 0.0 && stats.retries == 0 && stats.dead_columns == 0);
    }

    #[test]
    fn n_m_mode_prunes_n_per_group_and_a_zero_ratio_prunes_nothing() {
        let (rows, cols) = (5, 16);
        let (w, h) = layer(rows, cols);
        let t = Sparsity::NofM { n: 2, m: 4 };
        let (out, mask, _) =
            sparsegpt(&w, rows, cols, &h, t, SparseGptOptions { block_size: 8, damp: 0.01 }).unwrap();
        assert!(mask.satisfies_n_m(2, 4) && mask.count() == rows * cols / 2);
        assert_eq!(out.iter().filter(|v| **v == 0.0).count(), rows * cols / 2);
        let (same, none, _) =
            sparsegpt(&w, rows, cols, &h, Sparsity::Unstructured(0.0), Default::default()).unwrap();
        assert_eq!((same, none.count()), (w, 0));
    }

    #[test]
    fn dead_columns_are_zeroed_and_counted() {
        let (rows, cols) = (4, 8);
        let (w, mut h) = layer(rows, cols);
        for k in 0..cols {
            h[3 * cols + k] = 0.0;
            h[k * cols + 3] = 0.0;
        }
        let (out, mask, stats) =
            sparsegpt(&w, rows, cols, &h, Sparsity::Unstructured(0.25), Default::default()).unwrap();
        assert_eq!(stats.dead_columns, 1);
        assert!((0..rows).all(|r| out[r * cols + 3] == 0.0 && mask.pruned(r, 3) == Some(true)));
    }

    #[test]
    fn bad_settings_are_refused() {
        let (w, h) = layer(2, 8);
        let t = Sparsity::NofM { n: 2, m: 4 };
        let o = |block_size, damp| SparseGptOptions { block_size, damp };
        assert!(sparsegpt(&w, 2, 8, &h, t, o(6, 0.01)).unwrap_err().to_string().contains("multiple of 4"));
        assert!(sparsegpt(&w, 2, 8, &h, t, o(0, 0.01)).is_err());
        assert!(sparsegpt(&w, 2, 8, &h, t, o(8, f64::NAN)).is_err());
        assert!(sparsegpt(&w, 2, 8, &h[1..], t, o(8, 0.01)).is_err());
        let mut hn = h.clone();
        hn[5] = f64::INFINITY;
        assert!(sparsegpt(&w, 2, 8, &hn, t, o(8, 0.01)).is_err());
        // a Hessian that stays indefinite whatever the dampening
        let neg: Vec<f64> = h.iter().map(|v| -v).collect();
        let err = sparsegpt(&w, 2, 8, &neg, t, o(8, 0.01)).unwrap_err();
        assert!(matches!(err, PruneError::Numerical(_)), "{err}");
    }
}
