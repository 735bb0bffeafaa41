//! Choosing the lowest scores, with the references' rules: a stable sort (equal scores → the
//! lower column goes first, as `torch.sort(stable=True)` / `np.argsort(kind="stable")`), and the
//! value at a sorted position for `<=` thresholds. Scores are finite and non-negative.

use crate::mask::Mask;
use crate::target::{Sparsity, reference_count};

/// Positions of the `k` lowest of `scores`, lowest first; ties go to the lower position.
pub(crate) fn lowest(scores: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    idx.truncate(k);
    idx
}

/// `sort(scores)[k]`: the threshold of the references' `score <= thresh` rules (`k < len`).
pub(crate) fn kth_smallest(scores: &[f32], k: usize) -> f32 {
    let mut v = scores.to_vec();
    *v.select_nth_unstable_by(k, f32::total_cmp).1
}

/// The per-output-row rule of Wanda (and magnitude per row) on a row-major `[rows, cols]` score
/// matrix: unstructured, the `int(cols · ratio)` lowest of every row; N:M, the `n` lowest of every
/// group of `m` columns. The target was checked against the shape.
pub(crate) fn per_row(scores: &[f32], rows: usize, cols: usize, target: Sparsity) -> Mask {
    let mut mask = Mask::new(rows, cols).expect("a mask smaller than its scores");
    for r in 0..rows {
        let row = &scores[r * cols..(r + 1) * cols];
        match target {
            Sparsity::Unstructured(ratio) => {
                for c in lowest(row, reference_count(cols, ratio)) {
                    mask.set(r, c);
                }
            }
            Sparsity::NofM { n, m } => {
                for g in (0..cols).step_by(m) {
                    for c in lowest(&row[g..g + m], n) {
                        mask.set(r, g + c);
                    }
                }
            }
        }
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_go_to_the_lower_position() {
        assert_eq!(lowest(&[3.0, 1.0, 2.0, 1.0, 0.5], 3), [4, 1, 3]);
        assert_eq!(lowest(&[2.0, 2.0, 2.0, 2.0], 2), [0, 1]);
        assert_eq!(lowest(&[1.0], 0), Vec::<usize>::new());
    }

    #[test]
    fn kth_smallest_is_the_sorted_value() {
        let s = [5.0, 1.0, 4.0, 1.0, 3.0];
        assert_eq!((kth_smallest(&s, 0), kth_smallest(&s, 1), kth_smallest(&s, 2)), (1.0, 1.0, 3.0));
        assert_eq!(kth_smallest(&s, 4), 5.0);
    }

    #[test]
    fn per_row_counts_follow_the_target() {
        // 2 x 8 scores
        let s: Vec<f32> =
            [8, 7, 6, 5, 4, 3, 2, 1, 1, 2, 3, 4, 5, 6, 7, 8].iter().map(|&v| v as f32).collect();
        let m = per_row(&s, 2, 8, Sparsity::Unstructured(0.3)); // int(8 · 0.3) = 2 per row
        assert_eq!(
            m.to_pruned(),
            [[false; 6].as_slice(), &[true, true], &[true, true], &[false; 6]].concat()
        );
        let m = per_row(&s, 2, 8, Sparsity::NofM { n: 1, m: 4 });
        let want: Vec<bool> = [3, 7, 8, 12].iter().fold(vec![false; 16], |mut v, &k| {
            v[k] = true;
            v
        });
        assert_eq!(m.to_pruned(), want);
    }
}
