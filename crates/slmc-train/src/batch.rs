//! Batches drawn from [`Sequences`]: packed text as before, masked rows with their loss weights.

use crate::trainer::Batch;
use burn::prelude::*;
use slmc_data::Sequences;

impl Batch {
    /// The batch of sequences `indices` of `data` (recorded in [`Batch::indices`]); masked rows
    /// carry [`Batch::weights`] (1 where the target token trains), packed text none.
    pub fn gather(data: &Sequences, indices: Vec<usize>, device: &Device) -> Self {
        let seqs: Vec<_> = indices.iter().map(|&i| data.get(i)).collect();
        let weights: Option<Vec<f32>> = seqs.iter().try_fold(Vec::new(), |mut acc, s| {
            let trained = s.trained.as_ref()?;
            acc.extend(trained[1..].iter().map(|&t| if t { 1.0f32 } else { 0.0 }));
            Some(acc)
        });
        let b = seqs.len();
        let t = data.seq_len();
        let mut batch = Self::with_indices(seqs.into_iter().map(|s| s.tokens).collect(), indices, device);
        batch.weights = weights.map(|w| Tensor::from_data(TensorData::new(w, [b, t]), device));
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CrossEntropy, StepLoss};
    use slmc_config::ModelConfig;
    use slmc_data::masked::{Encoded, MaskOptions, Overlong, TrainOn, build_row_file};
    use slmc_data::{MaskedRows, RowFormat};
    use slmc_model::CausalLm;
    use slmc_model::model::Init;

    /// Rows of `prompt`/`completion` pairs, one token per byte (`b % 40 + 3`), BOS = 1, EOS = 2.
    fn rows(dir: &std::path::Path, pad: u32) -> Sequences {
        let src = dir.join("pc.jsonl");
        std::fs::write(
            &src,
            "{\"prompt\":\"abc\",\"completion\":\"de\"}\n{\"prompt\":\"x\",\"completion\":\"yz\"}\n",
        )
        .unwrap();
        let out = dir.join(format!("t{pad}.rows"));
        let mut encode = |text: &str, special: bool| -> Result<Encoded, String> {
            let mut e = Encoded::default();
            if special {
                e.ids.push(1);
                e.offsets.push((0, 0));
            }
            for (i, b) in text.bytes().enumerate() {
                e.ids.push(b as u32 % 40 + 3);
                e.offsets.push((i, i + 1));
            }
            Ok(e)
        };
        let o =
            MaskOptions { seq_len: 8, train_on: TrainOn::Completions, overlong: Overlong::Drop, pad, eos: 2 };
        build_row_file(&[(src, RowFormat::PromptCompletion)], &out, None, &o, &mut encode, &mut |_| {})
            .unwrap();
        Sequences::Masked(MaskedRows::open(&out, 8).unwrap())
    }

    #[test]
    fn masked_rows_carry_weights_and_padding_does_not_count() {
        let dir = tempfile::tempdir().unwrap();
        let dev = Device::flex();
        let data = rows(dir.path(), 0);
        let batch = Batch::gather(&data, vec![0, 1], &dev);
        let w: Vec<f32> = batch.weights.clone().unwrap().into_data().try_to_vec().unwrap();
        // Row 0: BOS a b c d e EOS pad pad → targets a b c d e EOS pad pad; d, e, EOS train.
        // Row 1: BOS x y z EOS pad… → targets x y z EOS pad pad pad pad; y, z, EOS train.
        assert_eq!(w, vec![0., 0., 0., 1., 1., 1., 0., 0., 0., 1., 1., 1., 0., 0., 0., 0.]);
        // Padding with another id changes only masked positions (causal attention), so the loss is
        // the same; the unmasked loss changes.
        let cfg = ModelConfig::from_json_str(
            r#"{"model_type":"llama","vocab_size":48,"hidden_size":16,"intermediate_size":32,"num_hidden_layers":1,
                "num_attention_heads":2,"num_key_value_heads":1,"max_position_embeddings":32}"#,
            "test",
        )
        .unwrap();
        let model = CausalLm::new(&cfg, Init::Normal { std: 0.5, seed: 3 }, &dev);
        let other = Batch::gather(&rows(dir.path(), 47), vec![0, 1], &dev);
        let a: f32 = CrossEntropy.loss(&model, &batch).into_scalar();
        let b: f32 = CrossEntropy.loss(&model, &other).into_scalar();
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        let mut plain = Batch::gather(&rows(dir.path(), 47), vec![0, 1], &dev);
        plain.weights = None;
        let c: f32 = CrossEntropy.loss(&model, &plain).into_scalar();
        assert!((a - c).abs() > 1e-3, "{a} vs {c}");
    }
}
