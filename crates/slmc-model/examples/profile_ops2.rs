use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::{sigmoid, silu};
use std::time::Instant;
fn t<F: FnMut() -> f32>(name: &str, n: usize, mut f: F) {
    f();
    let s = Instant::now();
    for _ in 0..n {
        f();
    }
    println!("{name:<44} {:8.2} ms", s.elapsed().as_secs_f64() * 1e3 / n as f64);
}
fn main() {
    let d = Device::flex();
    let big = Tensor::<3>::random([4, 256, 1024], Distribution::Normal(0.0, 1.0), &d);
    let s = |t: Tensor<3>| t.slice([0..1, 0..1, 0..1]).into_scalar::<f32>();
    t("sigmoid 1M", 10, || s(sigmoid(big.clone())));
    t("mul 1M", 10, || s(big.clone() * big.clone()));
    t("exp 1M", 10, || s(big.clone().exp()));
    t("silu 1M", 10, || s(silu(big.clone())));
    t("tanh 1M", 10, || s(big.clone().tanh()));
    let x2 = Tensor::<2>::random([1024, 384], Distribution::Normal(0.0, 1.0), &d);
    for n in [128usize, 384, 640, 1024, 2048, 4096] {
        let w = Tensor::<2>::random([384, n], Distribution::Normal(0.0, 1.0), &d);
        let it = if n > 2000 { 5 } else { 20 };
        let name = format!("matmul 1024x384x{n}");
        let start = Instant::now();
        t(&name, it, || x2.clone().matmul(w.clone()).slice([0..1, 0..1]).into_scalar::<f32>());
        let _ = start;
        let flops = 2.0 * 1024.0 * 384.0 * n as f64;
        let s0 = Instant::now();
        for _ in 0..it {
            x2.clone().matmul(w.clone()).slice([0..1, 0..1]).into_scalar::<f32>();
        }
        println!("   -> {:.0} GFLOP/s", flops * it as f64 / s0.elapsed().as_secs_f64() / 1e9);
    }
    let x3 = Tensor::<2>::random([1024, 1024], Distribution::Normal(0.0, 1.0), &d);
    let w3 = Tensor::<2>::random([1024, 384], Distribution::Normal(0.0, 1.0), &d);
    let s0 = Instant::now();
    for _ in 0..20 {
        x3.clone().matmul(w3.clone()).slice([0..1, 0..1]).into_scalar::<f32>();
    }
    println!(
        "matmul 1024x1024x384 {:.0} GFLOP/s",
        2.0 * 1024.0 * 1024.0 * 384.0 * 20.0 / s0.elapsed().as_secs_f64() / 1e9
    );
}
