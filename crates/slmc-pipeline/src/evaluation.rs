//! Perplexity of the current model on the held-out stream, and its JSON form in stage results.

use crate::PipelineError;
use crate::data::Prepared;
use crate::events::{Event, Observer};
use serde_json::{Value, json};
use slmc_data::{Sequences, TokenFile};
use slmc_formats::fsutil::atomic_write;
use slmc_model::CausalLm;
use slmc_model::perplexity::{WindowSpec, evaluate};
use slmc_recipe::EvalParams;
use std::path::Path;

/// A perplexity measurement, in memory and in the run files (`done.json`, `baseline.json`,
/// `outcome.json`; extra fields beside these are ignored when read).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EvalResult {
    /// Mean NLL per token (nats).
    pub mean_nll: f64,
    /// Perplexity.
    pub ppl: f64,
    /// Tokens scored.
    pub tokens: usize,
}

impl EvalResult {
    /// `{"mean_nll", "ppl", "tokens"}`.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("plain numbers")
    }

    /// Reads the fields [`EvalResult::to_json`] writes from a JSON object.
    pub fn from_json(v: &Value) -> Option<Self> {
        serde_json::from_value(v.clone()).ok()
    }
}

/// The whole-stream evaluation gates and baselines use.
pub(crate) const FULL_STREAM: EvalParams = EvalParams { ctx: None, stride: None, max_tokens: 0 };

/// Perplexity of `model` on the held-out stream with the sliding-window protocol of `e`.
pub(crate) fn eval_model(
    model: &CausalLm,
    data: &Prepared,
    e: &EvalParams,
    observer: &mut dyn Observer,
) -> Result<EvalResult, PipelineError> {
    let Some(eval) = data.eval.packed() else {
        return Ok(eval_rows(model, &data.eval, observer));
    };
    let tokens = TokenFile::open(&data.eval_tokens)?;
    let ctx = e.ctx.unwrap_or(data.seq_len).min(model.config.max_position_embeddings);
    let stride = e.stride.unwrap_or((ctx / 2).max(1)).min(ctx);
    let n = if e.max_tokens == 0 { tokens.len() } else { e.max_tokens.min(tokens.len()) };
    // The eval stream of a held-out tail starts where the training sequences end.
    let start = eval.token_range().start.min(tokens.len());
    let n = n.min(tokens.len() - start);
    let rows = vec![tokens.read(start, n)];
    let s = evaluate(model, &rows, WindowSpec { max_length: ctx, stride }, 4, &mut |done, total| {
        observer.event(&Event::Evaluating { done, total })
    })?;
    Ok(EvalResult { mean_nll: s.mean_nll(), ppl: s.ppl(), tokens: s.tokens })
}

/// Perplexity over the trained tokens of every held-out instruction row (each row is one
/// window, as in training; `ctx`, `stride` and `max-tokens` apply to text streams only).
fn eval_rows(model: &CausalLm, rows: &Sequences, observer: &mut dyn Observer) -> EvalResult {
    const BATCH: usize = 4;
    let (mut sum, mut count) = (0.0, 0usize);
    for start in (0..rows.len()).step_by(BATCH) {
        let idx: Vec<usize> = (start..(start + BATCH).min(rows.len())).collect();
        let batch = slmc_train::Batch::gather(rows, idx, &model.device());
        let (s, c) =
            slmc_train::loss::masked_nll_sum(model.forward(batch.inputs), batch.targets, batch.weights);
        sum += s;
        count += c;
        observer.event(&Event::Evaluating { done: (start + BATCH).min(rows.len()), total: rows.len() });
    }
    let mean_nll = sum / count.max(1) as f64;
    EvalResult { mean_nll, ppl: mean_nll.exp(), tokens: count }
}

/// [`eval_model`] with protocol `e`, cached in the JSON file at `path` (with the protocol: a
/// cached result of another protocol is measured again).
pub(crate) fn cached_eval(
    path: &Path,
    model: &CausalLm,
    data: &Prepared,
    e: &EvalParams,
    observer: &mut dyn Observer,
) -> Result<EvalResult, PipelineError> {
    let protocol = json!({"ctx": e.ctx, "stride": e.stride, "max_tokens": e.max_tokens});
    if path.is_file() {
        let cached = read_json(path)?;
        if cached.get("protocol") == Some(&protocol)
            && let Some(r) = EvalResult::from_json(&cached)
        {
            return Ok(r);
        }
    }
    let r = eval_model(model, data, e, observer)?;
    let mut record = r.to_json();
    record["protocol"] = protocol;
    atomic_write(path, (record.to_string() + "\n").as_bytes())?;
    Ok(r)
}

/// A JSON file of the run directory.
pub(crate) fn read_json(path: &Path) -> Result<Value, PipelineError> {
    let text = std::fs::read_to_string(path).map_err(|e| PipelineError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| PipelineError::io(path, e))
}
