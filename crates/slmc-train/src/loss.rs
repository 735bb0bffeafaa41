//! Token-level losses, computed in f32 and normalised by the number of target tokens.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

/// Mean next-token cross-entropy of `logits: [B, T, V]` against `targets: [B, T]`.
pub fn cross_entropy(logits: Tensor<3>, targets: Tensor<2, Int>) -> Tensor<1> {
    let logp = log_softmax(logits, 2);
    let picked = logp.gather(2, targets.unsqueeze_dim::<3>(2));
    picked.mean().neg()
}

/// Sum of token NLLs and token count (for evaluation, reduced on the host in f64).
pub fn nll_sum(logits: Tensor<3>, targets: Tensor<2, Int>) -> (f64, usize) {
    let n = targets.dims()[0] * targets.dims()[1];
    let logp = log_softmax(logits, 2);
    let picked: Vec<f32> =
        logp.gather(2, targets.unsqueeze_dim::<3>(2)).into_data().convert::<f32>().try_to_vec().expect("f32");
    (-picked.iter().map(|&x| x as f64).sum::<f64>(), n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_logits_give_log_vocab() {
        let dev = Device::flex();
        let logits = Tensor::<3>::zeros([2, 3, 8], &dev);
        let targets = Tensor::<2, Int>::from_data([[1, 2, 3], [4, 5, 6]], &dev);
        let l: f32 = cross_entropy(logits.clone(), targets.clone()).into_scalar();
        assert!((l - 8f32.ln()).abs() < 1e-6);
        let (sum, n) = nll_sum(logits, targets);
        assert_eq!(n, 6);
        assert!((sum / 6.0 - 8f64.ln()).abs() < 1e-6);
    }
}
