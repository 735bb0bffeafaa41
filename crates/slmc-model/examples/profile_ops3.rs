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
    let x2 = Tensor::<2>::random([1024, 384], Distribution::Normal(0.0, 1.0), &d);
    for n in [1024usize, 4096] {
        let w = Tensor::<2>::random([384, n], Distribution::Normal(0.0, 1.0), &d);
        t(&format!("plain N={n}"), 10, || {
            x2.clone().matmul(w.clone()).slice([0..1, 0..1]).into_scalar::<f32>()
        });
        for chunk in [256usize, 512] {
            let ws: Vec<Tensor<2>> = (0..n / chunk).map(|i| w.clone().narrow(1, i * chunk, chunk)).collect();
            t(&format!("  N-split {chunk} (view) + cat"), 10, || {
                let parts: Vec<_> = ws.iter().map(|wc| x2.clone().matmul(wc.clone())).collect();
                Tensor::cat(parts, 1).slice([0..1, 0..1]).into_scalar::<f32>()
            });
            let wc: Vec<Tensor<2>> = (0..n / chunk)
                .map(|i| Tensor::from_data(w.clone().narrow(1, i * chunk, chunk).into_data(), &d))
                .collect();
            t(&format!("  N-split {chunk} (contig) + cat"), 10, || {
                let parts: Vec<_> = wc.iter().map(|wc| x2.clone().matmul(wc.clone())).collect();
                Tensor::cat(parts, 1).slice([0..1, 0..1]).into_scalar::<f32>()
            });
        }
        for rows in [128usize, 256, 512] {
            t(&format!("  M-split {rows} + cat"), 10, || {
                let parts: Vec<_> = (0..1024 / rows)
                    .map(|i| x2.clone().narrow(0, i * rows, rows).matmul(w.clone()))
                    .collect();
                Tensor::cat(parts, 0).slice([0..1, 0..1]).into_scalar::<f32>()
            });
        }
        let wt = Tensor::<2>::from_data(w.clone().transpose().into_data(), &d);
        t(&format!("  W stored [N,K] transposed view"), 10, || {
            x2.clone().matmul(wt.clone().transpose()).slice([0..1, 0..1]).into_scalar::<f32>()
        });
    }
    let big = Tensor::<3>::random([4, 256, 1024], Distribution::Normal(0.0, 1.0), &d);
    let s = |t: Tensor<3>| t.slice([0..1, 0..1, 0..1]).into_scalar::<f32>();
    t("silu 1M", 10, || s(silu(big.clone())));
    t("x/(1+exp(-x)) 1M", 10, || s(big.clone() / (big.clone().neg().exp() + 1.0)));
    t("x*sigmoid 1M", 10, || s(big.clone() * sigmoid(big.clone())));
}
