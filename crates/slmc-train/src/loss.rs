//! Token-level losses, computed in f32 and normalised by the number of target tokens.

use burn::prelude::*;
use slmc_model::kernels::log_softmax;

/// Mean next-token cross-entropy of `logits: [B, T, V]` against `targets: [B, T]`.
pub fn cross_entropy(logits: Tensor<3>, targets: Tensor<2, Int>) -> Tensor<1> {
    let logp = log_softmax(logits);
    let picked = logp.gather(2, targets.unsqueeze_dim::<3>(2));
    picked.mean().neg()
}

/// Per-token next-token NLL of `logits: [N, V]` (a chunk of flattened positions) against
/// `targets: [N]`: `[N]`, in f32. The building block of the chunked losses ([`crate::chunked`]).
pub fn token_nll(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let logp = log_softmax(logits);
    logp.gather(1, targets.unsqueeze_dim::<2>(1)).squeeze_dim::<1>(1).neg()
}

/// Mean of per-token values `x: [B, T]` over the tokens whose weight in `weights: [B, T]` is 1
/// (weights are 0 or 1): `Σ x·w / Σ w`. transformers' and PEFT's semantics for `labels = -100`.
pub fn masked_mean(x: Tensor<2>, weights: Tensor<2>) -> Tensor<1> {
    (x * weights.clone()).sum() / weights.sum()
}

/// [`cross_entropy`] over the target tokens whose weight is 1 (`None`: every token, the same
/// computation as [`cross_entropy`]).
pub fn masked_cross_entropy(
    logits: Tensor<3>,
    targets: Tensor<2, Int>,
    weights: Option<Tensor<2>>,
) -> Tensor<1> {
    let Some(w) = weights else { return cross_entropy(logits, targets) };
    let logp = log_softmax(logits);
    let picked = logp.gather(2, targets.unsqueeze_dim::<3>(2)).squeeze_dim::<2>(2);
    masked_mean(picked, w).neg()
}

/// Sum of the NLLs of the target tokens whose weight is 1 and their count (`None`: every token;
/// the same as [`nll_sum`]).
pub fn masked_nll_sum(
    logits: Tensor<3>,
    targets: Tensor<2, Int>,
    weights: Option<Tensor<2>>,
) -> (f64, usize) {
    let Some(w) = weights else { return nll_sum(logits, targets) };
    let logp = log_softmax(logits);
    let picked: Vec<f32> =
        logp.gather(2, targets.unsqueeze_dim::<3>(2)).into_data().convert::<f32>().try_to_vec().expect("f32");
    let w: Vec<f32> = w.into_data().convert::<f32>().try_to_vec().expect("f32");
    let sum: f64 = picked.iter().zip(&w).filter(|p| *p.1 > 0.0).map(|p| *p.0 as f64).sum();
    (-sum, w.iter().filter(|&&x| x > 0.0).count())
}

/// Sum of token NLLs and token count (for evaluation, reduced on the host in f64).
pub fn nll_sum(logits: Tensor<3>, targets: Tensor<2, Int>) -> (f64, usize) {
    let n = targets.dims()[0] * targets.dims()[1];
    let logp = log_softmax(logits);
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

    #[test]
    fn masked_cross_entropy_is_the_mean_over_trained_targets() {
        let dev = Device::flex();
        // Two sequences of two positions over a vocabulary of 3.
        let logits = Tensor::<3>::from_data(
            [[[1.0f32, 2.0, 0.5], [0.0, -1.0, 3.0]], [[2.0, 2.0, 2.0], [-2.0, 0.0, 1.0]]],
            &dev,
        );
        let targets = Tensor::<2, Int>::from_data([[1, 0], [2, 2]], &dev);
        let weights = Tensor::<2>::from_data([[1.0f32, 0.0], [0.0, 1.0]], &dev);
        // By hand: -log softmax([1, 2, 0.5])[1] and -log softmax([-2, 0, 1])[2], averaged.
        let nll = |v: [f64; 3], t: usize| -(v[t] - v.iter().map(|x| x.exp()).sum::<f64>().ln());
        let want = (nll([1.0, 2.0, 0.5], 1) + nll([-2.0, 0.0, 1.0], 2)) / 2.0;
        assert!((want - 0.40669).abs() < 1e-5, "{want}");
        let got: f32 =
            masked_cross_entropy(logits.clone(), targets.clone(), Some(weights.clone())).into_scalar();
        assert!((got as f64 - want).abs() < 1e-6, "{got} vs {want}");
        let (sum, n) = masked_nll_sum(logits.clone(), targets.clone(), Some(weights));
        assert_eq!(n, 2);
        assert!((sum / 2.0 - want).abs() < 1e-6);
        // Without weights it is the plain mean over all four targets, bit for bit.
        let plain: f32 = cross_entropy(logits.clone(), targets.clone()).into_scalar();
        let none: f32 = masked_cross_entropy(logits, targets, None).into_scalar();
        assert_eq!(plain.to_bits(), none.to_bits());
    }
}
