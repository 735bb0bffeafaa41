//! Choosing the units to keep from importance scores (docs/algorithms.md §6.5): the top-scoring MLP
//! channels of each layer, the top KV groups of each layer and, within each kept group, its
//! top query heads (the same number per group: Minitron's GQA-aware ranking), one global set of
//! hidden channels, and the layers with the highest block influence.

use super::depth::layers_to_keep;
use super::importance::Importance;
use super::keep::{KeepSets, LayerKeep};
use crate::PruneError;
use slmc_config::ModelConfig;
use slmc_config::prune_shape::{Shape, Targets, resolve};

/// Indices of `scores` from the highest score to the lowest (ties: the lower index first).
pub(crate) fn ranking(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order
}

/// The indices of the `k` highest `scores`, in increasing index order.
pub(crate) fn top_k(scores: &[f64], k: usize) -> Vec<usize> {
    let mut kept = ranking(scores);
    kept.truncate(k);
    kept.sort_unstable();
    kept
}

/// The units to keep so that a model configured by `config` shrinks to `shape`, chosen by
/// `importance` (see the module docs). `shape` is checked as [`resolve`] checks explicit sizes.
pub fn keep_sets(
    config: &ModelConfig,
    importance: &Importance,
    shape: &Shape,
) -> Result<KeepSets, PruneError> {
    importance.check(config)?;
    let shape = &resolve(config, &Targets::Sizes((*shape).into())).map_err(PruneError::Input)?;
    let group = config.num_heads / config.num_kv_heads;
    let per_group = shape.num_attention_heads / shape.num_key_value_heads;
    let layers = layers_to_keep(&importance.layers, shape.num_hidden_layers)
        .into_iter()
        .map(|source| {
            let kv_heads =
                top_k(&importance.kv_groups(source, config.num_kv_heads), shape.num_key_value_heads);
            let scores = &importance.heads[source];
            let heads = kv_heads
                .iter()
                .flat_map(|&g| {
                    top_k(&scores[g * group..(g + 1) * group], per_group)
                        .into_iter()
                        .map(move |h| g * group + h)
                })
                .collect();
            LayerKeep {
                source,
                kv_heads,
                heads,
                mlp: top_k(&importance.mlp[source], shape.intermediate_size),
            }
        })
        .collect();
    let keep = KeepSets { hidden: top_k(&importance.hidden, shape.hidden_size), layers };
    keep.validate(config)?;
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::structured::importance::ImportanceMethod;

    #[test]
    fn ranking_is_stable_and_top_k_sorted() {
        assert_eq!(ranking(&[1.0, 3.0, 3.0, 0.0]), vec![1, 2, 0, 3]);
        assert_eq!(top_k(&[1.0, 3.0, 3.0, 0.0], 2), vec![1, 2]);
        assert_eq!(top_k(&[5.0, 1.0, 4.0], 2), vec![0, 2]);
    }

    #[test]
    fn heads_are_ranked_within_their_kv_group() {
        // 8 query heads in 2 groups of 4. Group 0 holds the four best heads overall, but pruning
        // to 4 heads keeps both groups and the best 2 of each.
        let text = r#"{"model_type":"llama","hidden_size":128,"num_attention_heads":8,
            "num_key_value_heads":2,"num_hidden_layers":1,"intermediate_size":4,"vocab_size":10}"#;
        let c = ModelConfig::from_json_str(text, "t").unwrap();
        let imp = Importance {
            method: ImportanceMethod::Magnitude,
            heads: vec![vec![9.0, 8.0, 7.0, 6.0, 1.0, 3.0, 2.0, 0.5]],
            mlp: vec![vec![1.0, 0.0, 2.0, 3.0]],
            hidden: (0..128).map(f64::from).collect(),
            layers: vec![1.0],
        };
        let shape = Shape { num_attention_heads: 4, intermediate_size: 2, hidden_size: 3, ..Shape::of(&c) };
        let k = keep_sets(&c, &imp, &shape).unwrap();
        assert_eq!(k.layers[0].kv_heads, vec![0, 1]);
        assert_eq!(k.layers[0].heads, vec![0, 1, 5, 6]);
        assert_eq!(k.layers[0].mlp, vec![2, 3]);
        assert_eq!(k.hidden, vec![125, 126, 127]);
        // Dropping a whole group keeps the stronger one (L2 of its heads) with all its heads.
        let shape = Shape { num_key_value_heads: 1, ..Shape::of(&c) };
        let shape = Shape { num_attention_heads: 4, ..shape };
        let k = keep_sets(&c, &imp, &shape).unwrap();
        assert_eq!((k.layers[0].kv_heads.clone(), k.layers[0].heads.clone()), (vec![0], vec![0, 1, 2, 3]));
        // Scores of another model are refused.
        let mut bad = imp.clone();
        bad.hidden.pop();
        assert!(keep_sets(&c, &bad, &shape).unwrap_err().to_string().contains("another shape"));
        let zero = Shape { num_key_value_heads: 0, ..shape };
        let e = keep_sets(&c, &imp, &zero).unwrap_err().to_string();
        assert!(e.contains("`num_key_value_heads` must be at least 1"), "{e}");
        bad = imp;
        bad.mlp[0][1] = f64::NAN;
        assert!(keep_sets(&c, &bad, &shape).unwrap_err().to_string().contains("NaN"));
    }
}
