//! slmc's own CPU kernels for the hot operations of the decoder, used on flex for f32 tensors
//! (every other backend and dtype takes burn's composition, which computes the same values):
//!
//! - [`linear`] / [`matmul`]: faer's f32 gemm instead of flex's (see [`gemm`]); the backward
//!   reads the saved operands as transposed views.
//! - [`swiglu`]: `silu(gate) · up` in one pass with a vectorised `exp`, and its gradient in one
//!   pass, instead of five elementwise tape nodes.
//! - [`rms_norm`]: RMSNorm in one pass each way.
//! - [`rope`]: the rotary embedding in one pass each way.
//! - [`log_softmax`] over the last dimension: one pass each way, for every loss and evaluation.
//! - [`attention()`]: causal (sliding-window, soft-capped) grouped-query attention in query
//!   blocks that skip masked keys, forward and backward, instead of burn's composition (whose
//!   autodiff form materialises the full score square several times).
//!
//! Each is one burn backend-extension operation ([`FusedOps`]) with its own backward under
//! autodiff, so training, distillation, calibration and evaluation all take it. Each is tested
//! against burn's composition, values and gradients (`kernels/tests.rs`). [`tune_allocator`]
//! keeps freed tensor buffers in the process (the binary calls it at start).

mod allocator;
pub mod attention;
mod extension;
pub mod gemm;
mod rms_norm;
mod rope;
pub mod vmath;

pub use allocator::{release_free_memory, tune_allocator};
use burn::backend::{Dispatch, DispatchDevice};
use burn::prelude::*;
use burn::tensor::DType;
pub use extension::FusedOps;

/// Whether the kernels are on: they are unless the environment sets `SLMC_KERNELS=off` (or
/// `attention-off` for everything but attention), which makes every operation take burn's
/// composition; for comparing the two and for benchmarks.
pub fn enabled(kernel: &str) -> bool {
    static SETTING: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let setting = SETTING.get_or_init(|| std::env::var("SLMC_KERNELS").unwrap_or_default());
    match setting.as_str() {
        "off" => false,
        "attention-off" => kernel != "attention",
        _ => true,
    }
}

/// Whether `t` lives on flex (with or without autodiff) and holds f32: where the kernels apply.
pub fn on_flex<const D: usize>(t: &Tensor<D>) -> bool {
    if t.dtype() != DType::F32 || !enabled("") {
        return false;
    }
    match t.device().as_dispatch() {
        DispatchDevice::Flex(_) => true,
        DispatchDevice::Autodiff(inner) => matches!(**inner, DispatchDevice::Flex(_)),
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// Whether burn's fused `attention` computes what burn documents on `device`: not on libtorch
/// (burn-tch 0.22.1, see `layers::composed_attention`), with or without autodiff.
pub fn burn_attention_is_faithful(device: &Device) -> bool {
    match device.as_dispatch() {
        #[cfg(feature = "tch")]
        DispatchDevice::LibTorch(_) => false,
        #[cfg(feature = "tch")]
        DispatchDevice::Autodiff(inner) => !matches!(**inner, DispatchDevice::LibTorch(_)),
        #[allow(unreachable_patterns)]
        _ => true,
    }
}

/// `a · b` for `a: [m, k]`, `b: [k, n]`.
pub fn matmul(a: Tensor<2>, b: Tensor<2>) -> Tensor<2> {
    if on_flex(&a) && on_flex(&b) {
        Tensor::from_dispatch(<Dispatch as FusedOps>::fused_matmul(a.into_dispatch(), b.into_dispatch()))
    } else {
        a.matmul(b)
    }
}

/// `x · w + b` for `x: [batch, seq, in]`, `w: [in, out]`, `b: [out]`, as burn's
/// `module::linear` computes it.
pub fn linear(x: Tensor<3>, w: Tensor<2>, bias: Option<Tensor<1>>) -> Tensor<3> {
    if !(on_flex(&x) && on_flex(&w)) {
        return burn::tensor::module::linear(x, w, bias);
    }
    let [b, s, i] = x.dims();
    let out = w.dims()[1];
    let x = x.reshape([b * s, i]).into_dispatch();
    let y = Tensor::<2>::from_dispatch(<Dispatch as FusedOps>::fused_matmul(x, w.into_dispatch()))
        .reshape([b, s, out]);
    match bias {
        Some(bias) => y + bias.unsqueeze::<3>(),
        None => y,
    }
}

/// `silu(gate) · up` (SwiGLU), with SiLU as `x / (1 + e^-x)`.
pub fn swiglu<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    if on_flex(&gate) && on_flex(&up) && gate.dims() == up.dims() {
        return Tensor::from_dispatch(<Dispatch as FusedOps>::fused_swiglu(
            gate.into_dispatch(),
            up.into_dispatch(),
        ));
    }
    silu(gate) * up
}

/// `log_softmax` over the last dimension (one pass forward, one backward).
pub fn log_softmax<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if on_flex(&x) {
        return Tensor::from_dispatch(<Dispatch as FusedOps>::fused_log_softmax(x.into_dispatch()));
    }
    burn::tensor::activation::log_softmax(x, D - 1)
}

/// RMSNorm over the last dimension, `x · r · (w + offset)` with `r = 1 / √(mean(x²) + eps)`,
/// f32 (`offset` 1: Gemma's `1 + w`). `None` where the kernel does not apply.
pub fn rms_norm<const D: usize>(x: Tensor<D>, w: &Tensor<1>, eps: f64, offset: f64) -> Option<Tensor<D>> {
    if !(on_flex(&x) && on_flex(w)) {
        return None;
    }
    Some(Tensor::from_dispatch(<Dispatch as FusedOps>::fused_rms_norm(
        x.into_dispatch(),
        w.clone().into_dispatch(),
        eps as f32,
        offset as f32,
    )))
}

/// Rotary embedding of `x: [b, h, s, d]` with `cos`, `sin: [s, rot]` (rotate-half; dimensions
/// past `rot` pass through): `x·cos + rotate_half(x)·sin`. `None` where the kernel does not
/// apply; the caller composes it.
pub fn rope(x: Tensor<4>, cos: &Tensor<2>, sin: &Tensor<2>) -> Option<Tensor<4>> {
    if !(on_flex(&x) && on_flex(cos) && on_flex(sin)) {
        return None;
    }
    let (cos, sin) = (cos.clone().detach(), sin.clone().detach());
    Some(Tensor::from_dispatch(<Dispatch as FusedOps>::fused_rope(
        x.into_dispatch(),
        cos.into_dispatch(),
        sin.into_dispatch(),
    )))
}

/// Causal attention of `q: [b, nh, s, d]` over `k`, `v: [b, nkv, offset + s, d]` (grouped heads
/// read in place), returned as `[b, s, nh, d]`. Only where [`on_flex`] holds for all three; other
/// backends compose it from burn operations.
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, params: attention::AttnParams) -> Tensor<4> {
    assert!(on_flex(&q) && on_flex(&k) && on_flex(&v), "kernels::attention runs on flex f32 tensors");
    let attention::AttnParams { scale, softcap, window, offset } = params;
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        scale,
        softcap,
        window,
        offset,
    ))
}

/// SiLU as `x / (1 + e^-x)` in burn operations: one `exp` pass and cheap arithmetic, about twice
/// as fast on flex as burn's branchy `x * sigmoid(x)`; equal to it in f32 up to rounding, and
/// safe for large |x| (`e^-x` = inf gives -0, the limit).
pub fn silu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    x.clone() / (x.neg().exp() + 1.0)
}

#[cfg(test)]
mod tests;
