//! Wanda (arXiv 2306.11695; docs/algorithms.md §5.2): score `|W_ij| · ||X_j||`, prune the lowest
//! scores of every output row, no weight update.
//!
//! The input norms come from the diagonal of the same Hessian SparseGPT uses
//! (`slmc_calib::Hessian::mean()`, `diag = ||X_j||² / tokens`): within one row every score is
//! multiplied by the same constant whatever the normalisation, so the mask is that of the
//! reference's `scaler_row` (`||X_j||²` averaged over sequences).

use crate::PruneError;
use crate::mask::Mask;
use crate::rank::per_row;
use crate::target::Sparsity;

/// The Wanda mask of `w` (row-major `[rows = out, cols = in]`) given `h_diag[j]`, the mean
/// squared input of column `j` (the Hessian's diagonal; any positive scale shared by all
/// columns). Scores are computed in f32 as the reference does, `|w| · sqrt(h_diag)`.
///
/// Unstructured: every row loses exactly `int(cols · ratio)` weights, its lowest scores by a
/// stable sort (equal scores: the lower column goes first). N:M: the `n` lowest scores of every
/// group of `m` consecutive input columns of every row, same tie rule.
pub fn wanda(
    w: &[f32],
    rows: usize,
    cols: usize,
    h_diag: &[f64],
    target: Sparsity,
) -> Result<Mask, PruneError> {
    target.check_weight(w.len(), rows, cols)?;
    if h_diag.len() != cols {
        return Err(PruneError::Input(format!("{} input norms for {cols} input columns", h_diag.len())));
    }
    if h_diag.iter().any(|v| !v.is_finite() || *v < 0.0) {
        return Err(PruneError::Numerical("an input norm that is negative or not finite".into()));
    }
    if w.iter().any(|v| !v.is_finite()) {
        return Err(PruneError::Numerical("a non-finite weight".into()));
    }
    let norms: Vec<f32> = h_diag.iter().map(|v| v.sqrt() as f32).collect();
    let scores: Vec<f32> = w.iter().enumerate().map(|(k, v)| v.abs() * norms[k % cols]).collect();
    Ok(per_row(&scores, rows, cols, target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_norms_change_the_choice_within_a_row() {
        let w = [1.0, 2.0, 3.0, 4.0];
        // column 3 never active: its large weight goes first; column 0's input is loud
        let h = [100.0, 1.0, 1.0, 0.0];
        let m = wanda(&w, 1, 4, &h, Sparsity::Unstructured(0.5)).unwrap();
        assert_eq!(m.to_pruned(), [false, true, false, true]);
        // scaling every norm by the same factor changes nothing
        let h2: Vec<f64> = h.iter().map(|v| v * 7.5).collect();
        assert_eq!(wanda(&w, 1, 4, &h2, Sparsity::Unstructured(0.5)).unwrap(), m);
        let nm = wanda(&w, 1, 4, &h, Sparsity::NofM { n: 1, m: 2 }).unwrap();
        assert_eq!(nm.to_pruned(), [false, true, false, true]);
    }

    #[test]
    fn bad_norms_are_refused() {
        let t = Sparsity::Unstructured(0.5);
        assert!(wanda(&[1.0, 2.0], 1, 2, &[1.0], t).unwrap_err().to_string().contains("1 input norms"));
        assert!(wanda(&[1.0, 2.0], 1, 2, &[1.0, -1.0], t).is_err());
        assert!(wanda(&[1.0, 2.0], 1, 2, &[1.0, f64::NAN], t).is_err());
    }
}
