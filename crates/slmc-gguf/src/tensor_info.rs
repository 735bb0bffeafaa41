//! GGUF tensor-info records and the rules llama.cpp's `gguf.cpp` enforces on them.

use crate::ggml::GgmlType;

/// Longest tensor name llama.cpp accepts, in bytes (`GGML_MAX_NAME` − 1 for the NUL).
pub const MAX_NAME_BYTES: usize = 63;
/// Most dimensions a tensor can have (`GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;

/// Name, shape and type of one tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// GGUF tensor name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions in ggml order, innermost first: a PyTorch `[out, in]` matrix is `[in, out]`.
    pub ne: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
}

impl TensorInfo {
    /// A tensor from its PyTorch/Hugging Face shape (outermost first), reversing it into ggml order.
    pub fn from_torch_shape(name: impl Into<String>, shape: &[usize], ggml_type: GgmlType) -> Self {
        Self { name: name.into(), ne: shape.iter().rev().map(|&d| d as u64).collect(), ggml_type }
    }

    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.ne.iter().product()
    }

    /// Number of rows (`n_elements / ne[0]`, 1 for a vector).
    pub fn n_rows(&self) -> u64 {
        self.ne.iter().skip(1).product()
    }

    /// Bytes of data, as `gguf.cpp` computes them. Call [`TensorInfo::check`] first: this assumes a
    /// valid record.
    pub fn n_bytes(&self) -> u64 {
        let row = self.ne.first().copied().unwrap_or(1);
        self.ggml_type.row_bytes(row).unwrap_or(0) * self.n_rows()
    }

    /// Checks the record the way `gguf.cpp` does: name length, dimension count, no overflow of the
    /// element count, and a first dimension that is a whole number of blocks.
    pub fn check(&self) -> Result<(), String> {
        if self.name.is_empty() {
            return Err("tensor name is empty".into());
        }
        if self.name.len() > MAX_NAME_BYTES {
            return Err(format!(
                "tensor name `{}` is {} bytes; llama.cpp allows at most {MAX_NAME_BYTES}",
                self.name,
                self.name.len()
            ));
        }
        if self.ne.len() > MAX_DIMS {
            return Err(format!(
                "tensor `{}` has {} dimensions; at most {MAX_DIMS}",
                self.name,
                self.ne.len()
            ));
        }
        let mut total: i64 = 1;
        for &d in &self.ne {
            let d = i64::try_from(d)
                .map_err(|_| format!("tensor `{}` has dimension {d} > i64::MAX", self.name))?;
            total = total.checked_mul(d).ok_or_else(|| {
                format!("tensor `{}`: element count {:?} overflows i64", self.name, self.ne)
            })?;
        }
        // The byte size must fit in u64 too (type sizes ≤ 8 bytes per element).
        if total.checked_mul(8).is_none() {
            return Err(format!("tensor `{}`: byte size of {:?} overflows", self.name, self.ne));
        }
        let row = self.ne.first().copied().unwrap_or(1);
        if row % self.ggml_type.block_size() as u64 != 0 {
            return Err(format!(
                "tensor `{}`: ne[0] = {row} is not a multiple of the {} block size {}",
                self.name,
                self.ggml_type,
                self.ggml_type.block_size()
            ));
        }
        let rows = self.ne.iter().skip(1).try_fold(1u64, |acc, &d| acc.checked_mul(d));
        let bytes = self.ggml_type.row_bytes(row).zip(rows).and_then(|(b, r)| b.checked_mul(r));
        if bytes.is_none_or(|b| b > i64::MAX as u64) {
            return Err(format!("tensor `{}`: byte size of {:?} overflows", self.name, self.ne));
        }
        Ok(())
    }
}

/// Rounds `x` up to a multiple of `align` (a power of two). `None` on overflow.
pub fn align_up(x: u64, align: u64) -> Option<u64> {
    debug_assert!(align.is_power_of_two());
    x.checked_add(align - 1).map(|v| v & !(align - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_reverse_and_sizes_follow_blocks() {
        let t = TensorInfo::from_torch_shape("w", &[3, 512], GgmlType::Q4K);
        assert_eq!(t.ne, vec![512, 3]);
        assert_eq!(t.n_bytes(), 3 * 2 * 144);
        assert!(t.check().is_ok());
        let bad = TensorInfo::from_torch_shape("w", &[3, 64], GgmlType::Q4K);
        assert!(bad.check().unwrap_err().contains("not a multiple"));
        let long = TensorInfo::from_torch_shape("x".repeat(64), &[4], GgmlType::F32);
        assert!(long.check().unwrap_err().contains("at most 63"));
        let huge = TensorInfo { name: "h".into(), ne: vec![u64::MAX / 2, 4], ggml_type: GgmlType::F32 };
        assert!(huge.check().unwrap_err().contains("overflow"));
        // A zero dimension hides a huge row from the element count.
        let zero = TensorInfo { name: "z".into(), ne: vec![1 << 62, 0], ggml_type: GgmlType::F32 };
        assert!(zero.check().unwrap_err().contains("overflow"));
        let rows = TensorInfo { name: "r".into(), ne: vec![0, 1 << 40, 1 << 40], ggml_type: GgmlType::F32 };
        assert!(rows.check().unwrap_err().contains("overflow"));
        assert_eq!(align_up(33, 32), Some(64));
        assert_eq!(align_up(64, 32), Some(64));
        assert_eq!(align_up(u64::MAX - 3, 32), None);
    }
}
