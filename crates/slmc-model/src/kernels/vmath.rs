//! Vectorised elementwise kernels on `f32` slices: `exp` by range reduction and a degree-6
//! polynomial (Cephes' `expf`, about 1 ulp on the reduced range), and the fused SwiGLU
//! activation `silu(g) · u` with its gradient. Written as branch-free loops that the compiler
//! vectorises; `dispatch!` runs them compiled for AVX-512 or AVX2 when the CPU has it (the
//! default build targets baseline x86-64, whose 4-wide SSE2 is what flex's scalar `exp` loses to).
//! Rows are split over the rayon pool.

use rayon::prelude::*;

/// Elements per rayon task (large enough that scheduling costs nothing measurable).
const CHUNK: usize = 16 * 1024;

/// `e^x` for one value, branch-free. `x` is clamped to [-87, 88] (beyond: within f32 rounding of
/// 0 or of the f32 maximum's order, which SiLU and softmax cannot tell apart); NaN stays NaN.
#[inline(always)]
#[allow(clippy::excessive_precision)] // the minimax polynomial's coefficients as published (Cephes expf)
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 · 2^23: adding it rounds to an integer held in the low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    let nan = x.is_nan();
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E + MAGIC;
    let n = t - MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5e-1;
    let y = p * r * r + r + 1.0;
    // 2^n: n sits in t's mantissa offset by 0x4B40_0000; rebias it to an exponent.
    let scale = f32::from_bits((t.to_bits().wrapping_sub(0x4B40_0000).wrapping_add(127)) << 23);
    if nan { f32::NAN } else { y * scale }
}

/// Lanes of the reductions below: independent partial results the compiler keeps in one vector
/// register (a float reduction in one accumulator cannot be vectorised without reassociating).
const LANES: usize = 16;

/// The largest value of `xs` (-inf when empty).
#[inline(always)]
pub fn max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            acc[l] = if c[l] > acc[l] { c[l] } else { acc[l] };
        }
    }
    tail.iter().chain(&acc).fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
}

/// `Σ a·b`.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let n = a.len().min(b.len()) / LANES * LANES;
    for (ca, cb) in a[..n].chunks_exact(LANES).zip(b[..n].chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] += ca[l] * cb[l];
        }
    }
    let tail: f32 = a[n..].iter().zip(&b[n..]).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// `x ← e^(x − shift)` in place; returns the sum of the results.
#[inline(always)]
pub fn exp_shifted_sum(xs: &mut [f32], shift: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let n = xs.len() / LANES * LANES;
    let (body, tail) = xs.split_at_mut(n);
    for c in body.chunks_exact_mut(LANES) {
        for l in 0..LANES {
            c[l] = exp(c[l] - shift);
            acc[l] += c[l];
        }
    }
    let mut t = 0.0;
    for x in tail {
        *x = exp(*x - shift);
        t += *x;
    }
    acc.iter().sum::<f32>() + t
}

/// `Σ e^(x − shift)`.
#[inline(always)]
pub fn sum_exp(xs: &[f32], shift: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().map(|&x| exp(x - shift)).sum();
    for c in chunks {
        for l in 0..LANES {
            acc[l] += exp(c[l] - shift);
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn log_softmax_body(x: &[f32], width: usize, out: &mut [f32]) {
    for (xr, or) in x.chunks_exact(width).zip(out.chunks_exact_mut(width)) {
        let m = max(xr);
        let shift = m + sum_exp(xr, m).ln();
        for (o, &v) in or.iter_mut().zip(xr) {
            *o = v - shift;
        }
    }
}

#[inline(always)]
fn log_softmax_grad_body(out: &[f32], dy: &[f32], width: usize, dx: &mut [f32]) {
    for ((or, dr), xr) in out.chunks_exact(width).zip(dy.chunks_exact(width)).zip(dx.chunks_exact_mut(width))
    {
        let mut acc = [0.0f32; LANES];
        let chunks = dr.chunks_exact(LANES);
        let tail: f32 = chunks.remainder().iter().sum();
        for c in chunks {
            for l in 0..LANES {
                acc[l] += c[l];
            }
        }
        let total = acc.iter().sum::<f32>() + tail;
        for ((d, &o), &g) in xr.iter_mut().zip(or).zip(dr) {
            *d = g - exp(o) * total;
        }
    }
}

#[inline(always)]
fn swiglu_body(g: &[f32], u: &[f32], out: &mut [f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(g).zip(u) {
        *o = g * u / (1.0 + exp(-g));
    }
}

#[inline(always)]
fn swiglu_grad_body(g: &[f32], u: &[f32], dy: &[f32], dg: &mut [f32], du: &mut [f32]) {
    for ((((dg, du), &g), &u), &dy) in dg.iter_mut().zip(du.iter_mut()).zip(g).zip(u).zip(dy) {
        let s = 1.0 / (1.0 + exp(-g));
        let silu = g * s;
        *du = dy * silu;
        *dg = dy * u * (s + silu * (1.0 - s));
    }
}

/// Declares `$name`, which runs `$body` compiled for the best instruction set the CPU has.
macro_rules! dispatch {
    ($name:ident, $body:ident, ($($arg:ident: $ty:ty),*) $(-> $ret:ty)?) => {
        // The wrappers take their kernel's parameters as they are.
        #[allow(clippy::too_many_arguments)]
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? { $body($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? { $body($($arg),*) }
                if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw")
                    && std::is_x86_feature_detected!("avx512dq") && std::is_x86_feature_detected!("avx512vl")
                {
                    // SAFETY: the CPU has the features the function was compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: as above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}
pub(crate) use dispatch;

dispatch!(swiglu_simd, swiglu_body, (g: &[f32], u: &[f32], out: &mut [f32]));
dispatch!(swiglu_grad_simd, swiglu_grad_body, (g: &[f32], u: &[f32], dy: &[f32], dg: &mut [f32], du: &mut [f32]));
dispatch!(log_softmax_simd, log_softmax_body, (x: &[f32], width: usize, out: &mut [f32]));
dispatch!(log_softmax_grad_simd, log_softmax_grad_body, (out: &[f32], dy: &[f32], width: usize, dx: &mut [f32]));

/// Rows per rayon task for row-wise kernels over rows of `width` values.
fn rows_per_task(width: usize) -> usize {
    CHUNK.div_ceil(width.max(1))
}

/// `out = x − logsumexp(x)` over each row of `width` values.
pub fn log_softmax(x: &[f32], width: usize, out: &mut [f32]) {
    assert!(
        width > 0 && x.len() == out.len() && x.len().is_multiple_of(width),
        "log_softmax: shape mismatch"
    );
    let step = rows_per_task(width) * width;
    out.par_chunks_mut(step)
        .enumerate()
        .for_each(|(i, o)| log_softmax_simd(&x[i * step..i * step + o.len()], width, o));
}

/// The gradient of [`log_softmax`] from its output `out` and the output gradient `dy`:
/// `dx = dy − e^out · Σ_row dy`.
pub fn log_softmax_grad(out: &[f32], dy: &[f32], width: usize, dx: &mut [f32]) {
    assert!(
        width > 0 && out.len() == dy.len() && dy.len() == dx.len() && out.len().is_multiple_of(width),
        "log_softmax_grad: shape mismatch"
    );
    let step = rows_per_task(width) * width;
    dx.par_chunks_mut(step).enumerate().for_each(|(i, d)| {
        let r = i * step..i * step + d.len();
        log_softmax_grad_simd(&out[r.clone()], &dy[r], width, d)
    });
}

/// `out = silu(g) · u = g · u / (1 + e^-g)`, elementwise.
pub fn swiglu(g: &[f32], u: &[f32], out: &mut [f32]) {
    assert!(g.len() == u.len() && u.len() == out.len(), "swiglu: length mismatch");
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(i, o)| {
        let r = i * CHUNK..i * CHUNK + o.len();
        swiglu_simd(&g[r.clone()], &u[r], o);
    });
}

/// The gradient of [`swiglu`] given the output gradient `dy`: `dg = dy · u · s · (1 + g(1 − s))`,
/// `du = dy · g · s` with `s = σ(g)`.
pub fn swiglu_grad(g: &[f32], u: &[f32], dy: &[f32], dg: &mut [f32], du: &mut [f32]) {
    let n = g.len();
    assert!(u.len() == n && dy.len() == n && dg.len() == n && du.len() == n, "swiglu_grad: length mismatch");
    dg.par_chunks_mut(CHUNK).zip(du.par_chunks_mut(CHUNK)).enumerate().for_each(|(i, (dg, du))| {
        let r = i * CHUNK..i * CHUNK + dg.len();
        swiglu_grad_simd(&g[r.clone()], &u[r.clone()], &dy[r], dg, du);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_std_over_the_useful_range() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, want) = (exp(x) as f64, (x as f64).exp());
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 2.5e-7, "max relative error {worst:e}");
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(-1000.0), exp(-87.0));
        assert!(exp(1000.0).is_finite() && exp(0.0) == 1.0);
    }

    #[test]
    fn swiglu_and_its_gradient_match_the_closed_form_and_finite_differences() {
        let n = 40_000; // more than two rayon chunks
        let g: Vec<f32> = (0..n).map(|i| ((i * 37 % 1001) as f32 - 500.0) / 40.0).collect();
        let u: Vec<f32> = (0..n).map(|i| ((i * 13 % 97) as f32 - 48.0) / 10.0).collect();
        let dy: Vec<f32> = (0..n).map(|i| ((i * 7 % 31) as f32 - 15.0) / 7.0).collect();
        let mut out = vec![0.0; n];
        swiglu(&g, &u, &mut out);
        let (mut dg, mut du) = (vec![0.0; n], vec![0.0; n]);
        swiglu_grad(&g, &u, &dy, &mut dg, &mut du);
        let f = |g: f64, u: f64| g * u / (1.0 + (-g).exp());
        for i in 0..n {
            let (gi, ui, d) = (g[i] as f64, u[i] as f64, dy[i] as f64);
            let want = f(gi, ui);
            assert!((out[i] as f64 - want).abs() <= 1e-6 * want.abs().max(1.0), "{i}: {} vs {want}", out[i]);
            let h = 1e-4;
            let dg_fd = d * (f(gi + h, ui) - f(gi - h, ui)) / (2.0 * h);
            let du_fd = d * f(gi, 1.0);
            assert!(
                (dg[i] as f64 - dg_fd).abs() <= 1e-4 * dg_fd.abs().max(1.0),
                "{i}: dg {} vs {dg_fd}",
                dg[i]
            );
            assert!(
                (du[i] as f64 - du_fd).abs() <= 1e-5 * du_fd.abs().max(1.0),
                "{i}: du {} vs {du_fd}",
                du[i]
            );
        }
    }
}
