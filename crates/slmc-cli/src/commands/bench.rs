//! `slmc bench forward`: forward throughput on a fixed ~15.7M-parameter Llama, the same
//! configuration `scripts/bench_forward_torch.py` measures in PyTorch.

use burn::prelude::*;
use burn::tensor::Distribution;
use slmc_model::ModelConfig;
use slmc_model::model::{CausalLm, Init};
use std::time::Instant;

/// The benchmark configuration (keep in sync with scripts/bench_forward_torch.py).
pub const BENCH_CONFIG: &str = r#"{"model_type":"llama","vocab_size":4096,"hidden_size":384,
  "intermediate_size":1024,"num_hidden_layers":8,"num_attention_heads":6,"num_key_value_heads":2,
  "max_position_embeddings":512,"rope_theta":10000.0,"rms_norm_eps":1e-5,"tie_word_embeddings":false}"#;

/// Benchmarks.
#[derive(clap::Subcommand)]
pub enum Bench {
    /// Forward-pass tokens/s (no gradients, full logits) at batch × seq.
    Forward {
        /// Sequences per batch.
        #[arg(long, default_value_t = 4)]
        batch: usize,
        /// Tokens per sequence.
        #[arg(long, default_value_t = 256)]
        seq: usize,
        /// Timed iterations (after 2 warm-up ones).
        #[arg(long, default_value_t = 5)]
        iters: usize,
    },
}

/// Runs the benchmark and prints one JSON line.
pub fn run(b: Bench, device: &Device) -> anyhow::Result<()> {
    match b {
        Bench::Forward { batch, seq, iters } => {
            let config = ModelConfig::from_json_str(BENCH_CONFIG, "bench config")?;
            device.seed(0);
            let model = CausalLm::new(&config, Init::Normal { std: 0.02 }, device);
            let ids = Tensor::<2>::random(
                [batch, seq],
                Distribution::Uniform(0.0, config.vocab_size as f64),
                device,
            )
            .int();
            let step = || {
                let logits = model.forward(ids.clone());
                // Pull one value back so lazy backends finish the work.
                let _: f32 = logits.slice([0..1, 0..1, 0..1]).into_scalar();
            };
            for _ in 0..2 {
                step();
            }
            let start = Instant::now();
            for _ in 0..iters {
                step();
            }
            let secs = start.elapsed().as_secs_f64() / iters as f64;
            let v = serde_json::json!({
                "impl": "slmc", "device": format!("{device:?}"), "threads": rayon::current_num_threads(),
                "params": config.num_params(), "batch": batch, "seq": seq,
                "tokens_per_s": (batch * seq) as f64 / secs, "ms_per_batch": secs * 1e3,
            });
            println!("{v}");
        }
    }
    Ok(())
}
