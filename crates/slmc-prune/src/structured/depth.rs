//! Depth pruning: which decoder layers survive (ShortGPT / Minitron depth, docs/algorithms.md §6.3).
//! The layers with the lowest block influence are dropped; the survivors keep their order and
//! are renumbered `0..L'` when the model is shrunk.

use super::select::top_k;

/// The `keep` layers (original indices, increasing) with the highest scores in `influence`:
/// the others, the lowest-influence layers, are dropped. On equal scores the later layer goes
/// first.
pub fn layers_to_keep(influence: &[f64], keep: usize) -> Vec<usize> {
    top_k(influence, keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_influence_layers_go() {
        let bi = [3.0, 0.5, 2.0, 0.5, 1.0];
        assert_eq!(layers_to_keep(&bi, 3), vec![0, 2, 4]);
        assert_eq!(layers_to_keep(&bi, 4), vec![0, 1, 2, 4]);
        assert_eq!(layers_to_keep(&bi, 5), vec![0, 1, 2, 3, 4]);
    }
}
