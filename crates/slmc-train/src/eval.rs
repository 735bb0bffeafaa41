//! Held-out loss of a model on packed sequences or masked rows.

use crate::loss::masked_nll_sum;
use crate::trainer::Batch;
use slmc_data::Sequences;
use slmc_model::CausalLm;

/// Mean next-token NLL over the trained targets of the first `max_sequences` sequences of `data`
/// (0 = all), in batches of `batch_size`: every target of packed text, the unmasked ones of rows.
pub fn eval_loss(model: &CausalLm, data: &Sequences, max_sequences: usize, batch_size: usize) -> f64 {
    let (total, count) = eval_nll(model, data, max_sequences, batch_size);
    total / count.max(1) as f64
}

/// Sum of the NLLs of the trained targets of the first `max_sequences` sequences (0 = all) and
/// their number.
pub fn eval_nll(model: &CausalLm, data: &Sequences, max_sequences: usize, batch_size: usize) -> (f64, usize) {
    let n = if max_sequences == 0 { data.len() } else { max_sequences.min(data.len()) };
    let device = model.device();
    let (mut total, mut count) = (0.0, 0usize);
    let mut start = 0;
    while start < n {
        let idx: Vec<usize> = (start..(start + batch_size.max(1)).min(n)).collect();
        start += idx.len();
        let batch = Batch::gather(data, idx, &device);
        let (s, c) = masked_nll_sum(model.forward(batch.inputs), batch.targets, batch.weights);
        total += s;
        count += c;
    }
    (total, count)
}
