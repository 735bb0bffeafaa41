//! Causal grouped-query attention computed in query blocks (flash-attention's schedule without
//! its online rescaling: a block's scores for every visible key fit in a few hundred KB):
//! fully masked key ranges are never computed, grouped key/value heads are read in place
//! (no repeated copies), the softmax runs in one vectorised pass, and the output is written
//! directly in `[batch, seq, heads, head_dim]` order, which is what the output projection reads.
//! The backward recomputes each block's probabilities from the saved row log-sum-exp and
//! accumulates the key and value gradients per key/value head, one head group per task.
//!
//! Scores are `scale · q·k`, then optionally soft-capped (`cap · tanh(s / cap)`, Gemma 2); query
//! `i` sits at position `offset + i` and sees key `j` iff `j ≤ offset + i` and, with a sliding
//! window `w > 0`, `offset + i − j < w` (transformers' convention).

use super::vmath::{self, dispatch};
use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Shape};
use faer::reborrow::ReborrowMut;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

/// Query rows per block.
const BLOCK: usize = 64;

/// The settings of one attention call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttnParams {
    /// Factor on `q·k`.
    pub scale: f32,
    /// Soft-cap on the scaled scores (0: none).
    pub softcap: f32,
    /// Sliding window (0: every earlier position).
    pub window: usize,
    /// Position of the first query (keys before it come from a cache).
    pub offset: usize,
}

impl AttnParams {
    /// The visible key range `[lo, hi)` of the query at row `i`.
    fn visible(&self, i: usize, keys: usize) -> (usize, usize) {
        let pos = self.offset + i;
        let hi = (pos + 1).min(keys);
        let lo = if self.window > 0 { (pos + 1).saturating_sub(self.window) } else { 0 };
        (lo.min(hi), hi)
    }
}

/// A raw pointer that may cross threads: tasks write disjoint parts of one output.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: every task writes a region no other task touches (see the callers).
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// The pointer `n` elements further.
    ///
    /// # Safety
    /// As for `pointer::add`.
    unsafe fn add(self, n: usize) -> *mut f32 {
        unsafe { self.0.add(n) }
    }
}

/// A rank-4 f32 tensor read through its strides.
struct View<'a> {
    data: &'a [f32],
    offset: usize,
    dims: [usize; 4],
    strides: [isize; 4],
}

impl<'a> View<'a> {
    fn new(t: &'a FlexTensor) -> Self {
        assert_eq!(t.dtype(), DType::F32, "attention takes f32");
        let layout = t.layout();
        let shape = layout.shape();
        assert_eq!(shape.num_dims(), 4, "attention takes rank-4 tensors");
        let s = layout.strides();
        Self {
            data: t.storage(),
            offset: layout.start_offset(),
            dims: [shape[0], shape[1], shape[2], shape[3]],
            strides: [s[0], s[1], s[2], s[3]],
        }
    }

    /// The `[rows, cols]` matrix at `(a, b)` of the first two axes.
    fn mat(&self, a: usize, b: usize) -> MatRef<'a, f32> {
        let base = self.offset as isize + a as isize * self.strides[0] + b as isize * self.strides[1];
        // SAFETY: the layout addresses `dims` elements inside `data`; the view borrows them.
        unsafe {
            MatRef::from_raw_parts(
                self.data.as_ptr().offset(base),
                self.dims[2],
                self.dims[3],
                self.strides[2],
                self.strides[3],
            )
        }
    }
}

/// The `[rows, d]` block of a contiguous `[.., rows, .., d]` output at element `base`, rows
/// `row_stride` apart.
///
/// # Safety
/// The region must lie inside the allocation behind `out` and no other live view may touch it.
unsafe fn out_block<'a>(out: Out, base: usize, rows: usize, d: usize, row_stride: usize) -> MatMut<'a, f32> {
    unsafe { MatMut::from_raw_parts_mut(out.add(base), rows, d, row_stride as isize, 1) }
}

/// One block's scores `[rows, len]` (row-major in `buf`) turned into probabilities in place;
/// returns nothing, writes each row's log-sum-exp into `lse`. `fac` (softcap only) receives
/// `1 − tanh²` for the backward.
#[inline(always)]
fn softmax_body(buf: &mut [f32], len: usize, ranges: &[(usize, usize)], p: &AttnParams, lse: &mut [f32]) {
    for (r, &(lo, hi)) in ranges.iter().enumerate() {
        let row = &mut buf[r * len..(r + 1) * len];
        let vis = &mut row[lo..hi];
        if p.softcap > 0.0 {
            for x in vis.iter_mut() {
                *x = p.softcap * tanh(*x * p.scale / p.softcap);
            }
        } else {
            for x in vis.iter_mut() {
                *x *= p.scale;
            }
        }
        let max = vmath::max(vis);
        let sum = vmath::exp_shifted_sum(vis, max);
        let inv = 1.0 / sum;
        for x in vis.iter_mut() {
            *x *= inv;
        }
        row[..lo].fill(0.0);
        row[hi..].fill(0.0);
        lse[r] = max + sum.ln();
    }
}

/// The probabilities of a block again from the saved log-sum-exp (backward), and, with a
/// soft-cap, the factor `1 − tanh²` in `fac` (empty without one).
#[inline(always)]
fn reprob_body(
    buf: &mut [f32],
    fac: &mut [f32],
    len: usize,
    ranges: &[(usize, usize)],
    p: &AttnParams,
    lse: &[f32],
) {
    for (r, &(lo, hi)) in ranges.iter().enumerate() {
        let row = &mut buf[r * len..(r + 1) * len];
        if p.softcap > 0.0 {
            let frow = &mut fac[r * len..(r + 1) * len];
            for (x, f) in row[lo..hi].iter_mut().zip(&mut frow[lo..hi]) {
                let t = tanh(*x * p.scale / p.softcap);
                *f = 1.0 - t * t;
                *x = vmath::exp(p.softcap * t - lse[r]);
            }
        } else {
            for x in &mut row[lo..hi] {
                *x = vmath::exp(*x * p.scale - lse[r]);
            }
        }
        row[..lo].fill(0.0);
        row[hi..].fill(0.0);
    }
}

/// `dP ← P ⊙ (dP − Σ P⊙dP) · fac · scale` per row: the gradient of the raw scores `q·k`.
#[inline(always)]
fn dscore_body(
    prob: &[f32],
    dp: &mut [f32],
    fac: &[f32],
    len: usize,
    ranges: &[(usize, usize)],
    p: &AttnParams,
) {
    for (r, &(lo, hi)) in ranges.iter().enumerate() {
        let (prow, drow) = (&prob[r * len..(r + 1) * len], &mut dp[r * len..(r + 1) * len]);
        let di = vmath::dot(&prow[lo..hi], &drow[lo..hi]);
        if p.softcap > 0.0 {
            let frow = &fac[r * len..(r + 1) * len];
            for ((d, &pr), &f) in drow[lo..hi].iter_mut().zip(&prow[lo..hi]).zip(&frow[lo..hi]) {
                *d = pr * (*d - di) * f * p.scale;
            }
        } else {
            for (d, &pr) in drow[lo..hi].iter_mut().zip(&prow[lo..hi]) {
                *d = pr * (*d - di) * p.scale;
            }
        }
        drow[..lo].fill(0.0);
        drow[hi..].fill(0.0);
    }
}

#[inline(always)]
fn tanh(x: f32) -> f32 {
    // 1 − 2 / (e^{2x} + 1): exact limits ±1, no overflow (exp clamps).
    1.0 - 2.0 / (vmath::exp(2.0 * x) + 1.0)
}

dispatch!(softmax_rows, softmax_body, (buf: &mut [f32], len: usize, ranges: &[(usize, usize)], p: &AttnParams, lse: &mut [f32]));
dispatch!(reprob_rows, reprob_body, (buf: &mut [f32], fac: &mut [f32], len: usize, ranges: &[(usize, usize)], p: &AttnParams, lse: &[f32]));
dispatch!(dscore_rows, dscore_body, (prob: &[f32], dp: &mut [f32], fac: &[f32], len: usize, ranges: &[(usize, usize)], p: &AttnParams));

/// Shapes of a call: `q: [b, nh, s, d]`, `k`, `v: [b, nkv, t, d]`.
fn dims(q: &View, k: &View, v: &View, p: &AttnParams) -> (usize, usize, usize, usize, usize, usize) {
    let [b, nh, s, d] = q.dims;
    let [kb, nkv, t, kd] = k.dims;
    assert!(
        kb == b && kd == d && v.dims == k.dims,
        "attention: q {:?}, k {:?}, v {:?}",
        q.dims,
        k.dims,
        v.dims
    );
    assert!(nkv > 0 && nh % nkv == 0, "attention: {nh} query heads over {nkv} key/value heads");
    assert!(
        p.offset + s == t,
        "attention: {s} queries at offset {} need {} keys, got {t}",
        p.offset,
        p.offset + s
    );
    (b, nh, nkv, s, t, d)
}

/// The visible ranges of rows `i0..i1`, relative to the block's first visible key `lo`, and
/// the block's key range `[lo, hi)`.
fn block_ranges(p: &AttnParams, i0: usize, i1: usize, keys: usize) -> (Vec<(usize, usize)>, usize, usize) {
    let lo = p.visible(i0, keys).0;
    let hi = p.visible(i1 - 1, keys).1;
    let ranges = (i0..i1).map(|i| p.visible(i, keys)).map(|(a, b)| (a - lo, b - lo)).collect();
    (ranges, lo, hi)
}

/// The attention output `[b, s, nh, d]` and each row's log-sum-exp `[b, nh, s]`.
pub fn forward(q: &FlexTensor, k: &FlexTensor, v: &FlexTensor, p: AttnParams) -> (FlexTensor, Vec<f32>) {
    let (qv, kv, vv) = (View::new(q), View::new(k), View::new(v));
    let (b, nh, nkv, s, t, d) = dims(&qv, &kv, &vv, &p);
    let rep = nh / nkv;
    let mut out = FlexTensor::empty(Shape::from(vec![b, s, nh, d]), DType::F32);
    let mut lse = vec![0.0f32; b * nh * s];
    let (optr, lptr) = (Out(out.storage_mut::<f32>().as_mut_ptr()), Out(lse.as_mut_ptr()));
    let blocks = s.div_ceil(BLOCK);
    (0..b * nh * blocks).into_par_iter().for_each(|task| {
        let (bh, blk) = (task / blocks, task % blocks);
        let (bi, h) = (bh / nh, bh % nh);
        let (i0, i1) = (blk * BLOCK, ((blk + 1) * BLOCK).min(s));
        let (ranges, lo, hi) = block_ranges(&p, i0, i1, t);
        let (rows, len) = (i1 - i0, hi - lo);
        let mut buf = vec![0.0f32; rows * len];
        let qm = qv.mat(bi, h).subrows(i0, rows);
        let (km, vm) = (kv.mat(bi, h / rep).subrows(lo, len), vv.mat(bi, h / rep).subrows(lo, len));
        let mut sm = MatMut::from_row_major_slice_mut(&mut buf, rows, len);
        faer::linalg::matmul::matmul(sm.rb_mut(), Accum::Replace, qm, km.transpose(), 1.0f32, Par::Seq);
        // SAFETY: task (bi, h, blk) owns lse[bi, h, i0..i1] and out[bi, i0..i1, h, :].
        let lse_rows = unsafe { std::slice::from_raw_parts_mut(lptr.add(bh * s + i0), rows) };
        softmax_rows(&mut buf, len, &ranges, &p, lse_rows);
        let pm = MatRef::from_row_major_slice(&buf, rows, len);
        let dst = unsafe { out_block(optr, ((bi * s + i0) * nh + h) * d, rows, d, nh * d) };
        faer::linalg::matmul::matmul(dst, Accum::Replace, pm, vm, 1.0f32, Par::Seq);
    });
    (out, lse)
}

/// Gradients `(dq [b, nh, s, d], dk, dv [b, nkv, t, d])` from the output gradient
/// `dout: [b, s, nh, d]` and the forward's log-sum-exp.
pub fn backward(
    q: &FlexTensor,
    k: &FlexTensor,
    v: &FlexTensor,
    lse: &[f32],
    dout: &FlexTensor,
    p: AttnParams,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let (qv, kv, vv) = (View::new(q), View::new(k), View::new(v));
    let (b, nh, nkv, s, t, d) = dims(&qv, &kv, &vv, &p);
    let rep = nh / nkv;
    // dout as [b, nh, s, d] through its strides (it arrives as [b, s, nh, d]).
    let dout_bhsd = dout.clone().with_layout(dout.layout().permute(&[0, 2, 1, 3]));
    let dov = View::new(&dout_bhsd);
    let mut dq = FlexTensor::empty(Shape::from(vec![b, nh, s, d]), DType::F32);
    let mut dk = FlexTensor::empty(Shape::from(vec![b, nkv, t, d]), DType::F32);
    let mut dv = FlexTensor::empty(Shape::from(vec![b, nkv, t, d]), DType::F32);
    let (qp, kp, vp) = (
        Out(dq.storage_mut::<f32>().as_mut_ptr()),
        Out(dk.storage_mut::<f32>().as_mut_ptr()),
        Out(dv.storage_mut::<f32>().as_mut_ptr()),
    );
    (0..b * nkv).into_par_iter().for_each(|task| {
        let (bi, g) = (task / nkv, task % nkv);
        // SAFETY: task (bi, g) owns dk/dv[bi, g] and dq[bi, h] for the heads h of group g.
        let mut dkm = unsafe { out_block(kp, task * t * d, t, d, d) };
        let mut dvm = unsafe { out_block(vp, task * t * d, t, d, d) };
        let (km_all, vm_all) = (kv.mat(bi, g), vv.mat(bi, g));
        for h in g * rep..(g + 1) * rep {
            for i0 in (0..s).step_by(BLOCK) {
                let i1 = (i0 + BLOCK).min(s);
                let (ranges, lo, hi) = block_ranges(&p, i0, i1, t);
                let (rows, len) = (i1 - i0, hi - lo);
                let (km, vm) = (km_all.subrows(lo, len), vm_all.subrows(lo, len));
                let qm = qv.mat(bi, h).subrows(i0, rows);
                let dom = dov.mat(bi, h).subrows(i0, rows);
                let mut prob = vec![0.0f32; rows * len];
                let mut dp = vec![0.0f32; rows * len];
                let mut fac = if p.softcap > 0.0 { vec![0.0f32; rows * len] } else { Vec::new() };
                let mut pm = MatMut::from_row_major_slice_mut(&mut prob, rows, len);
                faer::linalg::matmul::matmul(
                    pm.rb_mut(),
                    Accum::Replace,
                    qm,
                    km.transpose(),
                    1.0f32,
                    Par::Seq,
                );
                let row_lse = &lse[(bi * nh + h) * s + i0..(bi * nh + h) * s + i1];
                reprob_rows(&mut prob, &mut fac, len, &ranges, &p, row_lse);
                let pm = MatRef::from_row_major_slice(&prob, rows, len);
                // dV[lo..hi] += Pᵀ · dO
                faer::linalg::matmul::matmul(
                    dvm.rb_mut().subrows_mut(lo, len),
                    Accum::Add,
                    pm.transpose(),
                    dom,
                    1.0f32,
                    Par::Seq,
                );
                let mut dpm = MatMut::from_row_major_slice_mut(&mut dp, rows, len);
                faer::linalg::matmul::matmul(
                    dpm.rb_mut(),
                    Accum::Replace,
                    dom,
                    vm.transpose(),
                    1.0f32,
                    Par::Seq,
                );
                dscore_rows(&prob, &mut dp, &fac, len, &ranges, &p);
                let dsm = MatRef::from_row_major_slice(&dp, rows, len);
                let dqm = unsafe { out_block(qp, ((bi * nh + h) * s + i0) * d, rows, d, d) };
                faer::linalg::matmul::matmul(dqm, Accum::Replace, dsm, km, 1.0f32, Par::Seq);
                faer::linalg::matmul::matmul(
                    dkm.rb_mut().subrows_mut(lo, len),
                    Accum::Add,
                    dsm.transpose(),
                    qm,
                    1.0f32,
                    Par::Seq,
                );
            }
        }
    });
    (dq, dk, dv)
}
