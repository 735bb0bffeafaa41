//! Keep-index sets: which units of a model survive a structured prune, and the checks that make
//! them describe a model stock Hugging Face code can run (uniform sizes across layers, query
//! heads pruned evenly within the kept KV groups).

use crate::PruneError;
use serde::{Deserialize, Serialize};
use slmc_config::ModelConfig;
use slmc_config::prune_shape::Shape;

/// The units one kept decoder layer keeps. Indices refer to the original model and are strictly
/// increasing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerKeep {
    /// The layer's index in the original model.
    pub source: usize,
    /// Kept key/value heads (KV groups).
    pub kv_heads: Vec<usize>,
    /// Kept query heads: only heads of kept groups, the same number from each.
    pub heads: Vec<usize>,
    /// Kept MLP channels.
    pub mlp: Vec<usize>,
}

/// Everything a structured prune keeps. Counts are uniform across layers (stock configs have one
/// `intermediate_size` and one head count); which heads and channels each layer keeps may differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeepSets {
    /// Kept hidden (embedding) channels: one set for the whole model, since every layer reads
    /// and writes the same residual stream.
    pub hidden: Vec<usize>,
    /// The kept decoder layers, in order (strictly increasing `source`).
    pub layers: Vec<LayerKeep>,
}

impl KeepSets {
    /// Keeps every unit of a model configured by `config` (pruning with it changes nothing).
    pub fn all(config: &ModelConfig) -> Self {
        let range = |n: usize| (0..n).collect::<Vec<_>>();
        Self {
            hidden: range(config.hidden_size),
            layers: (0..config.num_layers)
                .map(|source| LayerKeep {
                    source,
                    kv_heads: range(config.num_kv_heads),
                    heads: range(config.num_heads),
                    mlp: range(config.intermediate_size),
                })
                .collect(),
        }
    }

    /// The kept layers' original indices.
    pub fn sources(&self) -> Vec<usize> {
        self.layers.iter().map(|l| l.source).collect()
    }

    /// Checks the sets against the model they select from and returns the pruned sizes.
    pub fn validate(&self, config: &ModelConfig) -> Result<Shape, PruneError> {
        check_set("hidden channels", &self.hidden, config.hidden_size)?;
        let sources = self.sources();
        check_set("layers", &sources, config.num_layers)?;
        let first = &self.layers[0];
        let group = config.num_heads / config.num_kv_heads;
        for l in &self.layers {
            let at = |what: &str| format!("layer {}: {what}", l.source);
            check_set(&at("KV heads"), &l.kv_heads, config.num_kv_heads)?;
            check_set(&at("query heads"), &l.heads, config.num_heads)?;
            check_set(&at("MLP channels"), &l.mlp, config.intermediate_size)?;
            let counts = (l.kv_heads.len(), l.heads.len(), l.mlp.len());
            if counts != (first.kv_heads.len(), first.heads.len(), first.mlp.len()) {
                return Err(PruneError::Input(format!(
                    "layer {} keeps {counts:?} (KV heads, query heads, MLP channels) but layer {} keeps {:?}: \
                     sizes must be the same in every layer",
                    l.source,
                    first.source,
                    (first.kv_heads.len(), first.heads.len(), first.mlp.len())
                )));
            }
            let per_group = l.heads.len() / l.kv_heads.len();
            for &g in &l.kv_heads {
                let n = l.heads.iter().filter(|&&h| h / group == g).count();
                if n != per_group || per_group * l.kv_heads.len() != l.heads.len() {
                    return Err(PruneError::Input(format!(
                        "layer {}: KV group {g} keeps {n} query heads; every kept group must keep the same \
                         number ({} heads over {} groups)",
                        l.source,
                        l.heads.len(),
                        l.kv_heads.len()
                    )));
                }
            }
            if let Some(h) = l.heads.iter().find(|&&h| !l.kv_heads.contains(&(h / group))) {
                return Err(PruneError::Input(format!(
                    "layer {}: query head {h} belongs to KV group {}, which is not kept",
                    l.source,
                    h / group
                )));
            }
        }
        Ok(Shape {
            num_attention_heads: first.heads.len(),
            num_key_value_heads: first.kv_heads.len(),
            intermediate_size: first.mlp.len(),
            hidden_size: self.hidden.len(),
            num_hidden_layers: self.layers.len(),
        })
    }
}

/// A non-empty, strictly increasing set of indices below `bound`.
fn check_set(what: &str, set: &[usize], bound: usize) -> Result<(), PruneError> {
    if set.is_empty() {
        return Err(PruneError::Input(format!("{what}: at least one must be kept")));
    }
    if !set.windows(2).all(|w| w[0] < w[1]) {
        return Err(PruneError::Input(format!("{what}: keep indices must be strictly increasing")));
    }
    if let Some(&last) = set.last().filter(|&&l| l >= bound) {
        return Err(PruneError::Input(format!(
            "{what}: index {last} is out of range (the model has {bound})"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ModelConfig {
        let text = r#"{"model_type":"llama","hidden_size":64,"num_attention_heads":8,
            "num_key_value_heads":2,"num_hidden_layers":3,"intermediate_size":32,"vocab_size":10}"#;
        ModelConfig::from_json_str(text, "t").unwrap()
    }

    #[test]
    fn all_is_the_identity_shape() {
        let c = config();
        assert_eq!(KeepSets::all(&c).validate(&c).unwrap(), Shape::of(&c));
    }

    #[test]
    fn inconsistent_sets_are_refused() {
        let c = config();
        let check = |f: &dyn Fn(&mut KeepSets)| {
            let mut k = KeepSets::all(&c);
            f(&mut k);
            k.validate(&c).unwrap_err().to_string()
        };
        let e = check(&|k| {
            k.layers[1].mlp.pop();
        });
        assert!(e.contains("same in every layer"), "{e}");
        let e = check(&|k| k.layers[0].heads = vec![0, 1, 2, 4]);
        assert!(e.contains("KV group 0 keeps 3"), "{e}");
        let e = check(&|k| {
            k.layers[1].kv_heads = vec![0];
            k.layers[1].heads = vec![0, 1, 2, 3];
        });
        assert!(e.contains("layer 1 keeps (1, 4, 32)") && e.contains("same in every layer"), "{e}");
        let e = check(&|k| {
            for l in &mut k.layers {
                l.kv_heads = vec![1];
                l.heads = vec![0, 1, 2, 3];
            }
        });
        assert!(e.contains("KV group 1 keeps 0"), "{e}");
        let e = check(&|k| k.hidden = vec![3, 2]);
        assert!(e.contains("strictly increasing"), "{e}");
        let e = check(&|k| k.layers[2].source = 3);
        assert!(e.contains("index 3 is out of range"), "{e}");
        let e = check(&|k| k.layers.clear());
        assert!(e.contains("layers: at least one"), "{e}");
    }

    #[test]
    fn pruning_within_groups_validates() {
        let c = config();
        let mut k = KeepSets::all(&c);
        for l in &mut k.layers {
            l.heads = vec![1, 3, 4, 7];
        }
        let s = k.validate(&c).unwrap();
        assert_eq!((s.num_attention_heads, s.num_key_value_heads), (4, 2));
    }
}
