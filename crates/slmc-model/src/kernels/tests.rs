//! The fused kernels against burn's unfused composition: values and gradients.

use super::*;
use burn::tensor::Distribution;
use std::sync::Mutex;

/// burn's random generator is process-wide; tests drawing from it run one at a time.
static RNG: Mutex<()> = Mutex::new(());

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec().unwrap()
}

fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-30);
    a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

fn random<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

#[test]
fn linear_matches_burn_in_values_and_gradients() {
    let _g = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let dev = Device::flex().autodiff();
    for (b, s, i, o) in [(2, 7, 5, 3), (4, 64, 96, 160), (1, 1, 33, 17)] {
        let x = random([b, s, i], &dev).require_grad();
        let w = random([i, o], &dev).require_grad();
        let bias = random([o], &dev).require_grad();
        assert!(on_flex(&x) && on_flex(&w), "the fused path applies on flex under autodiff");
        let wt = random([b, s, o], &dev.clone().inner());
        let fused = linear(x.clone(), w.clone(), Some(bias.clone()));
        let plain = burn::tensor::module::linear(x.clone(), w.clone(), Some(bias.clone()));
        assert!(max_rel(&values(fused.clone()), &values(plain.clone())) < 1e-5);
        // Gradients of <y, wt> through each path.
        let g1 = (fused * Tensor::from_inner(wt.clone())).sum().backward();
        let g2 = (plain * Tensor::from_inner(wt)).sum().backward();
        for (name, ga, gb) in [
            ("x", values(x.grad(&g1).unwrap()), values(x.grad(&g2).unwrap())),
            ("w", values(w.grad(&g1).unwrap()), values(w.grad(&g2).unwrap())),
            ("bias", values(bias.grad(&g1).unwrap()), values(bias.grad(&g2).unwrap())),
        ] {
            assert!(
                max_rel(&ga, &gb) < 1e-5,
                "{name} gradient differs ({b}x{s}x{i}x{o}): {}",
                max_rel(&ga, &gb)
            );
        }
    }
}

#[test]
fn matmul_reads_strided_operands() {
    let _g = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let dev = Device::flex();
    let a = random([12, 20], &dev);
    assert!(on_flex(&a));
    let b = random([30, 12], &dev);
    // A transposed view and a column slice: non-contiguous layouts with an offset.
    let (at, bs) = (a.clone().transpose(), b.clone().narrow(0, 5, 20).narrow(1, 2, 9));
    let ones = Tensor::<2>::ones([12, 4], &dev);
    assert!(max_rel(&values(matmul(at.clone(), ones.clone())), &values(at.clone().matmul(ones))) < 1e-6);
    assert!(
        max_rel(
            &values(matmul(at.clone(), bs.clone().narrow(0, 0, 12))),
            &values(at.matmul(bs.narrow(0, 0, 12)))
        ) < 1e-6
    );
}

#[test]
fn swiglu_matches_the_composition_in_values_and_gradients() {
    let _g = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let dev = Device::flex().autodiff();
    let g = (random([3, 50, 70], &dev) * 4.0).detach().require_grad();
    let u = random([3, 50, 70], &dev).require_grad();
    let wt = Tensor::<3>::from_inner(random([3, 50, 70], &dev.clone().inner()));
    let fused = swiglu(g.clone(), u.clone());
    let plain = silu(g.clone()) * u.clone();
    assert!(max_rel(&values(fused.clone()), &values(plain.clone())) < 1e-6);
    let g1 = (fused * wt.clone()).sum().backward();
    let g2 = (plain * wt).sum().backward();
    assert!(max_rel(&values(g.grad(&g1).unwrap()), &values(g.grad(&g2).unwrap())) < 1e-5);
    assert!(max_rel(&values(u.grad(&g1).unwrap()), &values(u.grad(&g2).unwrap())) < 1e-6);
}

#[test]
fn other_dtypes_take_the_composition() {
    let dev = Device::flex();
    let x = Tensor::<2>::from_data([[1.0f32, -2.0], [0.5, 3.0]], &dev).cast(DType::BF16);
    assert!(!on_flex(&x));
    let y = values(swiglu(x.clone(), x));
    assert!((y[0] - 0.731).abs() < 0.01, "{y:?}");
}

/// Attention composed from burn operations: `[b, s, nh, d]`.
fn attention_reference(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, p: attention::AttnParams) -> Tensor<4> {
    let [b, nh, s, d] = q.dims();
    let [_, nkv, t, _] = k.dims();
    let rep = |x: Tensor<4>| x.unsqueeze_dim::<5>(2).expand([b, nkv, nh / nkv, t, d]).reshape([b, nh, t, d]);
    let mut scores = q.matmul(rep(k).swap_dims(2, 3)) * p.scale as f64;
    if p.softcap > 0.0 {
        scores = (scores / p.softcap as f64).tanh() * p.softcap as f64;
    }
    let hide: Vec<bool> = (0..s)
        .flat_map(|i| {
            let pos = p.offset + i;
            (0..t).map(move |j| j > pos || (p.window > 0 && pos - j >= p.window))
        })
        .collect();
    let mask = Tensor::<2, Bool>::from_data(TensorData::new(hide, [s, t]), &scores.device()).unsqueeze::<4>();
    let probs = burn::tensor::activation::softmax(scores.mask_fill(mask, f32::NEG_INFINITY), 3);
    probs.matmul(rep(v)).swap_dims(1, 2)
}

#[test]
fn attention_matches_the_composition_in_values_and_gradients() {
    let _g = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let dev = Device::flex().autodiff();
    // (batch, heads, kv heads, queries, cached keys, head dim, window, softcap): a block edge
    // (70 > 64 queries), grouped heads, a sliding window, a soft-cap, and a cache offset.
    for (b, nh, nkv, s, off, d, window, softcap) in [
        (2, 4, 2, 70, 0, 16, 0, 0.0),
        (1, 3, 3, 130, 0, 8, 20, 0.0),
        (2, 2, 1, 33, 0, 12, 0, 5.0),
        (1, 4, 2, 5, 40, 16, 16, 0.0),
    ] {
        let p = attention::AttnParams { scale: 1.0 / (d as f32).sqrt(), softcap, window, offset: off };
        let q = (random([b, nh, s, d], &dev) * 2.0).detach().require_grad();
        let k = (random([b, nkv, off + s, d], &dev) * 2.0).detach().require_grad();
        let v = random([b, nkv, off + s, d], &dev).require_grad();
        let wt = Tensor::<4>::from_inner(random([b, s, nh, d], &dev.clone().inner()));
        let fused = attention(q.clone(), k.clone(), v.clone(), p);
        let plain = attention_reference(q.clone(), k.clone(), v.clone(), p);
        let case = format!("b{b} h{nh}/{nkv} s{s} off{off} d{d} w{window} cap{softcap}");
        assert!(max_rel(&values(fused.clone()), &values(plain.clone())) < 2e-6, "{case}: values");
        let g1 = (fused * wt.clone()).sum().backward();
        let g2 = (plain * wt).sum().backward();
        for (name, t) in [("q", &q), ("k", &k), ("v", &v)] {
            let err = max_rel(&values(t.grad(&g1).unwrap()), &values(t.grad(&g2).unwrap()));
            assert!(err < 1e-5, "{case}: d{name} differs by {err:e}");
        }
    }
}

#[test]
fn log_softmax_matches_burn_in_values_and_gradients() {
    let _g = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let dev = Device::flex().autodiff();
    for shape in [[3, 5, 4096], [2, 7, 33], [1, 1, 1]] {
        let x = (random(shape, &dev) * 8.0).detach().require_grad();
        let wt = Tensor::<3>::from_inner(random(shape, &dev.clone().inner()));
        let fused = log_softmax(x.clone());
        let plain = burn::tensor::activation::log_softmax(x.clone(), 2);
        assert!(max_rel(&values(fused.clone()), &values(plain.clone())) < 1e-6, "{shape:?}");
        let g1 = (fused * wt.clone()).sum().backward();
        let g2 = (plain * wt).sum().backward();
        let err = max_rel(&values(x.grad(&g1).unwrap()), &values(x.grad(&g2).unwrap()));
        assert!(err < 1e-5, "{shape:?}: gradient differs by {err:e}");
    }
}

#[test]
fn rope_matches_the_composition_in_values_and_gradients() {
    let _g = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let dev = Device::flex().autodiff();
    // Full and partial rotary width; the input is a transposed view as in the decoder.
    for (d, rot) in [(16, 16), (20, 8)] {
        let (b, h, s) = (2, 3, 7);
        let x = random([b, s, h, d], &dev).require_grad();
        let xv = x.clone().swap_dims(1, 2);
        let cos = random([s, rot], &dev).detach();
        let sin = random([s, rot], &dev).detach();
        let fused = rope(xv.clone(), &cos, &sin).expect("flex f32");
        let (c, sn) = (cos.clone().unsqueeze::<4>(), sin.clone().unsqueeze::<4>());
        // A second view of x: each backward below consumes its own tape.
        let xv = x.clone().swap_dims(1, 2);
        let xr = xv.clone().narrow(3, 0, rot);
        let rotated = Tensor::cat(
            vec![xr.clone().narrow(3, rot / 2, rot / 2).neg(), xr.clone().narrow(3, 0, rot / 2)],
            3,
        );
        let mut plain = xr * c + rotated * sn;
        if rot < d {
            plain = Tensor::cat(vec![plain, xv.narrow(3, rot, d - rot)], 3);
        }
        assert!(max_rel(&values(fused.clone()), &values(plain.clone())) < 1e-6, "d {d} rot {rot}");
        let wt = Tensor::<4>::from_inner(random([b, h, s, d], &dev.clone().inner()));
        let g1 = (fused * wt.clone()).sum().backward();
        let g2 = (plain * wt).sum().backward();
        let err = max_rel(&values(x.grad(&g1).unwrap()), &values(x.grad(&g2).unwrap()));
        assert!(err < 1e-6, "d {d} rot {rot}: gradient differs by {err:e}");
    }
}

#[test]
fn rms_norm_matches_the_composition_in_values_and_gradients() {
    let _g = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let dev = Device::flex().autodiff();
    for (shape, offset) in [([2, 70, 48], 0.0), ([1, 3, 5], 1.0), ([3, 130, 320], 0.0)] {
        let x = (random(shape, &dev) * 3.0).detach().require_grad();
        let w = random([shape[2]], &dev).require_grad();
        let eps = 1e-5;
        let fused = rms_norm(x.clone(), &w, eps, offset).expect("flex f32");
        let inv = (x.clone().square().mean_dim(2) + eps).sqrt().recip();
        let plain = x.clone() * inv * (w.clone().unsqueeze::<3>() + offset);
        assert!(max_rel(&values(fused.clone()), &values(plain.clone())) < 1e-6, "{shape:?}");
        let wt = Tensor::<3>::from_inner(random(shape, &dev.clone().inner()));
        let g1 = (fused * wt.clone()).sum().backward();
        let g2 = (plain * wt).sum().backward();
        for (name, a, b) in [
            ("x", values(x.grad(&g1).unwrap()), values(x.grad(&g2).unwrap())),
            ("w", values(w.grad(&g1).unwrap()), values(w.grad(&g2).unwrap())),
        ] {
            assert!(max_rel(&a, &b) < 1e-5, "{shape:?} d{name}: {:e}", max_rel(&a, &b));
        }
    }
}
