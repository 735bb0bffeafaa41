//! Rotary position embedding (rotate-half, optional partial rotary dimension) in one pass over
//! the heads instead of burn's narrow / neg / cat / two products / sum, and its gradient (the
//! rotation by the opposite angle) in one pass.
//!
//! For `x = [x₁ | x₂ | pass]` with halves of width `rot / 2` and tables `cos`, `sin: [seq, rot]`:
//! `y₁ = x₁·cos₁ − x₂·sin₁`, `y₂ = x₂·cos₂ + x₁·sin₂`, `pass` unchanged (transformers'
//! `x·cos + rotate_half(x)·sin`).

use burn::backend::flex::FlexTensor;
use burn::tensor::DType;
use rayon::prelude::*;

/// Applies the rotation to `x: [b, h, s, d]` (any strides; `inverse`: the opposite angle,
/// which is the gradient), returning a contiguous `[b, h, s, d]` tensor. `cos`, `sin`: `[s, rot]`
/// row-major.
pub fn rotate(x: &FlexTensor, cos: &[f32], sin: &[f32], rot: usize, inverse: bool) -> FlexTensor {
    assert_eq!(x.dtype(), DType::F32, "rope takes f32");
    let layout = x.layout();
    let shape = layout.shape().clone();
    assert_eq!(shape.num_dims(), 4, "rope takes [batch, heads, seq, head_dim]");
    let (heads, s, d) = (shape[1], shape[2], shape[3]);
    let (st, off) = (layout.strides().to_vec(), layout.start_offset() as isize);
    assert!(
        rot <= d && rot.is_multiple_of(2) && cos.len() == s * rot && sin.len() == s * rot,
        "rope: table shape"
    );
    let data: &[f32] = x.storage();
    let mut out = FlexTensor::empty(shape, DType::F32);
    let half = rot / 2;
    out.storage_mut::<f32>().par_chunks_mut(s * d).enumerate().for_each_with(
        vec![0.0f32; d],
        |row, (i, o)| {
            let (b, h) = (i / heads, i % heads);
            let base = off + b as isize * st[0] + h as isize * st[1];
            for p in 0..s {
                let start = base + p as isize * st[2];
                let src: &[f32] = if st[3] == 1 {
                    &data[start as usize..start as usize + d]
                } else {
                    for (j, v) in row.iter_mut().enumerate() {
                        *v = data[(start + j as isize * st[3]) as usize];
                    }
                    row
                };
                let (c, sn) = (&cos[p * rot..(p + 1) * rot], &sin[p * rot..(p + 1) * rot]);
                let dst = &mut o[p * d..(p + 1) * d];
                let (x1, x2) = (&src[..half], &src[half..rot]);
                let (c1, c2, s1, s2) = (&c[..half], &c[half..], &sn[..half], &sn[half..]);
                let (y1, rest) = dst.split_at_mut(half);
                let (y2, pass) = rest.split_at_mut(half);
                if inverse {
                    // dx₁ = dy₁·cos₁ + dy₂·sin₂, dx₂ = dy₂·cos₂ − dy₁·sin₁
                    for j in 0..half {
                        y1[j] = x1[j] * c1[j] + x2[j] * s2[j];
                        y2[j] = x2[j] * c2[j] - x1[j] * s1[j];
                    }
                } else {
                    for j in 0..half {
                        y1[j] = x1[j] * c1[j] - x2[j] * s1[j];
                        y2[j] = x2[j] * c2[j] + x1[j] * s2[j];
                    }
                }
                pass.copy_from_slice(&src[rot..d]);
            }
        },
    );
    out
}

/// The values of a rank-2 table tensor, row-major.
pub fn table(t: &FlexTensor) -> Vec<f32> {
    match t.as_slice::<f32>() {
        Some(v) => v.to_vec(),
        None => t.to_contiguous().as_slice::<f32>().expect("contiguous").to_vec(),
    }
}
