//! The validated form of `kind = "prune"` stages.

use crate::schema::{CalibrationParams, Selection};
pub use slmc_config::prune_scope::MagnitudeScope;
use slmc_config::prune_shape::Targets;

/// How an unstructured prune stage chooses the weights to zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskAlgorithm {
    /// Smallest `|w|` (no data), compared within the given group.
    Magnitude(MagnitudeScope),
    /// Smallest `|w| · ‖x_j‖` per output row (Wanda).
    Wanda,
    /// SparseGPT: adaptive OBS masks with error compensation through the inverse Hessian.
    SparseGpt,
}

impl MaskAlgorithm {
    /// The recipe name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Magnitude(_) => "magnitude",
            Self::Wanda => "wanda",
            Self::SparseGpt => "sparsegpt",
        }
    }
}

/// The sparsity an unstructured prune stage reaches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SparsityTarget {
    /// This fraction of every target's weights is zero, per output row.
    Ratio(f64),
    /// `pattern = "2:4"` / `"4:8"`: in every group of `m` consecutive input columns of a row,
    /// `n` weights are zero (half of them: 2:4 and 4:8 are the patterns sparse kernels run).
    NofM {
        /// Zeros per group.
        n: usize,
        /// Group length.
        m: usize,
    },
}

impl SparsityTarget {
    /// The overall fraction of zeros.
    pub fn ratio(self) -> f64 {
        match self {
            Self::Ratio(r) => r,
            Self::NofM { n, m } => n as f64 / m as f64,
        }
    }

    /// `50 %` or `2:4` style description.
    pub fn describe(self) -> String {
        match self {
            Self::Ratio(r) => format!("{:.0} % unstructured", r * 100.0),
            Self::NofM { n, m } => format!("{}:{m}", m - n),
        }
    }
}

/// OWL non-uniform layer sparsity (`owl = { lambda, m }`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Owl {
    /// Layer sparsities lie in `[S − λ, S + λ]`.
    pub lambda: f64,
    /// Outlier threshold: a score above `m × mean` counts as an outlier.
    pub m: f64,
}

/// Where structured importance comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportanceSource {
    /// Calibration activations (Minitron; block influence for layers).
    Activation,
    /// Weight norms (no data).
    Magnitude,
}

impl crate::reader::Named for ImportanceSource {
    const NAMES: &'static [(Self, &'static str)] =
        &[(Self::Activation, "activation"), (Self::Magnitude, "magnitude")];
}

/// What a prune stage does.
#[derive(Debug, Clone, PartialEq)]
pub enum PruneMethod {
    /// Zero weights in place (shapes unchanged); the masks are kept as records.
    Unstructured {
        /// How weights are chosen.
        algorithm: MaskAlgorithm,
        /// How many.
        sparsity: SparsityTarget,
        /// Non-uniform layer ratios (with a `sparsity` ratio).
        owl: Option<Owl>,
        /// SparseGPT dampening, fraction of the mean Hessian diagonal.
        damp: f64,
        /// SparseGPT mask-selection and lazy-update block (columns).
        block_size: usize,
        /// The modules pruned.
        select: Selection,
    },
    /// Remove attention heads, MLP channels and hidden channels (a smaller model).
    Width {
        /// The sizes to reach (explicit, or `keep` = a fraction of the parameters).
        targets: Targets,
        /// Where the importance comes from.
        importance: ImportanceSource,
    },
    /// Remove whole decoder layers.
    Depth {
        /// `num-hidden-layers`, or `keep` = a fraction of the parameters.
        targets: Targets,
        /// Where the importance comes from.
        importance: ImportanceSource,
    },
}

/// Settings of a prune stage.
#[derive(Debug, Clone, PartialEq)]
pub struct PruneParams {
    /// What it does.
    pub method: PruneMethod,
    /// Calibration windows (Wanda, SparseGPT, OWL, activation importance).
    pub calibration: CalibrationParams,
}

impl PruneParams {
    /// Whether it reads calibration data.
    pub fn needs_data(&self) -> bool {
        match &self.method {
            PruneMethod::Unstructured { algorithm, owl, .. } => {
                !matches!(algorithm, MaskAlgorithm::Magnitude(_)) || owl.is_some()
            }
            PruneMethod::Width { importance, .. } | PruneMethod::Depth { importance, .. } => {
                *importance == ImportanceSource::Activation
            }
        }
    }

    /// Whether it zeroes weights in place (and so leaves masks).
    pub fn is_unstructured(&self) -> bool {
        matches!(self.method, PruneMethod::Unstructured { .. })
    }

    /// The shape a structured (width or depth) prune reaches, for the shape resolver.
    pub fn shape_targets(&self) -> Option<Targets> {
        match &self.method {
            PruneMethod::Unstructured { .. } => None,
            PruneMethod::Width { targets, .. } | PruneMethod::Depth { targets, .. } => Some(*targets),
        }
    }
}
