use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::silu;
use std::time::Instant;
fn t<F: FnMut() -> f32>(name: &str, n: usize, mut f: F) {
    f();
    let s = Instant::now();
    for _ in 0..n {
        f();
    }
    println!("{name:<40} {:8.2} ms", s.elapsed().as_secs_f64() * 1e3 / n as f64);
}
fn main() {
    let d = Device::flex();
    let x3 = Tensor::<3>::random([4, 256, 384], Distribution::Normal(0.0, 1.0), &d);
    let x2 = x3.clone().reshape([1024, 384]);
    let w = Tensor::<2>::random([384, 1024], Distribution::Normal(0.0, 1.0), &d);
    let wt = Tensor::<2>::random([1024, 384], Distribution::Normal(0.0, 1.0), &d);
    let wl = Tensor::<2>::random([384, 4096], Distribution::Normal(0.0, 1.0), &d);
    let s = |t: Tensor<3>| t.slice([0..1, 0..1, 0..1]).into_scalar::<f32>();
    let s2 = |t: Tensor<2>| t.slice([0..1, 0..1]).into_scalar::<f32>();
    t("matmul2d 1024x384x1024", 10, || s2(x2.clone().matmul(w.clone())));
    t("matmul2d transposed-view W", 10, || s2(x2.clone().matmul(wt.clone().transpose())));
    t("linear 3d [4,256,384]x[384,1024]", 10, || {
        s(burn::tensor::module::linear(x3.clone(), w.clone(), None))
    });
    t("matmul 3d broadcast", 10, || s(x3.clone().matmul(w.clone().unsqueeze())));
    t("lm_head 1024x384x4096", 5, || s(burn::tensor::module::linear(x3.clone(), wl.clone(), None)));
    let big = Tensor::<3>::random([4, 256, 1024], Distribution::Normal(0.0, 1.0), &d);
    t("silu(g)*u [4,256,1024]", 10, || s(silu(big.clone()) * big.clone()));
    t("rmsnorm [4,256,384]", 10, || {
        let inv = (x3.clone().square().mean_dim(2) + 1e-5).sqrt().recip();
        s(x3.clone() * inv)
    });
    let q = Tensor::<4>::random([4, 6, 256, 64], Distribution::Normal(0.0, 1.0), &d);
    let opts = burn::tensor::ops::AttentionModuleOptions { scale: None, softcap: None, is_causal: true };
    t("attention causal [4,6,256,64]", 10, || {
        let o = burn::tensor::module::attention(q.clone(), q.clone(), q.clone(), None, None, opts);
        o.slice([0..1, 0..1, 0..1, 0..1]).into_scalar::<f32>()
    });
    let h = x3.clone().reshape([4, 256, 6, 64]);
    t("reshape+swap_dims+contig", 10, || {
        let o = h.clone().swap_dims(1, 2);
        o.reshape([4, 6 * 256 * 64]).slice([0..1, 0..1]).into_scalar::<f32>()
    });
    let cos = Tensor::<2>::random([256, 64], Distribution::Normal(0.0, 1.0), &d);
    t("rope apply [4,6,256,64]", 10, || {
        let x1 = q.clone().narrow(3, 0, 32);
        let x2 = q.clone().narrow(3, 32, 32);
        let r = Tensor::cat(vec![x2.neg(), x1], 3);
        let o = q.clone() * cos.clone().unsqueeze::<4>() + r * cos.clone().unsqueeze::<4>();
        o.slice([0..1, 0..1, 0..1, 0..1]).into_scalar::<f32>()
    });
    let kv = Tensor::<4>::random([4, 2, 256, 64], Distribution::Normal(0.0, 1.0), &d);
    t("repeat_kv 2->6", 10, || {
        let o = kv.clone().unsqueeze_dim::<5>(2).expand([4, 2, 3, 256, 64]).reshape([4, 6, 256, 64]);
        o.slice([0..1, 0..1, 0..1, 0..1]).into_scalar::<f32>()
    });
    let emb = Tensor::<2>::random([4096, 384], Distribution::Normal(0.0, 1.0), &d);
    let ids = Tensor::<2>::random([4, 256], Distribution::Uniform(0.0, 4096.0), &d).int();
    t("embedding", 10, || s(burn::tensor::module::embedding(emb.clone(), ids.clone())));
}
