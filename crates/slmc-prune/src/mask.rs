//! The exact record of which weights of one `[rows = out_features, cols = in_features]` tensor
//! were pruned: one bit per weight, set = pruned (the weight is exactly 0.0).
//!
//! Bits are packed row by row, `ceil(cols / 8)` bytes per row, least significant bit first
//! (bit `c % 8` of byte `c / 8` is column `c`, numpy's `packbits(bitorder="little")` per row);
//! the padding bits after the last column of a row are always 0.

use crate::PruneError;

/// Pruned positions of one weight tensor.
#[derive(Clone, PartialEq, Eq)]
pub struct Mask {
    rows: usize,
    cols: usize,
    bits: Vec<u8>,
}

/// Bytes holding one row of `cols` bits.
pub(crate) fn bytes_per_row(cols: usize) -> usize {
    cols.div_ceil(8)
}

impl Mask {
    /// A mask of a `[rows, cols]` tensor with nothing pruned.
    pub fn new(rows: usize, cols: usize) -> Result<Self, PruneError> {
        let len = rows.checked_mul(bytes_per_row(cols)).ok_or_else(|| PruneError::Mask {
            name: "mask".into(),
            reason: format!("{rows}x{cols} is too large"),
        })?;
        Ok(Self { rows, cols, bits: vec![0; len] })
    }

    /// A mask from one flag per weight, row-major `[rows, cols]` (`true` = pruned).
    pub fn from_pruned(rows: usize, cols: usize, pruned: &[bool]) -> Result<Self, PruneError> {
        let mut mask = Self::new(rows, cols)?;
        if rows.checked_mul(cols) != Some(pruned.len()) {
            return Err(PruneError::Mask {
                name: "mask".into(),
                reason: format!("{} flags for a {rows}x{cols} tensor", pruned.len()),
            });
        }
        for (k, _) in pruned.iter().enumerate().filter(|(_, p)| **p) {
            mask.set(k / cols, k % cols);
        }
        Ok(mask)
    }

    /// A mask from packed bits in this type's layout (see the module docs), validated.
    pub fn from_packed(rows: usize, cols: usize, bits: Vec<u8>) -> Result<Self, PruneError> {
        let mask = Self::unchecked(rows, cols, bits);
        mask.validate("mask")?;
        Ok(mask)
    }

    /// A mask from packed bits, not yet validated (see [`Mask::problem`]).
    pub(crate) fn unchecked(rows: usize, cols: usize, bits: Vec<u8>) -> Self {
        Self { rows, cols, bits }
    }

    /// Output features.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The packed bits, `[rows, ceil(cols / 8)]` row-major.
    pub fn packed(&self) -> &[u8] {
        &self.bits
    }

    /// Whether weight `(r, c)` is pruned; `None` outside the tensor.
    pub fn pruned(&self, r: usize, c: usize) -> Option<bool> {
        (r < self.rows && c < self.cols).then(|| self.get(r, c))
    }

    fn get(&self, r: usize, c: usize) -> bool {
        self.bits[r * bytes_per_row(self.cols) + c / 8] >> (c % 8) & 1 == 1
    }

    /// Marks `(r, c)` pruned (callers stay inside the tensor).
    pub(crate) fn set(&mut self, r: usize, c: usize) {
        self.bits[r * bytes_per_row(self.cols) + c / 8] |= 1 << (c % 8);
    }

    /// One flag per weight, row-major `[rows, cols]`.
    pub fn to_pruned(&self) -> Vec<bool> {
        (0..self.rows * self.cols).map(|k| self.get(k / self.cols, k % self.cols)).collect()
    }

    /// Pruned weights in row `r` (0 outside the tensor).
    pub fn row_count(&self, r: usize) -> usize {
        if r >= self.rows {
            return 0;
        }
        let b = bytes_per_row(self.cols);
        self.bits[r * b..(r + 1) * b].iter().map(|v| v.count_ones() as usize).sum()
    }

    /// Pruned weights in the tensor.
    pub fn count(&self) -> usize {
        self.bits.iter().map(|v| v.count_ones() as usize).sum()
    }

    /// The share of pruned weights (0 for an empty tensor).
    pub fn sparsity(&self) -> f64 {
        let n = self.rows * self.cols;
        if n == 0 { 0.0 } else { self.count() as f64 / n as f64 }
    }

    /// Whether every row has at least `n` pruned weights in each group of `m` consecutive
    /// columns (the N:M constraint sparse kernels need: at most `m − n` kept per group). False
    /// when `cols` is not a multiple of `m` or `m` is 0.
    pub fn satisfies_n_m(&self, n: usize, m: usize) -> bool {
        m > 0
            && self.cols.is_multiple_of(m)
            && (0..self.rows).all(|r| {
                (0..self.cols / m).all(|g| (g * m..(g + 1) * m).filter(|&c| self.get(r, c)).count() >= n)
            })
    }

    /// Sets the pruned weights of `w` (row-major `[rows, cols]`, Hugging Face layout) to 0.0.
    pub fn apply(&self, w: &mut [f32]) -> Result<(), PruneError> {
        self.check_len(w.len())?;
        for (k, v) in w.iter_mut().enumerate() {
            if self.get(k / self.cols, k % self.cols) {
                *v = 0.0;
            }
        }
        Ok(())
    }

    /// Sets the pruned weights of `wt` (burn's `[in, out]` layout, i.e. `[cols, rows]`) to 0.0.
    pub fn apply_transposed(&self, wt: &mut [f32]) -> Result<(), PruneError> {
        self.check_len(wt.len())?;
        for (k, v) in wt.iter_mut().enumerate() {
            if self.get(k % self.rows, k / self.rows) {
                *v = 0.0;
            }
        }
        Ok(())
    }

    fn check_len(&self, len: usize) -> Result<(), PruneError> {
        if len == self.rows * self.cols {
            Ok(())
        } else {
            Err(PruneError::Mask {
                name: "mask".into(),
                reason: format!("applied to {len} weights, but it is {}x{}", self.rows, self.cols),
            })
        }
    }

    /// Checks that the packed bits fit the shape and the padding bits are 0 (masks read from
    /// disk are untrusted). `name` labels the error.
    pub fn validate(&self, name: &str) -> Result<(), PruneError> {
        self.problem().map_or(Ok(()), |reason| Err(PruneError::Mask { name: name.into(), reason }))
    }

    /// What is wrong with the packed bits, if anything.
    pub(crate) fn problem(&self) -> Option<String> {
        let b = bytes_per_row(self.cols);
        if self.rows.checked_mul(b) != Some(self.bits.len()) {
            return Some(format!(
                "{} bytes of bits for a {}x{} tensor (expected {} per row)",
                self.bits.len(),
                self.rows,
                self.cols,
                b
            ));
        }
        let tail = self.cols % 8;
        (tail != 0 && (0..self.rows).any(|r| self.bits[(r + 1) * b - 1] >> tail != 0))
            .then(|| "bits set past the last column of a row".into())
    }
}

impl std::fmt::Debug for Mask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mask")
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("pruned", &self.count())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_are_packed_per_row_lsb_first() {
        // 2 x 10: row 0 prunes columns 0, 3, 9; row 1 prunes column 8
        let mut flags = vec![false; 20];
        for k in [0, 3, 9, 18] {
            flags[k] = true;
        }
        let m = Mask::from_pruned(2, 10, &flags).unwrap();
        assert_eq!(m.packed(), &[0b0000_1001, 0b10, 0, 0b01]);
        assert_eq!(m.to_pruned(), flags);
        assert_eq!((m.count(), m.row_count(0), m.row_count(1), m.row_count(2)), (4, 3, 1, 0));
        assert_eq!(m.sparsity(), 0.2);
        assert_eq!(
            (m.pruned(0, 9), m.pruned(1, 9), m.pruned(2, 0), m.pruned(0, 10)),
            (Some(true), Some(false), None, None)
        );
        assert_eq!(Mask::from_packed(2, 10, m.packed().to_vec()).unwrap(), m);
    }

    #[test]
    fn apply_zeroes_exactly_the_pruned_weights_in_both_layouts() {
        let m = Mask::from_pruned(2, 3, &[true, false, false, false, false, true]).unwrap();
        let mut w = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        m.apply(&mut w).unwrap();
        assert_eq!(w, [0.0, 2.0, 3.0, 4.0, 5.0, 0.0]);
        // the same weight in [in, out] layout: [[1, 4], [2, 5], [3, 6]]
        let mut wt = vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0];
        m.apply_transposed(&mut wt).unwrap();
        assert_eq!(wt, [0.0, 4.0, 2.0, 5.0, 3.0, 0.0]);
        assert!(m.apply(&mut [0.0; 5]).unwrap_err().to_string().contains("5 weights"));
        assert!(m.apply_transposed(&mut [0.0; 7]).is_err());
    }

    #[test]
    fn n_m_check_counts_every_group() {
        // 1 x 8: groups [0..4) prunes 2, [4..8) prunes 2 -> 2:4 holds, 3:4 does not
        let row = [true, false, true, false, false, true, true, false];
        let m = Mask::from_pruned(1, 8, &row).unwrap();
        assert!(m.satisfies_n_m(2, 4));
        assert!(m.satisfies_n_m(4, 8));
        assert!(!m.satisfies_n_m(3, 4));
        assert!(!m.satisfies_n_m(2, 3)); // 8 is not a multiple of 3
        assert!(!m.satisfies_n_m(0, 0));
        let mut one_short = row;
        one_short[5] = false;
        assert!(!Mask::from_pruned(1, 8, &one_short).unwrap().satisfies_n_m(2, 4));
    }

    #[test]
    fn malformed_bits_are_refused() {
        assert!(Mask::from_packed(2, 10, vec![0; 3]).unwrap_err().to_string().contains("3 bytes"));
        let err = Mask::from_packed(1, 10, vec![0, 0b100]).unwrap_err().to_string();
        assert!(err.contains("past the last column"), "{err}");
        assert!(Mask::from_packed(1, 16, vec![0xff, 0xff]).is_ok());
        assert!(Mask::from_pruned(2, 2, &[true; 3]).is_err());
        assert!(Mask::new(usize::MAX, 64).is_err());
    }
}
