//! The comparison group of magnitude pruning: named by recipes (`scope = "row" | "layer"`) and
//! applied by `slmc-prune`, which both depend on this crate rather than on each other.

/// Where magnitudes compete for an unstructured target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MagnitudeScope {
    /// Per output row: every row loses exactly `int(cols · ratio)` weights, the smallest `|w|`
    /// by a stable sort (equal magnitudes: the lower column goes first). The comparison group
    /// of Wanda's paper, and exactly llm-compressor's/locuslab's Wanda kernel with unit input
    /// norms.
    #[default]
    Row,
    /// One threshold per matrix, the rule of the reference magnitude baselines
    /// (locuslab/wanda `prune_magnitude`, IST-DASLab/sparsegpt `--gmp`):
    /// `thresh = sort(|W|)[int(rows · cols · ratio)]`, every `|w| <= thresh` is pruned, so ties
    /// and the `<=` make the result at least one weight above the target.
    Layer,
}

impl MagnitudeScope {
    /// Every scope with its recipe name.
    pub const ALL: [(Self, &'static str); 2] = [(Self::Row, "row"), (Self::Layer, "layer")];

    /// The recipe name (`scope = "row" | "layer"`).
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(s, _)| *s == self).map(|(_, n)| *n).expect("every scope is named")
    }
}
