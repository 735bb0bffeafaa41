//! Matrix products of flex tensors through faer's f32 kernels. Measured on the 2-core AVX-512
//! machine (`cargo run --release -p slmc-model --example profile_ops`), faer sustains about
//! 200 GFLOP/s on the decoder's shapes (1024 tokens × 384 → 1024 or 4096 and their backward
//! products) where burn-flex's `gemm` 0.19 path reaches 100–180, depending on whether it splits
//! the work itself. Operands are read in place through their strides; a transposed operand is a
//! view, never a copy.

use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Shape};
use faer::{Accum, MatMut, MatRef, Par};

/// An `f32` matrix view of a rank-2 flex tensor (`transposed`: its transpose).
fn view(t: &FlexTensor, transposed: bool) -> MatRef<'_, f32> {
    let layout = t.layout();
    let shape = layout.shape();
    assert_eq!(shape.num_dims(), 2, "kernels::gemm takes rank-2 tensors");
    assert_eq!(t.dtype(), DType::F32, "kernels::gemm takes f32 tensors");
    let (rows, cols) = (shape[0], shape[1]);
    let strides = layout.strides();
    let data: &[f32] = t.storage();
    // SAFETY: the layout describes `rows × cols` elements inside `data` starting at its offset,
    // which is what flex's own strided matmul relies on; the view borrows `t`.
    let m = unsafe {
        MatRef::from_raw_parts(data.as_ptr().add(layout.start_offset()), rows, cols, strides[0], strides[1])
    };
    if transposed { m.transpose() } else { m }
}

/// `op(a) · op(b)` as a new contiguous `[m, n]` tensor, where `op` transposes when asked.
pub fn matmul(a: &FlexTensor, ta: bool, b: &FlexTensor, tb: bool) -> FlexTensor {
    let (a, b) = (view(a, ta), view(b, tb));
    assert_eq!(a.ncols(), b.nrows(), "kernels::gemm: inner dimensions differ");
    let (m, n) = (a.nrows(), b.ncols());
    let mut out = FlexTensor::empty(Shape::from(vec![m, n]), DType::F32);
    let dst = MatMut::from_row_major_slice_mut(out.storage_mut::<f32>(), m, n);
    faer::linalg::matmul::matmul(dst, Accum::Replace, a, b, 1.0f32, Par::rayon(0));
    out
}
