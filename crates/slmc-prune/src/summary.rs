//! How sparse a model's linear weights are: zeros per kind of module, and the N:M pattern they
//! all satisfy (what `slmc inspect` reports).

use crate::mask::Mask;
use std::collections::BTreeMap;

/// Sparsity of the decoder linears of a model.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SparsitySummary {
    /// Per module kind (`self_attn.q_proj`, `mlp.down_proj`…): exact zeros and weights.
    pub by_kind: BTreeMap<String, (usize, usize)>,
    /// `"2:4"` or `"4:8"` when every one of those weights keeps at most that many non-zeros per
    /// group of consecutive input columns (2:4 preferred).
    pub pattern: Option<String>,
}

impl SparsitySummary {
    /// Summarises `(name, rows, cols, row-major [out, in] weight)` of decoder linears named
    /// `model.layers.<i>.<kind>.weight`; other tensors are skipped.
    pub fn of<'a>(weights: impl IntoIterator<Item = (&'a str, usize, usize, &'a [f32])>) -> Self {
        let mut by_kind: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        let mut two_four = true;
        let mut four_eight = true;
        let mut any = false;
        for (name, rows, cols, w) in weights {
            let Some(kind) =
                slmc_config::hf_config::split_layer_name(name).and_then(|(_, k)| k.strip_suffix(".weight"))
            else {
                continue;
            };
            let zeros: Vec<bool> = w.iter().map(|v| *v == 0.0).collect();
            let Ok(mask) = Mask::from_pruned(rows, cols, &zeros) else { continue };
            any = true;
            let e = by_kind.entry(kind.to_string()).or_default();
            e.0 += mask.count();
            e.1 += rows * cols;
            two_four &= cols % 4 == 0 && mask.satisfies_n_m(2, 4);
            four_eight &= cols % 8 == 0 && mask.satisfies_n_m(4, 8);
        }
        let pattern = match (any, two_four, four_eight) {
            (true, true, _) => Some("2:4".to_string()),
            (true, false, true) => Some("4:8".to_string()),
            _ => None,
        };
        Self { by_kind, pattern }
    }

    /// Zeros over all summarised weights.
    pub fn overall(&self) -> f64 {
        let (z, t) = self.by_kind.values().fold((0, 0), |(z, t), (a, b)| (z + a, t + b));
        z as f64 / t.max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_are_counted_per_kind_and_the_pattern_is_found() {
        // 2 rows × 8 columns, two zeros in every group of four: 2:4 (and so also 4:8).
        let w24: Vec<f32> = (0..16).map(|k| if k % 4 < 2 { 0.0 } else { 1.0 + k as f32 }).collect();
        // Four zeros in every group of eight, but three in one group of four: 4:8, not 2:4.
        let w48: Vec<f32> = (0..16).map(|k| if k % 8 < 3 || k % 8 == 7 { 0.0 } else { 1.0 }).collect();
        let s = SparsitySummary::of([
            ("model.layers.0.mlp.up_proj.weight", 2, 8, &w24[..]),
            ("model.layers.1.mlp.up_proj.weight", 2, 8, &w24[..]),
            ("model.embed_tokens.weight", 2, 8, &w48[..]),
        ]);
        assert_eq!(s.by_kind["mlp.up_proj"], (16, 32));
        assert_eq!(s.pattern.as_deref(), Some("2:4"));
        assert!((s.overall() - 0.5).abs() < 1e-12);
        let s = SparsitySummary::of([
            ("model.layers.0.mlp.up_proj.weight", 2, 8, &w24[..]),
            ("model.layers.0.self_attn.q_proj.weight", 2, 8, &w48[..]),
        ]);
        assert_eq!(s.pattern.as_deref(), Some("4:8"));
        let dense = [1.0f32; 16];
        let s = SparsitySummary::of([("model.layers.0.mlp.up_proj.weight", 2, 8, &dense[..])]);
        assert_eq!(s.pattern, None);
        assert_eq!(s.overall(), 0.0);
    }
}
