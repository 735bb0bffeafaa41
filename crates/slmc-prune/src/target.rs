//! What a pruning method aims for: a share of zeros, or a fixed N:M pattern (docs/algorithms.md §5.4).

use crate::PruneError;
use std::fmt;

/// The largest unstructured ratio accepted (the reference kernels index the sorted scores at
/// `int(numel · ratio)`, which must stay inside the tensor; above ~0.9 a layer is destroyed anyway).
pub const MAX_RATIO: f64 = 0.95;

/// A sparsity target for one weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sparsity {
    /// This share of the weights becomes zero, `0.0..=0.95`.
    Unstructured(f64),
    /// `n` zeros in every group of `m` consecutive input columns of every output row
    /// (`NofM { n: 2, m: 4 }` is "2:4"). `1 <= n < m`.
    NofM {
        /// Zeros per group.
        n: usize,
        /// Group width, in input columns.
        m: usize,
    },
}

impl Sparsity {
    /// Checks the ranges; every kernel calls it first.
    pub fn validate(&self) -> Result<(), PruneError> {
        match *self {
            Sparsity::Unstructured(r) if !(0.0..=MAX_RATIO).contains(&r) => {
                Err(PruneError::Input(format!("sparsity {r} is outside 0..={MAX_RATIO}")))
            }
            Sparsity::NofM { n, m } if n == 0 || n >= m => {
                Err(PruneError::Input(format!("{n}:{m} sparsity needs 1 <= n < m")))
            }
            _ => Ok(()),
        }
    }

    /// Checks the target and that it fits a `[rows, cols]` weight whose data has `len` values
    /// (an N:M pattern needs `cols` to be a multiple of `m`).
    pub(crate) fn check_weight(&self, len: usize, rows: usize, cols: usize) -> Result<(), PruneError> {
        self.validate()?;
        if rows.checked_mul(cols) != Some(len) {
            return Err(PruneError::Input(format!("{len} weights for a {rows}x{cols} matrix")));
        }
        if let Sparsity::NofM { n, m } = *self
            && !cols.is_multiple_of(m)
        {
            return Err(PruneError::Input(format!(
                "{n}:{m} sparsity needs the input width ({cols}) to be a multiple of {m}"
            )));
        }
        Ok(())
    }

    /// The share of zeros this target asks for (`n / m` for N:M).
    pub fn ratio(&self) -> f64 {
        match *self {
            Sparsity::Unstructured(r) => r,
            Sparsity::NofM { n, m } => n as f64 / m as f64,
        }
    }
}

/// `int(count · ratio)` as the Python references compute it (f64 product, truncated): how many
/// of `count` scores their sorts select.
pub(crate) fn reference_count(count: usize, ratio: f64) -> usize {
    (count as f64 * ratio) as usize
}

impl fmt::Display for Sparsity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sparsity::Unstructured(r) => write!(f, "{}%", r * 100.0),
            Sparsity::NofM { n, m } => write!(f, "{n}:{m}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_shapes_are_checked() {
        assert!(Sparsity::Unstructured(0.0).validate().is_ok());
        assert!(Sparsity::Unstructured(0.95).validate().is_ok());
        assert!(Sparsity::Unstructured(0.96).validate().is_err());
        assert!(Sparsity::Unstructured(-0.1).validate().is_err());
        assert!(Sparsity::Unstructured(f64::NAN).validate().is_err());
        assert!(Sparsity::NofM { n: 2, m: 4 }.validate().is_ok());
        assert!(Sparsity::NofM { n: 0, m: 4 }.validate().is_err());
        assert!(Sparsity::NofM { n: 4, m: 4 }.validate().is_err());
        let t = Sparsity::NofM { n: 4, m: 8 };
        assert!(t.check_weight(16, 2, 8).is_ok());
        assert!(t.check_weight(24, 2, 12).unwrap_err().to_string().contains("multiple of 8"));
        assert!(t.check_weight(15, 2, 8).unwrap_err().to_string().contains("15 weights"));
        assert_eq!(t.to_string(), "4:8");
        assert_eq!(Sparsity::Unstructured(0.5).to_string(), "50%");
        assert_eq!(t.ratio(), 0.5);
    }

    #[test]
    fn counts_truncate_like_python_int() {
        assert_eq!(reference_count(160, 0.5), 80);
        assert_eq!(reference_count(7, 0.5), 3);
        // 0.7 * 10 = 7.000000000000001 in f64, 0.3 * 10 = 3.0000000000000004: both truncate
        assert_eq!(reference_count(10, 0.7), 7);
        assert_eq!(reference_count(10, 0.3), 3);
        assert_eq!(reference_count(100, 0.29), 28); // 28.999999999999996, as Python's int() gives
    }
}
