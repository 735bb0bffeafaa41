//! The trait every ggml block type implements, and the generic row loops built on it.

use super::GgmlType;

/// One quantization block: a fixed number of values stored in a fixed number of bytes.
///
/// Implementors are `#[repr(C)]` structs laid out exactly like ggml's `block_*` structs
/// (`ggml-common.h`); each has a compile-time check that its size equals [`Block::BYTES`].
pub trait Block: Sized + Copy {
    /// The ggml type this block belongs to.
    const TYPE: GgmlType;
    /// Values per block.
    const ELEMS: usize;
    /// Bytes per block.
    const BYTES: usize;

    /// Quantizes exactly [`Block::ELEMS`] values with ggml's reference algorithm
    /// (`quantize_row_*_ref`), bit for bit.
    fn quantize(x: &[f32]) -> Self;

    /// Writes the [`Block::ELEMS`] values the block encodes into `y` (ggml's `dequantize_row_*`).
    fn dequantize(&self, y: &mut [f32]);

    /// Serialises the block into exactly [`Block::BYTES`] bytes (little-endian, ggml layout).
    fn write(&self, out: &mut [u8]);

    /// Reads a block from exactly [`Block::BYTES`] bytes.
    fn read(bytes: &[u8]) -> Self;
}

/// Quantizes `x` (a whole number of blocks) into `out` (`x.len() / ELEMS * BYTES` bytes).
pub(crate) fn quantize_into<B: Block>(x: &[f32], out: &mut [u8]) {
    debug_assert_eq!(x.len() % B::ELEMS, 0);
    debug_assert_eq!(out.len(), x.len() / B::ELEMS * B::BYTES);
    for (xb, ob) in x.chunks_exact(B::ELEMS).zip(out.chunks_exact_mut(B::BYTES)) {
        B::quantize(xb).write(ob);
    }
}

/// Dequantizes whole blocks of `bytes` into `y` (`bytes.len() / BYTES * ELEMS` values).
pub(crate) fn dequantize_into<B: Block>(bytes: &[u8], y: &mut [f32]) {
    debug_assert_eq!(bytes.len() % B::BYTES, 0);
    debug_assert_eq!(y.len(), bytes.len() / B::BYTES * B::ELEMS);
    for (b, yb) in bytes.chunks_exact(B::BYTES).zip(y.chunks_exact_mut(B::ELEMS)) {
        B::read(b).dequantize(yb);
    }
}

/// Asserts at compile time that a block struct has ggml's size.
macro_rules! assert_block_size {
    ($ty:ty, $bytes:expr) => {
        const _: () = assert!(std::mem::size_of::<$ty>() == $bytes);
        const _: () = assert!(<$ty as $crate::ggml::Block>::BYTES == $bytes);
    };
}
pub(crate) use assert_block_size;
