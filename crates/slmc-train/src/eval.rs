//! Held-out loss of a model on packed sequences.

use crate::loss::nll_sum;
use crate::trainer::Batch;
use slmc_data::Packed;
use slmc_model::CausalLm;

/// Mean next-token NLL over the first `max_sequences` sequences of `data` (0 = all), in batches
/// of `batch_size`.
pub fn eval_loss(model: &CausalLm, data: &Packed, max_sequences: usize, batch_size: usize) -> f64 {
    let n = if max_sequences == 0 { data.len() } else { max_sequences.min(data.len()) };
    let device = model.device();
    let (mut total, mut count) = (0.0, 0usize);
    let mut start = 0;
    while start < n {
        let idx: Vec<usize> = (start..(start + batch_size.max(1)).min(n)).collect();
        let batch = Batch::from_sequences(idx.iter().map(|&i| data.get(i)).collect(), &device);
        let (s, c) = nll_sum(model.forward(batch.inputs), batch.targets);
        total += s;
        count += c;
        start += idx.len();
    }
    total / count.max(1) as f64
}
