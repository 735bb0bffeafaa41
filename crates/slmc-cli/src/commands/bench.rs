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

/// The teacher configuration (recipes/teacher.toml; keep in sync with scripts/bench_train_torch.py).
pub const TEACHER_CONFIG: &str = r#"{"model_type":"llama","vocab_size":4096,"hidden_size":320,
  "intermediate_size":864,"num_hidden_layers":8,"num_attention_heads":5,"num_key_value_heads":5,
  "max_position_embeddings":512,"rope_theta":10000.0,"rms_norm_eps":1e-5,"tie_word_embeddings":true}"#;

/// Size of a training benchmark.
#[derive(clap::Args)]
pub struct StepArgs {
    /// Sequences per step.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 256)]
    pub seq: usize,
    /// Timed steps (after 2 warm-up ones).
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
}

/// Benchmarks.
#[derive(clap::Subcommand)]
pub enum Bench {
    /// Training tokens/s (forward + backward + global-norm clipping + AdamW) of the real training
    /// loop on the teacher configuration, random tokens.
    Train(StepArgs),
    /// Distillation tokens/s: teacher forward (no graph) + student forward/backward/AdamW, with the
    /// teacher config as teacher and its every-other-layer half-depth student; FKL τ=2, α=0.9.
    Distill(StepArgs),
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
        Bench::Train(a) => bench_train(a.batch, a.seq, a.iters, device, false)?,
        Bench::Distill(a) => bench_train(a.batch, a.seq, a.iters, device, true)?,
        Bench::Forward { batch, seq, iters } => {
            let config = ModelConfig::from_json_str(BENCH_CONFIG, "bench config")?;
            let model = CausalLm::new(&config, Init::Normal { std: 0.02, seed: 0 }, device);
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

/// Times the real training loop: plain training of the teacher config, or (`distill`) its
/// half-depth student against it.
fn bench_train(batch: usize, seq: usize, iters: usize, device: &Device, distill: bool) -> anyhow::Result<()> {
    use slmc_data::{Packed, Sequences, TokenFile};
    use slmc_recipe::TrainParams;
    use slmc_train::distill::{DistillObjective, Distilled, TeacherSignal};
    use slmc_train::kd::Divergence;
    use slmc_train::{CrossEntropy, Event, TrainData, TrainOptions, train};
    let config = ModelConfig::from_json_str(TEACHER_CONFIG, "teacher config")?;
    let model = CausalLm::new(&config, Init::Normal { std: 0.02, seed: 0 }, device);
    let tmp = tempfile::tempdir()?;
    let steps = iters + 2;
    // Enough random tokens for every step, without reuse.
    let n = steps * batch * seq + 1;
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let bytes: Vec<u8> = (0..n)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state % config.vocab_size as u64) as u32).to_le_bytes()
        })
        .collect();
    let path = tmp.path().join("random.tokens");
    std::fs::write(&path, bytes)?;
    let data = TrainData { train: Sequences::Packed(Packed::new(TokenFile::open(&path)?, seq)?), eval: None };
    let params = TrainParams {
        steps,
        batch_size: batch,
        lr: 1e-3,
        min_lr: 1e-4,
        log_every: 1,
        ..TrainParams::default()
    };
    let options = TrainOptions {
        params: &params,
        seed: 0,
        checkpoint_dir: tmp.path().join("ckpt"),
        interrupt: None,
        kill_after: None,
        layerwise: false,
        keep_masks: None,
    };
    let mut rates = Vec::new();
    let mut record = |e: &Event| {
        if let Event::Step { step, tokens_per_s, .. } = e
            && *step > 2
        {
            rates.push(*tokens_per_s);
        }
    };
    let params_trained = if distill {
        let layers: Vec<usize> = (0..config.num_layers).step_by(2).collect();
        let (student_cfg, tensors) = slmc_model::weights::select_layers(&model, &layers)?;
        let student = slmc_model::weights::load(&student_cfg, tensors.as_slice(), "bench", device)?.0;
        let mut objective = DistillObjective {
            teacher: TeacherSignal::Online(&model),
            divergence: Divergence::ForwardKl,
            temperature: 2.0,
            alpha: 0.9,
            vocab: config.vocab_size,
            hidden: None,
        };
        let n = student_cfg.hidden_size;
        train(Distilled::new(student, 0, n, n), &data, &options, &mut objective, &mut record)?;
        student_cfg.num_params()
    } else {
        train(model, &data, &options, &mut CrossEntropy, &mut record)?;
        config.num_params()
    };
    let tps = rates.len() as f64 / rates.iter().map(|r| 1.0 / r).sum::<f64>();
    let v = serde_json::json!({
        "impl": "slmc", "bench": if distill { "distill" } else { "train" }, "device": format!("{device:?}"),
        "threads": rayon::current_num_threads(), "params": params_trained, "batch": batch, "seq": seq, "tokens_per_s": tps,
        "ms_per_step": (batch * seq) as f64 / tps * 1e3,
    });
    println!("{v}");
    Ok(())
}
