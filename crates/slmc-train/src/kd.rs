//! Distillation losses (docs/algorithms.md §7): token-level divergences between teacher and student
//! distributions at temperature τ, in f32, summed over the vocabulary and averaged over tokens
//! (over the trained tokens when a batch of instruction rows carries loss weights).

use crate::loss::masked_mean;
use burn::prelude::*;
use slmc_model::kernels::log_softmax;

/// Which divergence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Divergence {
    /// KL(p_T ‖ q_S): mass-covering (Hinton KD).
    ForwardKl,
    /// KL(q_S ‖ p_T): mode-seeking.
    ReverseKl,
    /// Generalised Jensen–Shannon: β·KL(p‖m) + (1−β)·KL(q‖m), m = βp + (1−β)q. β = 0 is forward KL
    /// and β = 1 reverse KL (special-cased, as TRL does: the mixture formula vanishes there).
    Jsd {
        /// Mixture weight of the teacher.
        beta: f64,
    },
}

/// Σ_v a·(log a − log b) over the last dim, for log-probabilities `la`, `lb`: `[B, T, V]` → `[B, T]`.
fn kl(la: Tensor<3>, lb: Tensor<3>) -> Tensor<2> {
    (la.clone().exp() * (la - lb)).sum_dim(2).squeeze_dim::<2>(2)
}

/// Per-token divergence `[B, T]` between teacher logits (constant) and student logits, both
/// `[B, T, V]`, at temperature `tau` (without the τ² factor).
pub fn divergence(teacher: Tensor<3>, student: Tensor<3>, tau: f64, kind: Divergence) -> Tensor<2> {
    let lp = log_softmax(teacher.detach() / tau);
    let lq = log_softmax(student / tau);
    match kind {
        Divergence::ForwardKl | Divergence::Jsd { beta: 0.0 } => kl(lp, lq),
        Divergence::ReverseKl | Divergence::Jsd { beta: 1.0 } => kl(lq, lp),
        Divergence::Jsd { beta } => {
            // log m = logsumexp(log p + log β, log q + log(1−β)), computed stably.
            let a = lp.clone() + beta.ln();
            let b = lq.clone() + (1.0 - beta).ln();
            let hi = a.clone().max_pair(b.clone());
            let lm = hi.clone() + ((a - hi.clone()).exp() + (b - hi).exp()).log();
            kl(lp, lm.clone()) * beta + kl(lq, lm) * (1.0 - beta)
        }
    }
}

/// The KD term of the loss: mean over tokens of `τ² · divergence` (over the tokens of weight 1
/// when `weights: [B, T]` is given).
pub fn kd_loss(
    teacher: Tensor<3>,
    student: Tensor<3>,
    tau: f64,
    kind: Divergence,
    weights: Option<Tensor<2>>,
) -> Tensor<1> {
    let d = divergence(teacher, student, tau, kind);
    match weights {
        None => d.mean() * (tau * tau),
        Some(w) => masked_mean(d, w) * (tau * tau),
    }
}

/// Forward KL against a cached top-K teacher distribution: `ids`/`logp` `[B, T, K]` are the
/// teacher's K most likely tokens and their log-probabilities at temperature τ. The mass outside
/// the K tokens goes into one tail bucket on both sides (docs/algorithms.md §7.5), so with
/// K = vocab this equals [`kd_loss`] with [`Divergence::ForwardKl`]. The student stays normalised
/// over the full vocabulary. Returns the mean over tokens (of weight 1, with `weights`) times τ².
pub fn topk_forward_kl(
    ids: Tensor<3, Int>,
    logp: Tensor<3>,
    student: Tensor<3>,
    tau: f64,
    weights: Option<Tensor<2>>,
) -> Tensor<1> {
    let d = topk_divergence(ids, logp, student, tau);
    match weights {
        None => d.mean() * (tau * tau),
        Some(w) => masked_mean(d, w) * (tau * tau),
    }
}

/// Per-token `[B, T]` forward KL against a cached top-K teacher distribution, tail bucket included
/// (without the τ² factor); see [`topk_forward_kl`].
fn topk_divergence(ids: Tensor<3, Int>, logp: Tensor<3>, student: Tensor<3>, tau: f64) -> Tensor<2> {
    let lq_all = log_softmax(student / tau);
    let lq = lq_all.gather(2, ids);
    let p = logp.clone().exp();
    let head = (p.clone() * (logp - lq.clone())).sum_dim(2);
    // Tail bucket: P_tail = 1 − Σp, q_tail = 1 − Σq (clamped away from 0 and 1 for the logs).
    let eps = 1e-6;
    let p_tail = (p.sum_dim(2).neg() + 1.0).clamp(0.0, 1.0);
    let q_tail = (lq.exp().sum_dim(2).neg() + 1.0).clamp(eps, 1.0);
    let tail = p_tail.clone() * (p_tail.clamp(eps, 1.0).log() - q_tail.log());
    (head + tail).squeeze_dim::<2>(2)
}

/// Per-token divergence `[N]` for a chunk of `N` flattened positions: teacher and student logits
/// `[N, V]` (see [`divergence`]; without the τ² factor).
pub fn token_divergence(teacher: Tensor<2>, student: Tensor<2>, tau: f64, kind: Divergence) -> Tensor<1> {
    divergence(teacher.unsqueeze_dim::<3>(0), student.unsqueeze_dim::<3>(0), tau, kind).squeeze_dim::<1>(0)
}

/// Per-token forward KL `[N]` against cached top-K ids and log-probabilities `[N, K]` for a chunk
/// of `N` flattened positions with student logits `[N, V]` (see [`topk_forward_kl`]; without the
/// τ² factor).
pub fn token_topk_forward_kl(
    ids: Tensor<2, Int>,
    logp: Tensor<2>,
    student: Tensor<2>,
    tau: f64,
) -> Tensor<1> {
    topk_divergence(ids.unsqueeze_dim::<3>(0), logp.unsqueeze_dim::<3>(0), student.unsqueeze_dim::<3>(0), tau)
        .squeeze_dim::<1>(0)
}

/// Hidden-state matching, per token and dimension: mean squared error, or `1 − cosine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HiddenLoss {
    /// Mean squared error.
    Mse,
    /// One minus cosine similarity.
    Cosine,
}

/// Distance between (projected) student and teacher hidden states `[B, T, D]`, averaged over
/// tokens (of weight 1, with `weights`) and dimensions.
pub fn hidden_loss(
    student: Tensor<3>,
    teacher: Tensor<3>,
    kind: HiddenLoss,
    weights: Option<Tensor<2>>,
) -> Tensor<1> {
    let teacher = teacher.detach();
    match (kind, weights) {
        (HiddenLoss::Mse, None) => (student - teacher).square().mean(),
        (HiddenLoss::Mse, Some(w)) => {
            masked_mean((student - teacher).square().mean_dim(2).squeeze_dim::<2>(2), w)
        }
        (HiddenLoss::Cosine, w) => {
            let dot = (student.clone() * teacher.clone()).sum_dim(2);
            let ns = student.square().sum_dim(2).sqrt();
            let nt = teacher.square().sum_dim(2).sqrt();
            let per_token = (dot / (ns * nt + 1e-8)).neg().add_scalar(1.0);
            match w {
                None => per_token.mean(),
                Some(w) => masked_mean(per_token.squeeze_dim::<2>(2), w),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn logits(seed: u64) -> Tensor<3> {
        let d = Device::flex();
        d.seed(seed);
        Tensor::random([2, 3, 11], Distribution::Normal(0.0, 2.0), &d)
    }

    fn scalar(t: Tensor<1>) -> f32 {
        t.into_scalar()
    }

    #[test]
    fn divergences_vanish_on_equal_distributions_and_are_positive_otherwise() {
        let (a, b) = (logits(1), logits(2));
        for kind in [Divergence::ForwardKl, Divergence::ReverseKl, Divergence::Jsd { beta: 0.5 }] {
            assert!(scalar(kd_loss(a.clone(), a.clone(), 2.0, kind, None)).abs() < 1e-5, "{kind:?}");
            assert!(scalar(kd_loss(a.clone(), b.clone(), 2.0, kind, None)) > 0.01, "{kind:?}");
        }
    }

    #[test]
    fn jsd_half_is_symmetric_and_its_ends_are_the_kls() {
        let (a, b) = (logits(3), logits(4));
        let j = |x: &Tensor<3>, y: &Tensor<3>, beta| {
            scalar(kd_loss(x.clone(), y.clone(), 1.0, Divergence::Jsd { beta }, None))
        };
        assert!((j(&a, &b, 0.5) - j(&b, &a, 0.5)).abs() < 1e-5);
        assert_eq!(j(&a, &b, 0.0), scalar(kd_loss(a.clone(), b.clone(), 1.0, Divergence::ForwardKl, None)));
        assert_eq!(j(&a, &b, 1.0), scalar(kd_loss(a.clone(), b.clone(), 1.0, Divergence::ReverseKl, None)));
        // JSD is bounded by ln 2 per token.
        assert!(j(&a, &b, 0.5) < std::f32::consts::LN_2);
        // The mixture loss is continuous inside (0, 1): near 0 it approaches 0, not FKL.
        assert!(j(&a, &b, 1e-4) < 0.01 * j(&a, &b, 0.0));
    }

    #[test]
    fn forward_kl_matches_a_hand_computed_value() {
        let d = Device::flex();
        let t = Tensor::<3>::from_data([[[0.0f32, 1.0, 2.0]]], &d);
        let s = Tensor::<3>::from_data([[[1.0f32, 0.0, 0.0]]], &d);
        let sm = |v: [f64; 3]| {
            let z: f64 = v.iter().map(|x| x.exp()).sum();
            v.map(|x| x.exp() / z)
        };
        let (p, q) = (sm([0.0, 1.0, 2.0]), sm([1.0, 0.0, 0.0]));
        let want: f64 = (0..3).map(|i| p[i] * (p[i] / q[i]).ln()).sum();
        let got = scalar(kd_loss(t, s, 1.0, Divergence::ForwardKl, None)) as f64;
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }

    #[test]
    fn topk_with_the_full_vocabulary_equals_the_online_loss() {
        let (t, s) = (logits(5), logits(6));
        let tau = 2.0;
        let lp = log_softmax(t.clone() / tau);
        let (vals, ids) = lp.sort_descending_with_indices(2);
        let cached = scalar(topk_forward_kl(ids.clone(), vals.clone(), s.clone(), tau, None));
        let online = scalar(kd_loss(t.clone(), s.clone(), tau, Divergence::ForwardKl, None));
        assert!((cached - online).abs() < 1e-4 * online.abs().max(1.0), "{cached} vs {online}");
        // Masked: the mean over the tokens of weight 1 only, for both.
        let d = Device::flex();
        let w = Tensor::<2>::from_data([[1.0f32, 0.0, 0.0], [0.0, 0.0, 1.0]], &d);
        let per_token: Vec<f32> =
            divergence(t.clone(), s.clone(), tau, Divergence::ForwardKl).into_data().try_to_vec().unwrap();
        let want = (per_token[0] + per_token[5]) / 2.0 * (tau * tau) as f32;
        let online = scalar(kd_loss(t, s.clone(), tau, Divergence::ForwardKl, Some(w.clone())));
        let cached = scalar(topk_forward_kl(ids, vals, s, tau, Some(w)));
        assert!((online - want).abs() < 1e-5 * want.max(1.0), "{online} vs {want}");
        assert!((cached - want).abs() < 1e-4 * want.max(1.0), "{cached} vs {want}");
    }

    #[test]
    fn masked_hidden_loss_averages_trained_tokens() {
        let d = Device::flex();
        let s = Tensor::<3>::from_data([[[1.0f32, 1.0], [0.0, 2.0]]], &d);
        let t = Tensor::<3>::from_data([[[0.0f32, 1.0], [0.0, 0.0]]], &d);
        let w = Tensor::<2>::from_data([[0.0f32, 1.0]], &d);
        // Token 1 only: ((0-0)² + (2-0)²) / 2 = 2; unmasked: (1 + 0 + 0 + 4) / 4 = 1.25.
        assert_eq!(scalar(hidden_loss(s.clone(), t.clone(), HiddenLoss::Mse, Some(w))), 2.0);
        assert_eq!(scalar(hidden_loss(s, t, HiddenLoss::Mse, None)), 1.25);
    }
}
