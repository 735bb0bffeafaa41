//! Target shapes: what a structured prune shrinks the model to, given as explicit sizes or as a
//! fraction of parameters to keep, validated against the model's configuration.
//!
//! Burn-free (only [`ModelConfig`]), so recipe checking can plan shapes and parameter counts
//! before any weights are loaded.

use crate::ModelConfig;
use serde::{Deserialize, Serialize};

/// The prunable sizes of a model, named by their Hugging Face `config.json` keys. `head_dim`
/// and the vocabulary are never pruned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (KV groups).
    pub num_key_value_heads: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Residual (embedding) width.
    pub hidden_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
}

impl Shape {
    /// The sizes of `config`.
    pub fn of(config: &ModelConfig) -> Self {
        Self {
            num_attention_heads: config.num_heads,
            num_key_value_heads: config.num_kv_heads,
            intermediate_size: config.intermediate_size,
            hidden_size: config.hidden_size,
            num_hidden_layers: config.num_layers,
        }
    }

    /// `config` with these sizes (only the size fields change; see
    /// [`super::config::shrunk_config`] for the complete pruned configuration).
    pub(crate) fn apply(&self, config: &ModelConfig) -> ModelConfig {
        let mut c = config.clone();
        c.num_heads = self.num_attention_heads;
        c.num_kv_heads = self.num_key_value_heads;
        c.intermediate_size = self.intermediate_size;
        c.set_hidden_size(self.hidden_size);
        c.select_layers(&(0..self.num_hidden_layers).collect::<Vec<_>>());
        c
    }

    /// Parameter count of `config` at these sizes (tied embeddings counted once).
    pub fn num_params(&self, config: &ModelConfig) -> usize {
        self.apply(config).num_params()
    }
}

/// Explicit target sizes; `None` keeps the model's size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetSizes {
    /// Query heads. Without `num_key_value_heads`, query heads are pruned evenly within every KV
    /// group when the count is a multiple of the model's KV heads, else whole KV groups are
    /// dropped (keeping the group size).
    pub num_attention_heads: Option<usize>,
    /// KV groups to keep; the query heads of dropped groups go with them. Without
    /// `num_attention_heads`, each kept group keeps all its query heads.
    pub num_key_value_heads: Option<usize>,
    /// MLP width (the same in every layer).
    pub intermediate_size: Option<usize>,
    /// Residual width (one set of channels for the whole model).
    pub hidden_size: Option<usize>,
    /// Decoder layers (the lowest block-influence layers are dropped).
    pub num_hidden_layers: Option<usize>,
}

impl From<Shape> for TargetSizes {
    fn from(s: Shape) -> Self {
        Self {
            num_attention_heads: Some(s.num_attention_heads),
            num_key_value_heads: Some(s.num_key_value_heads),
            intermediate_size: Some(s.intermediate_size),
            hidden_size: Some(s.hidden_size),
            num_hidden_layers: Some(s.num_hidden_layers),
        }
    }
}

/// What to prune to.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Targets {
    /// Explicit sizes.
    Sizes(TargetSizes),
    /// Keep about this fraction of the parameters by narrowing: `hidden_size` and
    /// `intermediate_size` shrink by the same factor (heads, `head_dim` and layers stay). Sizes
    /// stay multiples of the largest of 32 and 8 that divides the original size (block
    /// quantization formats need 32-wide rows), and the candidate whose parameter count is
    /// closest to the target wins (ties: the larger model).
    KeepWidth(f64),
    /// Keep about this fraction of the parameters by dropping whole layers: the layer count
    /// whose parameter count is closest to the target (ties: more layers).
    KeepDepth(f64),
}

/// Resolves `targets` for a model configured by `config` into concrete sizes, checking them:
/// every size ≥ 1 and ≤ the model's, query heads a multiple of KV heads and no more per group
/// than the model has (query heads are pruned evenly within groups), `keep` in (0, 1], and for
/// Phi-3 LongRoPE models `hidden_size = num_attention_heads × head_dim` (transformers' check;
/// `KeepWidth` cannot meet it there: give sizes).
pub fn resolve(config: &ModelConfig, targets: &Targets) -> Result<Shape, String> {
    let current = Shape::of(config);
    let shape = match *targets {
        Targets::Sizes(sizes) => resolve_sizes(&current, &sizes)?,
        Targets::KeepWidth(fraction) => {
            check_fraction(fraction)?;
            keep_width(config, fraction)
        }
        Targets::KeepDepth(fraction) => {
            check_fraction(fraction)?;
            keep_depth(config, fraction)
        }
    };
    check_loadable(config, &shape)?;
    Ok(shape)
}

/// Refuses shapes transformers cannot load: its `Phi3Config` checks LongRoPE factor lists against
/// `hidden_size / num_attention_heads` rather than `head_dim`, so a Phi-3 LongRoPE model must keep
/// `hidden_size = num_attention_heads × head_dim`.
fn check_loadable(config: &ModelConfig, shape: &Shape) -> Result<(), String> {
    let product = shape.num_attention_heads * config.head_dim;
    let longrope = matches!(config.rope.scaling, crate::RopeScaling::LongRope { .. });
    if config.arch == crate::Arch::Phi3 && longrope && shape.hidden_size != product {
        return Err(format!(
            "phi3 with longrope scaling: transformers checks the rope factors against hidden_size / \
             num_attention_heads, so `hidden_size` must equal `num_attention_heads` × head_dim = {} × {} = \
             {product}, got {} (prune both together, or neither)",
            shape.num_attention_heads, config.head_dim, shape.hidden_size
        ));
    }
    Ok(())
}

fn check_fraction(fraction: f64) -> Result<(), String> {
    if fraction.is_finite() && fraction > 0.0 && fraction <= 1.0 {
        Ok(())
    } else {
        Err(format!("`keep` must be a fraction in (0, 1], got {fraction}"))
    }
}

fn check_size(key: &str, value: usize, current: usize) -> Result<usize, String> {
    if value == 0 {
        return Err(format!("`{key}` must be at least 1, got 0"));
    }
    if value > current {
        return Err(format!(
            "`{key}` = {value} is larger than the model's {current} (pruning only removes units)"
        ));
    }
    Ok(value)
}

fn resolve_sizes(current: &Shape, t: &TargetSizes) -> Result<Shape, String> {
    let (heads, kv) = (current.num_attention_heads, current.num_key_value_heads);
    let group = heads / kv;
    let new_kv = match (t.num_key_value_heads, t.num_attention_heads) {
        (Some(k), _) => check_size("num_key_value_heads", k, kv)?,
        (None, None) => kv,
        (None, Some(h)) => {
            let h = check_size("num_attention_heads", h, heads)?;
            if h.is_multiple_of(kv) {
                kv
            } else if h.is_multiple_of(group) {
                h / group
            } else {
                return Err(format!(
                    "`num_attention_heads` = {h} is neither a multiple of the model's {kv} KV heads \
                     (pruning query heads within each group) nor of its {group} query heads per group \
                     (dropping whole KV groups); set `num_key_value_heads` as well"
                ));
            }
        }
    };
    let new_heads = match t.num_attention_heads {
        Some(h) => check_size("num_attention_heads", h, heads)?,
        None => new_kv * group,
    };
    if !new_heads.is_multiple_of(new_kv) {
        return Err(format!(
            "`num_attention_heads` = {new_heads} must be a multiple of `num_key_value_heads` = {new_kv}"
        ));
    }
    if new_heads / new_kv > group {
        return Err(format!(
            "`num_attention_heads` = {new_heads} with `num_key_value_heads` = {new_kv} needs {} query heads \
             per KV group, but the model has {group}: at most {}",
            new_heads / new_kv,
            new_kv * group
        ));
    }
    Ok(Shape {
        num_attention_heads: new_heads,
        num_key_value_heads: new_kv,
        intermediate_size: t.intermediate_size.map_or(Ok(current.intermediate_size), |v| {
            check_size("intermediate_size", v, current.intermediate_size)
        })?,
        hidden_size: t
            .hidden_size
            .map_or(Ok(current.hidden_size), |v| check_size("hidden_size", v, current.hidden_size))?,
        num_hidden_layers: t.num_hidden_layers.map_or(Ok(current.num_hidden_layers), |v| {
            check_size("num_hidden_layers", v, current.num_hidden_layers)
        })?,
    })
}

/// The step sizes of a width stay multiples of: 32 or 8 when they divide it, else 1.
fn alignment(size: usize) -> usize {
    [32, 8].into_iter().find(|m| size.is_multiple_of(*m)).unwrap_or(1)
}

/// Of the candidates, the one whose parameter count is closest to `target` (ties: the later one,
/// candidates being listed from small to large).
fn closest(config: &ModelConfig, candidates: impl Iterator<Item = Shape>, target: f64) -> Option<Shape> {
    candidates
        .map(|s| ((s.num_params(config) as f64 - target).abs(), s))
        .reduce(|best, c| if c.0 <= best.0 { c } else { best })
        .map(|(_, s)| s)
}

fn keep_width(config: &ModelConfig, fraction: f64) -> Shape {
    let current = Shape::of(config);
    let target = fraction * config.num_params() as f64;
    let (h, i) = (current.hidden_size, current.intermediate_size);
    let (ah, ai) = (alignment(h), alignment(i));
    let candidates = (1..=h / ah).map(|k| {
        let hidden = k * ah;
        let scaled = (i as f64 * hidden as f64 / h as f64 / ai as f64).round() as usize * ai;
        Shape { hidden_size: hidden, intermediate_size: scaled.clamp(ai, i), ..current }
    });
    closest(config, candidates, target).unwrap_or(current)
}

fn keep_depth(config: &ModelConfig, fraction: f64) -> Shape {
    let current = Shape::of(config);
    let target = fraction * config.num_params() as f64;
    let candidates = (1..=current.num_hidden_layers).map(|l| Shape { num_hidden_layers: l, ..current });
    closest(config, candidates, target).unwrap_or(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn config(heads: usize, kv: usize, hidden: usize, inter: usize, layers: usize) -> ModelConfig {
        let text = format!(
            r#"{{"model_type":"llama","hidden_size":{hidden},"num_attention_heads":{heads},
            "num_key_value_heads":{kv},"num_hidden_layers":{layers},"intermediate_size":{inter},
            "vocab_size":1000,"head_dim":16}}"#
        );
        ModelConfig::from_json_str(&text, "test").unwrap()
    }

    fn sizes(f: impl FnOnce(&mut TargetSizes)) -> Targets {
        let mut t = TargetSizes::default();
        f(&mut t);
        Targets::Sizes(t)
    }

    fn err(c: &ModelConfig, t: Targets) -> String {
        resolve(c, &t).unwrap_err().to_string()
    }

    #[test]
    fn no_targets_is_the_identity() {
        let c = config(8, 2, 128, 256, 4);
        assert_eq!(resolve(&c, &Targets::Sizes(TargetSizes::default())).unwrap(), Shape::of(&c));
    }

    #[test]
    fn heads_alone_prune_within_groups_or_drop_whole_groups() {
        let c = config(8, 2, 128, 256, 4); // 4 query heads per group
        let s = resolve(&c, &sizes(|t| t.num_attention_heads = Some(4))).unwrap();
        assert_eq!((s.num_attention_heads, s.num_key_value_heads), (4, 2));
        let mha = config(4, 4, 64, 128, 2);
        let s = resolve(&mha, &sizes(|t| t.num_attention_heads = Some(2))).unwrap();
        assert_eq!((s.num_attention_heads, s.num_key_value_heads), (2, 2));
        // KV heads alone drop whole groups with all their query heads.
        let s = resolve(&c, &sizes(|t| t.num_key_value_heads = Some(1))).unwrap();
        assert_eq!((s.num_attention_heads, s.num_key_value_heads), (4, 1));
    }

    #[test]
    fn invalid_sizes_name_the_key() {
        let c = config(8, 2, 128, 256, 4);
        let e = err(&c, sizes(|t| t.num_attention_heads = Some(3)));
        assert!(e.contains("`num_attention_heads` = 3") && e.contains("num_key_value_heads"), "{e}");
        let heads_kv = |h: usize, kv: usize| {
            sizes(|t| {
                t.num_attention_heads = Some(h);
                t.num_key_value_heads = Some(kv);
            })
        };
        let e = err(&c, heads_kv(6, 1));
        assert!(e.contains("needs 6 query heads per KV group") && e.contains("has 4"), "{e}");
        let e = err(&c, heads_kv(6, 4));
        assert!(e.contains("`num_key_value_heads` = 4 is larger than the model's 2"), "{e}");
        let e = err(&c, sizes(|t| t.hidden_size = Some(0)));
        assert!(e.contains("`hidden_size` must be at least 1"), "{e}");
        let e = err(&c, sizes(|t| t.intermediate_size = Some(300)));
        assert!(e.contains("`intermediate_size` = 300 is larger"), "{e}");
        let e = err(&c, sizes(|t| t.num_hidden_layers = Some(5)));
        assert!(e.contains("`num_hidden_layers` = 5"), "{e}");
        for bad in [0.0, -0.5, 1.5, f64::NAN] {
            assert!(err(&c, Targets::KeepWidth(bad)).contains("`keep`"));
            assert!(err(&c, Targets::KeepDepth(bad)).contains("`keep`"));
        }
    }

    #[test]
    fn phi3_longrope_keeps_hidden_equal_to_heads_times_head_dim() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/models/phi3_longrope/config.json");
        let c = ModelConfig::from_file(&path).unwrap();
        let e = err(&c, sizes(|t| t.hidden_size = Some(48)));
        assert!(e.contains("longrope") && e.contains("4 × 16 = 64, got 48"), "{e}");
        let both = resolve(
            &c,
            &sizes(|t| {
                t.hidden_size = Some(32);
                t.num_attention_heads = Some(2);
            }),
        )
        .unwrap();
        assert_eq!((both.hidden_size, both.num_attention_heads), (32, 2));
        assert!(resolve(&c, &sizes(|t| t.intermediate_size = Some(64))).is_ok());
    }

    #[test]
    fn keep_width_scales_hidden_and_mlp_near_the_fraction() {
        let c = config(8, 2, 1024, 2816, 8);
        for keep in [0.3, 0.5, 0.75, 0.9] {
            let s = resolve(&c, &Targets::KeepWidth(keep)).unwrap();
            let got = s.num_params(&c) as f64 / c.num_params() as f64;
            assert!((got - keep).abs() < 0.03, "keep {keep}: {s:?} keeps {got}");
            assert_eq!((s.num_attention_heads, s.num_key_value_heads, s.num_hidden_layers), (8, 2, 8));
            assert!(s.hidden_size.is_multiple_of(32) && s.intermediate_size.is_multiple_of(32), "{s:?}");
            // Both widths shrink by about the same factor.
            let (fh, fi) = (s.hidden_size as f64 / 1024.0, s.intermediate_size as f64 / 2816.0);
            assert!((fh - fi).abs() < 0.02, "{s:?}");
        }
        assert_eq!(resolve(&c, &Targets::KeepWidth(1.0)).unwrap(), Shape::of(&c));
    }

    #[test]
    fn keep_depth_picks_the_closest_layer_count() {
        let c = config(8, 2, 1024, 2816, 8);
        let s = resolve(&c, &Targets::KeepDepth(0.5)).unwrap();
        let per_layer = (c.num_params() - Shape { num_hidden_layers: 0, ..Shape::of(&c) }.num_params(&c)) / 8;
        let want = ((0.5 * c.num_params() as f64 - (c.num_params() - 8 * per_layer) as f64)
            / per_layer as f64)
            .round() as usize;
        assert_eq!(s.num_hidden_layers, want);
        assert_eq!(Shape { num_hidden_layers: 8, ..s }, Shape::of(&c));
        assert_eq!(resolve(&c, &Targets::KeepDepth(1e-9)).unwrap().num_hidden_layers, 1);
    }
}
