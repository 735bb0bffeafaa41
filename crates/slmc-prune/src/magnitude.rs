//! Magnitude pruning (docs/algorithms.md §5.1): the smallest `|w|` go, no data, no weight update.

use crate::PruneError;
use crate::mask::Mask;
use crate::rank::{kth_smallest, per_row};
use crate::target::{Sparsity, reference_count};

pub use slmc_config::prune_scope::MagnitudeScope;

/// The magnitude mask of `w` (row-major `[rows = out, cols = in]`). N:M targets always work per
/// row, on groups of `m` consecutive input columns (the `n` smallest `|w|` of each group; equal
/// magnitudes: the lower column goes first), whatever the scope. A ratio of 0 prunes nothing.
pub fn magnitude(
    w: &[f32],
    rows: usize,
    cols: usize,
    target: Sparsity,
    scope: MagnitudeScope,
) -> Result<Mask, PruneError> {
    target.check_weight(w.len(), rows, cols)?;
    if w.iter().any(|v| !v.is_finite()) {
        return Err(PruneError::Numerical("a non-finite weight".into()));
    }
    let scores: Vec<f32> = w.iter().map(|v| v.abs()).collect();
    match (target, scope) {
        (Sparsity::Unstructured(ratio), MagnitudeScope::Layer) => {
            let mut mask = Mask::new(rows, cols)?;
            if ratio > 0.0 && !scores.is_empty() {
                let thresh = kth_smallest(&scores, reference_count(scores.len(), ratio));
                for (k, _) in scores.iter().enumerate().filter(|(_, s)| **s <= thresh) {
                    mask.set(k / cols, k % cols);
                }
            }
            Ok(mask)
        }
        _ => Ok(per_row(&scores, rows, cols, target)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: [f32; 8] = [0.5, -0.1, 0.3, -0.2, 0.05, 0.9, -0.8, 0.7];

    #[test]
    fn row_scope_takes_the_smallest_of_each_row() {
        let m = magnitude(&W, 2, 4, Sparsity::Unstructured(0.5), MagnitudeScope::Row).unwrap();
        assert_eq!(m.to_pruned(), [false, true, false, true, true, false, false, true]);
    }

    #[test]
    fn layer_scope_uses_one_threshold_with_the_references_off_by_one() {
        // sorted |w|: .05 .1 .2 .3 .5 .7 .8 .9; int(8 · 0.5) = 4 -> thresh .5 -> 5 pruned
        let m = magnitude(&W, 2, 4, Sparsity::Unstructured(0.5), MagnitudeScope::Layer).unwrap();
        assert_eq!(m.to_pruned(), [true, true, true, true, true, false, false, false]);
        let none = magnitude(&W, 2, 4, Sparsity::Unstructured(0.0), MagnitudeScope::Layer).unwrap();
        assert_eq!(none.count(), 0);
    }

    #[test]
    fn n_m_ignores_the_scope() {
        for scope in [MagnitudeScope::Row, MagnitudeScope::Layer] {
            let m = magnitude(&W, 2, 4, Sparsity::NofM { n: 1, m: 2 }, scope).unwrap();
            assert_eq!(m.to_pruned(), [false, true, false, true, true, false, false, true]);
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        let t = Sparsity::Unstructured(0.5);
        assert!(magnitude(&W, 3, 3, t, MagnitudeScope::Row).is_err());
        assert!(magnitude(&[f32::NAN, 1.0], 1, 2, t, MagnitudeScope::Row).is_err());
        assert!(magnitude(&W, 2, 4, Sparsity::NofM { n: 2, m: 3 }, MagnitudeScope::Row).is_err());
    }
}
