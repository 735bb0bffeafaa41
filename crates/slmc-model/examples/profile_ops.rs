//! Where the forward pass spends its time on flex: the pieces of one decoder layer of the
//! `slmc bench forward` model (batch 4 × 256, hidden 384, MLP 1024, 6 heads, vocab 4096), timed
//! one by one: slmc's kernels (`slmc_model::kernels`) beside burn's operations they replace. Run on an idle machine:
//!
//!     cargo run --release -p slmc-model --example profile_ops

// A developer tool run from scripts/: it reports on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::{sigmoid, silu, softmax};
use burn::tensor::module::{attention, linear};
use burn::tensor::ops::AttentionModuleOptions;
use slmc_model::kernels;
use slmc_model::kernels::attention::AttnParams;
use std::time::Instant;

/// Mean milliseconds of `f` over `n` runs after one warm-up.
fn time<F: FnMut() -> f32>(name: &str, n: usize, mut f: F) -> f64 {
    f();
    let s = Instant::now();
    for _ in 0..n {
        f();
    }
    let ms = s.elapsed().as_secs_f64() * 1e3 / n as f64;
    println!("{name:<48} {ms:8.2} ms");
    ms
}

fn main() {
    kernels::tune_allocator();
    let d = Device::flex();
    let rand = |shape: Vec<usize>| {
        Tensor::<1>::random([shape.iter().product::<usize>()], Distribution::Normal(0.0, 1.0), &d)
    };
    let x3: Tensor<3> = rand(vec![1024 * 384]).reshape([4, 256, 384]);
    let x2: Tensor<2> = x3.clone().reshape([1024, 384]);
    let first3 = |t: Tensor<3>| t.slice([0..1, 0..1, 0..1]).into_scalar::<f32>();
    let first4 = |t: Tensor<4>| t.slice([0..1, 0..1, 0..1, 0..1]).into_scalar::<f32>();

    println!("-- matmul [1024 x 384] x [384 x N] (gemm efficiency falls for wide N)");
    for n in [128usize, 384, 640, 1024, 2048, 4096] {
        let w: Tensor<2> = rand(vec![384 * n]).reshape([384, n]);
        let ms = time(&format!("matmul N={n}"), if n > 2000 { 5 } else { 20 }, || {
            x2.clone().matmul(w.clone()).slice([0..1, 0..1]).into_scalar::<f32>()
        });
        println!("{:>48} {:8.0} GFLOP/s", "", 2.0 * 1024.0 * 384.0 * n as f64 / ms / 1e6);
    }
    for n in [384usize, 1024, 4096] {
        let w: Tensor<2> = rand(vec![384 * n]).reshape([384, n]);
        let ms = time(&format!("slmc kernels::linear [4,256,384] x [384,{n}] (used)"), 10, || {
            first3(kernels::linear(x3.clone(), w.clone(), None))
        });
        println!("{:>48} {:8.0} GFLOP/s", "", 2.0 * 1024.0 * 384.0 * n as f64 / ms / 1e6);
        let ms = time(&format!("burn linear [4,256,384] x [384,{n}] (batched)"), 10, || {
            first3(linear(x3.clone(), w.clone(), None))
        });
        println!("{:>48} {:8.0} GFLOP/s", "", 2.0 * 1024.0 * 384.0 * n as f64 / ms / 1e6);
    }
    let w: Tensor<2> = rand(vec![384 * 1024]).reshape([384, 1024]);
    let parts: Vec<Tensor<2>> = (0..2).map(|i| w.clone().narrow(1, i * 512, 512)).collect();
    time("  alternative: two N=512 halves + cat (slower)", 10, || {
        let p: Vec<_> = parts.iter().map(|wc| x2.clone().matmul(wc.clone())).collect();
        Tensor::cat(p, 1).slice([0..1, 0..1]).into_scalar::<f32>()
    });

    println!("-- SwiGLU activation on [4,256,1024]");
    let big: Tensor<3> = rand(vec![1024 * 1024]).reshape([4, 256, 1024]);
    time("burn silu = x * sigmoid(x)", 10, || first3(silu(big.clone())));
    time("x / (1 + exp(-x))", 10, || first3(big.clone() / (big.clone().neg().exp() + 1.0)));
    time("slmc kernels::swiglu(g, u), fused (used)", 10, || {
        first3(kernels::swiglu(big.clone(), big.clone()))
    });
    time("exp alone", 10, || first3(big.clone().exp()));
    time("sigmoid alone", 10, || first3(sigmoid(big.clone())));

    println!("-- attention [4,6,256,64], causal");
    let q: Tensor<4> = rand(vec![4 * 6 * 256 * 64]).reshape([4, 6, 256, 64]);
    let kv: Tensor<4> = rand(vec![4 * 2 * 256 * 64]).reshape([4, 2, 256, 64]);
    let k6 = kv.clone().unsqueeze_dim::<5>(2).expand([4, 2, 3, 256, 64]).reshape([4, 6, 256, 64]);
    let opts = AttentionModuleOptions { scale: None, softcap: None, is_causal: true };
    let params = AttnParams { scale: 0.125, softcap: 0.0, window: 0, offset: 0 };
    time("slmc kernels::attention, GQA in place (used)", 10, || {
        first4(kernels::attention(q.clone(), kv.clone(), kv.clone(), params))
    });
    time("burn attention, kv repeated to 6 heads", 10, || {
        first4(attention(q.clone(), k6.clone(), k6.clone(), None, None, opts))
    });
    time("burn attention, native GQA", 10, || {
        first4(attention(q.clone(), kv.clone(), kv.clone(), None, None, opts))
    });
    let mask = Tensor::<2, Bool>::tril_mask([256, 256], 0, &d).unsqueeze::<4>();
    time("  alternative: matmul + mask + softmax (slower)", 10, || {
        let scores = q.clone().matmul(k6.clone().swap_dims(2, 3)) * 0.125;
        first4(softmax(scores.mask_fill(mask.clone(), f32::NEG_INFINITY), 3).matmul(k6.clone()))
    });

    println!("-- the rest of a layer");
    time("rmsnorm [4,256,384]", 20, || {
        let inv = (x3.clone().square().mean_dim(2) + 1e-5).sqrt().recip();
        first3(x3.clone() * inv)
    });
    let cos: Tensor<2> = rand(vec![256 * 64]).reshape([256, 64]);
    time("rope on q [4,6,256,64]", 20, || {
        let (x1, x2) = (q.clone().narrow(3, 0, 32), q.clone().narrow(3, 32, 32));
        let c = cos.clone().unsqueeze::<4>();
        first4(q.clone() * c.clone() + Tensor::cat(vec![x2.neg(), x1], 3) * c)
    });
    let head: Tensor<2> = rand(vec![384 * 4096]).reshape([384, 4096]);
    time("lm_head [4,256,384] x [384,4096]", 5, || first3(linear(x3.clone(), head.clone(), None)));
}
