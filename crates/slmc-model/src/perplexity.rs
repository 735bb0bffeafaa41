//! Perplexity with the Hugging Face sliding-window protocol (docs/algorithms.md §10): windows of
//! `max_length` tokens advancing by `stride`; each window scores only the targets the previous
//! window did not, so with `stride < max_length` every token after the first is scored exactly
//! once, with at least `max_length - stride` tokens of context. (With `stride == max_length`, as
//! in transformers, the first token of each window has no context and is not scored.)

use crate::ModelError;
use crate::kernels::log_softmax;
use crate::model::CausalLm;
use burn::prelude::*;

/// Window length and step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    /// Tokens per forward pass.
    pub max_length: usize,
    /// Step between window starts (`max_length` = no overlap).
    pub stride: usize,
}

/// Summed negative log-likelihood over scored tokens.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct NllSummary {
    /// Sum of −log p over scored tokens (nats).
    pub total_nll: f64,
    /// Number of scored tokens.
    pub tokens: usize,
}

impl NllSummary {
    /// Mean NLL per scored token.
    pub fn mean_nll(&self) -> f64 {
        self.total_nll / self.tokens.max(1) as f64
    }

    /// Perplexity, `exp(mean_nll)`.
    pub fn ppl(&self) -> f64 {
        self.mean_nll().exp()
    }
}

/// One forward pass of the protocol: `ids[begin..end]` of row `row`, scoring targets at window
/// positions `first_target..end-begin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Row (sequence) index.
    pub row: usize,
    /// First token of the window.
    pub begin: usize,
    /// One past the last token.
    pub end: usize,
    /// Window-relative index of the first scored target (≥ 1: the first token has no context).
    pub first_target: usize,
}

impl Window {
    /// Tokens in the window.
    pub fn len(&self) -> usize {
        self.end - self.begin
    }
    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.end == self.begin
    }
    /// Targets scored in this window.
    pub fn scored(&self) -> usize {
        self.len() - self.first_target
    }
}

/// The windows of the protocol for one row of `len` tokens.
pub fn windows(row: usize, len: usize, spec: WindowSpec) -> Vec<Window> {
    let mut out = Vec::new();
    let mut prev_end = 0;
    let mut begin = 0;
    while begin < len {
        let end = (begin + spec.max_length).min(len);
        let trg_len = end - prev_end;
        let first_target = ((end - begin) - trg_len).max(1);
        if end - begin > first_target {
            out.push(Window { row, begin, end, first_target });
        }
        prev_end = end;
        if end == len {
            break;
        }
        begin += spec.stride;
    }
    out
}

/// Evaluates `rows` (each its own sequence: no tokens added, none shared across rows).
/// Windows of equal length are batched `batch_size` at a time; `progress(scored, total)` is
/// called after each batch.
pub fn evaluate(
    model: &CausalLm,
    rows: &[Vec<u32>],
    spec: WindowSpec,
    batch_size: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<NllSummary, ModelError> {
    if spec.max_length < 2 || spec.stride == 0 || spec.stride > spec.max_length {
        return Err(ModelError::Input(format!(
            "window length must be ≥ 2 and stride in 1..=length (got length {}, stride {})",
            spec.max_length, spec.stride
        )));
    }
    if spec.max_length > model.config.max_position_embeddings {
        return Err(ModelError::Input(format!(
            "window length {} exceeds the model's context of {} positions",
            spec.max_length, model.config.max_position_embeddings
        )));
    }
    let vocab = model.config.vocab_size as u32;
    for (r, row) in rows.iter().enumerate() {
        if let Some(bad) = row.iter().find(|&&t| t >= vocab) {
            return Err(ModelError::Input(format!(
                "row {r}: token id {bad} is outside the vocabulary of {vocab}"
            )));
        }
    }
    let mut all: Vec<Window> =
        rows.iter().enumerate().flat_map(|(r, row)| windows(r, row.len(), spec)).collect();
    all.sort_by_key(|w| std::cmp::Reverse(w.len()));
    let total: usize = all.iter().map(Window::scored).sum();
    let device = model.device();
    let mut summary = NllSummary::default();
    let mut start = 0;
    while start < all.len() {
        let n = all[start].len();
        let mut stop = start;
        while stop < all.len() && stop - start < batch_size.max(1) && all[stop].len() == n {
            stop += 1;
        }
        let batch = &all[start..stop];
        let ids: Vec<i32> =
            batch.iter().flat_map(|w| rows[w.row][w.begin..w.end].iter().map(|&t| t as i32)).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [batch.len(), n]), &device);
        let targets = ids.clone().narrow(1, 1, n - 1).unsqueeze_dim::<3>(2);
        let logp = log_softmax(model.forward(ids).narrow(1, 0, n - 1));
        let picked: Vec<f32> =
            logp.gather(2, targets).into_data().convert::<f32>().try_to_vec().expect("f32");
        for (b, w) in batch.iter().enumerate() {
            // Prediction t (t = 0..n-1) scores target t + 1.
            let row = &picked[b * (n - 1)..(b + 1) * (n - 1)];
            for &lp in &row[w.first_target - 1..] {
                if !lp.is_finite() {
                    return Err(ModelError::Input(format!("non-finite log-probability in row {}", w.row)));
                }
                summary.total_nll -= lp as f64;
            }
            summary.tokens += w.scored();
        }
        progress(summary.tokens, total);
        start = stop;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_score_each_token_at_most_once_and_all_when_overlapping() {
        for len in [1usize, 2, 20, 32, 33, 40, 75, 100] {
            for (ml, st) in [(32, 16), (32, 32), (8, 3)] {
                let ws = windows(0, len, WindowSpec { max_length: ml, stride: st });
                let mut scored = vec![0u32; len];
                for w in &ws {
                    assert!(w.len() <= ml);
                    for j in w.first_target..w.len() {
                        scored[w.begin + j] += 1;
                    }
                }
                // Non-overlapping windows leave each window's first token unscored (as transformers does).
                let expect: Vec<u32> =
                    (0..len).map(|i| u32::from(i > 0 && !(st == ml && i % ml == 0))).collect();
                assert_eq!(scored, expect, "len {len} ml {ml} stride {st}");
            }
        }
    }

    #[test]
    fn hf_first_window_and_overlap_match_the_reference_loop() {
        let ws = windows(0, 75, WindowSpec { max_length: 32, stride: 16 });
        let got: Vec<(usize, usize, usize)> = ws.iter().map(|w| (w.begin, w.end, w.first_target)).collect();
        // begin 0: [0,32) scores 31; begin 16: [16,48) trg 16 -> first 16; begin 32: [32,64);
        // begin 48: [48,75) trg 11 -> first 16.
        assert_eq!(got, vec![(0, 32, 1), (16, 48, 16), (32, 64, 16), (48, 75, 16)]);
    }
}
