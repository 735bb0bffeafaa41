//! Text generation with a KV cache: greedy, or temperature / top-p sampling from a seeded RNG.

use crate::ModelError;
use crate::model::{CausalLm, KvCache};
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// How the next token is chosen.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Tokens to generate at most.
    pub max_new_tokens: usize,
    /// 0 = greedy (argmax); otherwise logits are divided by it before sampling.
    pub temperature: f32,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches `top_p`.
    pub top_p: f32,
    /// RNG seed for sampling.
    pub seed: u64,
    /// Generation stops after emitting any of these ids.
    pub stop_ids: Vec<u32>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self { max_new_tokens: 64, temperature: 0.0, top_p: 1.0, seed: 0, stop_ids: vec![] }
    }
}

/// Generates up to `max_new_tokens` after `prompt`, calling `on_token` with each new id as soon
/// as it is chosen. Returns the new ids.
pub fn generate(
    model: &CausalLm,
    prompt: &[u32],
    options: &GenerateOptions,
    on_token: &mut dyn FnMut(u32),
) -> Result<Vec<u32>, ModelError> {
    if prompt.is_empty() {
        return Err(ModelError::Input("the prompt is empty (no tokens to condition on)".into()));
    }
    let vocab = model.config.vocab_size;
    if let Some(bad) = prompt.iter().find(|&&t| t as usize >= vocab) {
        return Err(ModelError::Input(format!("prompt token id {bad} is outside the vocabulary of {vocab}")));
    }
    let ctx = model.config.max_position_embeddings;
    let budget = options.max_new_tokens.min(ctx.saturating_sub(prompt.len()));
    let device = model.device();
    let mut rng = StdRng::seed_from_u64(options.seed);
    let mut cache = KvCache::new(model);
    let mut all: Vec<u32> = prompt.to_vec();
    let mut input: Vec<u32> = prompt.to_vec();
    let mut out = Vec::new();
    while out.len() < budget {
        if let Some(switch) = model.config.rope_switch_len()
            && cache.len() <= switch
            && cache.len() + input.len() > switch
            && !cache.is_empty()
        {
            // The rotary tables change here: recompute every cached key with the new ones.
            cache = KvCache::new(model);
            input = all.clone();
        }
        let n = input.len();
        let ids = Tensor::<2, Int>::from_data(
            TensorData::new(input.iter().map(|&t| t as i32).collect::<Vec<_>>(), [1, n]),
            &device,
        );
        let logits: Vec<f32> = model
            .forward_cached(ids, &mut cache)
            .narrow(1, n - 1, 1)
            .into_data()
            .convert::<f32>()
            .try_to_vec()
            .expect("f32");
        let next = pick(&logits, options, &mut rng);
        out.push(next);
        all.push(next);
        on_token(next);
        if options.stop_ids.contains(&next) {
            break;
        }
        input = vec![next];
    }
    Ok(out)
}

/// Chooses a token from one row of logits.
fn pick(logits: &[f32], options: &GenerateOptions, rng: &mut StdRng) -> u32 {
    let argmax = || {
        logits
            .iter()
            .enumerate()
            .fold((0usize, f32::NEG_INFINITY), |best, (i, &v)| if v > best.1 { (i, v) } else { best })
            .0
    };
    if options.temperature <= 0.0 {
        return argmax() as u32;
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut probs: Vec<(usize, f64)> = logits
        .iter()
        .enumerate()
        .map(|(i, &v)| (i, (((v - max) / options.temperature) as f64).exp()))
        .collect();
    let sum: f64 = probs.iter().map(|p| p.1).sum();
    probs.iter_mut().for_each(|p| p.1 /= sum);
    probs.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut kept = 0;
    let mut mass = 0.0;
    for p in &probs {
        kept += 1;
        mass += p.1;
        if mass >= options.top_p as f64 {
            break;
        }
    }
    let mut r = rng.random::<f64>() * mass;
    for p in &probs[..kept] {
        if r < p.1 {
            return p.0 as u32;
        }
        r -= p.1;
    }
    probs[kept - 1].0 as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_picks_the_argmax_and_top_p_restricts_the_support() {
        let logits = [0.0f32, 5.0, 4.9, -3.0];
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(pick(&logits, &GenerateOptions::default(), &mut rng), 1);
        // top_p small enough that only the best token survives.
        let opts = GenerateOptions { temperature: 1.0, top_p: 0.1, ..Default::default() };
        assert!((0..50).all(|_| pick(&logits, &opts, &mut rng) == 1));
        // With full support, sampling at a high temperature reaches other tokens.
        let opts = GenerateOptions { temperature: 10.0, top_p: 1.0, ..Default::default() };
        assert!((0..200).any(|_| pick(&logits, &opts, &mut rng) != 1));
    }
}
