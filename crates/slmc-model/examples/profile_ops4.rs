use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::softmax;
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
    let q = Tensor::<4>::random([4, 6, 256, 64], Distribution::Normal(0.0, 1.0), &d);
    let kv = Tensor::<4>::random([4, 2, 256, 64], Distribution::Normal(0.0, 1.0), &d);
    let k6 = kv.clone().unsqueeze_dim::<5>(2).expand([4, 2, 3, 256, 64]).reshape([4, 6, 256, 64]);
    let s4 = |t: Tensor<4>| t.slice([0..1, 0..1, 0..1, 0..1]).into_scalar::<f32>();
    let opts = burn::tensor::ops::AttentionModuleOptions { scale: None, softcap: None, is_causal: true };
    t("burn attention causal, repeated kv", 10, || {
        s4(burn::tensor::module::attention(q.clone(), k6.clone(), k6.clone(), None, None, opts))
    });
    t("burn attention causal, native GQA", 10, || {
        s4(burn::tensor::module::attention(q.clone(), kv.clone(), kv.clone(), None, None, opts))
    });
    let mask = Tensor::<2, Bool>::tril_mask([256, 256], 0, &d).unsqueeze::<4>();
    t("manual matmul+mask+softmax", 10, || {
        let sc = q.clone().matmul(k6.clone().swap_dims(2, 3)) * 0.125;
        let p = softmax(sc.mask_fill(mask.clone(), f32::NEG_INFINITY), 3);
        s4(p.matmul(k6.clone()))
    });
}
