//! OWL non-uniform layer sparsity (arXiv 2310.05175; docs/algorithms.md §5.5): blocks with more
//! outlier Wanda scores keep more weights. The formula is llm-compressor 0.14's
//! `SparsityModifierBase._infer_owl_layer_sparsity` (`modifiers/pruning/sparsegpt/sgpt_base.py`).

use crate::PruneError;
use crate::target::MAX_RATIO;

/// One linear module of a block, as OWL scores it.
#[derive(Debug, Clone, Copy)]
pub struct ScoredLinear<'a> {
    /// The weight, row-major `[rows = out, cols = in]`.
    pub w: &'a [f32],
    /// Output features.
    pub rows: usize,
    /// Input features.
    pub cols: usize,
    /// Per input column, a norm of its calibration inputs: `||X_j||`, e.g. `sqrt` of the
    /// Hessian diagonal (any positive scale shared by the block's linears; llm-compressor uses
    /// the sum over calibration batches of each batch's `||X_j||₂`, divided by 128).
    pub col_norms: &'a [f64],
}

/// The outlier ratio `D` of one block, in percent: with `z` the Wanda scores `|W_ij| · norm_j`
/// of all its linears together (computed in f32, as the reference does),
/// `D = 100 · #{z > m · mean(z)} / #z`. OWL's paper uses `m = 5`.
pub fn outlier_ratio(linears: &[ScoredLinear<'_>], m: f64) -> Result<f64, PruneError> {
    if !(m.is_finite() && m > 0.0) {
        return Err(PruneError::Input(format!("OWL outlier multiple {m} is not a positive number")));
    }
    let mut z = Vec::new();
    for (k, l) in linears.iter().enumerate() {
        if l.rows.checked_mul(l.cols) != Some(l.w.len()) || l.col_norms.len() != l.cols {
            return Err(PruneError::Input(format!(
                "OWL linear {k}: {} weights and {} norms for a {}x{} matrix",
                l.w.len(),
                l.col_norms.len(),
                l.rows,
                l.cols
            )));
        }
        if l.w.iter().any(|v| !v.is_finite()) || l.col_norms.iter().any(|v| !v.is_finite() || *v < 0.0) {
            return Err(PruneError::Numerical(format!("OWL linear {k}: a non-finite weight or bad norm")));
        }
        let norms: Vec<f32> = l.col_norms.iter().map(|&v| v as f32).collect();
        z.extend(l.w.iter().enumerate().map(|(i, v)| v.abs() * norms[i % l.cols]));
    }
    if z.is_empty() {
        return Err(PruneError::Input("OWL needs at least one weight per block".into()));
    }
    let mean = (z.iter().map(|&v| f64::from(v)).sum::<f64>() / z.len() as f64) as f32;
    let thresh = mean * m as f32;
    Ok(100.0 * z.iter().filter(|&&v| v > thresh).count() as f64 / z.len() as f64)
}

/// Per-block sparsities from the blocks' outlier ratios (see [`outlier_ratio`]), `target` the
/// mean sparsity and `lambda` the spread:
///
/// ```text
/// D̂_l = (D_l − min D) · (1 / (max D − min D) · λ · 2)        ∈ [0, 2λ]
/// s_l = 1 − (D̂_l − mean(D̂) + (1 − target))
/// ```
///
/// so the mean is `target`, the block with the most outliers gets the lowest sparsity and
/// `max s − min s = 2λ`. The values lie in `[target − 2λ, target + 2λ]`; they span
/// `[target − λ, target + λ]` exactly only when `mean(D̂) = λ`. When every ratio is equal
/// (including a single block) every block gets `target` (the reference divides by zero there).
/// A result outside `0..=0.95` is an error (lower `lambda`).
pub fn owl_layer_sparsity(ratios: &[f64], target: f64, lambda: f64) -> Result<Vec<f64>, PruneError> {
    if ratios.is_empty() || ratios.iter().any(|v| !v.is_finite()) {
        return Err(PruneError::Input("OWL needs one finite outlier ratio per block".into()));
    }
    if !(0.0..=MAX_RATIO).contains(&target) {
        return Err(PruneError::Input(format!("OWL target sparsity {target} is outside 0..={MAX_RATIO}")));
    }
    if !(lambda.is_finite() && lambda >= 0.0) {
        return Err(PruneError::Input(format!("OWL lambda {lambda} is not a non-negative number")));
    }
    let (min, max) =
        ratios.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    if max == min {
        return Ok(vec![target; ratios.len()]);
    }
    let scaled: Vec<f64> = ratios.iter().map(|&d| (d - min) * (1.0 / (max - min) * lambda * 2.0)).collect();
    let mean = scaled.iter().sum::<f64>() / scaled.len() as f64;
    let out: Vec<f64> = scaled.iter().map(|&d| 1.0 - (d - mean + (1.0 - target))).collect();
    if let Some((l, s)) = out.iter().enumerate().find(|(_, s)| !(0.0..=MAX_RATIO).contains(*s)) {
        return Err(PruneError::Input(format!(
            "OWL gives block {l} a sparsity of {s:.4}, outside 0..={MAX_RATIO}; lower lambda ({lambda})"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outlier_ratio_counts_scores_above_m_times_the_mean() {
        // z = [1, 1, 1, 1, 1, 1, 1, 1, 1, 21]: mean 3, 5 · 3 = 15 -> one outlier in ten
        let mut w = vec![1.0f32; 10];
        w[9] = 21.0;
        let l = ScoredLinear { w: &w, rows: 2, cols: 5, col_norms: &[1.0; 5] };
        assert_eq!(outlier_ratio(&[l], 5.0).unwrap(), 10.0);
        // norms scale every score alike: same ratio
        let l2 = ScoredLinear { col_norms: &[3.0; 5], ..l };
        assert_eq!(outlier_ratio(&[l2], 5.0).unwrap(), 10.0);
        assert!(outlier_ratio(&[ScoredLinear { cols: 4, ..l }], 5.0).is_err());
        assert!(outlier_ratio(&[], 5.0).is_err());
        assert!(outlier_ratio(&[l], 0.0).is_err());
    }

    #[test]
    fn sparsities_average_to_the_target_and_spread_two_lambda() {
        let s = owl_layer_sparsity(&[1.0, 3.0, 2.0, 10.0], 0.5, 0.08).unwrap();
        let mean = s.iter().sum::<f64>() / 4.0;
        assert!((mean - 0.5).abs() < 1e-12, "{mean}");
        let (lo, hi) = s.iter().fold((1.0f64, 0.0f64), |(a, b), &v| (a.min(v), b.max(v)));
        assert!((hi - lo - 0.16).abs() < 1e-12);
        assert_eq!(lo, s[3]); // the most outliers: the least pruned
        assert_eq!(hi, s[0]);
        assert_eq!(owl_layer_sparsity(&[4.0, 4.0], 0.5, 0.08).unwrap(), [0.5, 0.5]);
        assert!(owl_layer_sparsity(&[0.0, 1.0], 0.9, 0.2).unwrap_err().to_string().contains("lower lambda"));
        assert!(owl_layer_sparsity(&[], 0.5, 0.08).is_err());
        assert!(owl_layer_sparsity(&[1.0, 2.0], 0.5, -0.1).is_err());
    }
}
