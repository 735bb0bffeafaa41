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
    /// The machine's sustained f32 multiply-add throughput on all threads (independent AVX-512 or
    /// AVX2 FMAs, no memory traffic): the peak the other benchmarks' GFLOP/s are compared with.
    Peak,
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

/// Matrix-product FLOPs per token of a forward pass at `seq` tokens per sequence: every linear
/// module (q, k, v, o, the gated MLP, the LM head) and causal attention (`q·k` and `p·v` over the
/// (s + 1) / 2 keys a query sees on average). What the machine's FMA peak is compared with.
pub fn forward_flops_per_token(c: &ModelConfig, seq: usize) -> f64 {
    let (h, q, kv) = (c.hidden_size, c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
    let per_layer = h * q + 2 * h * kv + q * h + 3 * h * c.intermediate_size;
    let linear = c.num_layers * per_layer + h * c.vocab_size;
    let attention = c.num_layers * 2 * q * (seq + 1);
    (2 * linear + attention) as f64
}

/// Runs the benchmark and prints one JSON line.
pub fn run(b: Bench, device: &Device) -> anyhow::Result<()> {
    match b {
        Bench::Train(a) => bench_train(a.batch, a.seq, a.iters, device, false)?,
        Bench::Distill(a) => bench_train(a.batch, a.seq, a.iters, device, true)?,
        Bench::Peak => {
            let (gflops, isa) = fma_peak()?;
            let v = serde_json::json!({
                "impl": "peak", "threads": rayon::current_num_threads(), "isa": isa, "gflops": gflops,
            });
            println!("{v}");
        }
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
                "flops_per_token": forward_flops_per_token(&config, seq),
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
    let (params_trained, flops_per_token) = if distill {
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
        // Teacher forward, student forward and backward (twice the forward's products).
        let flops = forward_flops_per_token(&config, seq) + 3.0 * forward_flops_per_token(&student_cfg, seq);
        (student_cfg.num_params(), flops)
    } else {
        train(model, &data, &options, &mut CrossEntropy, &mut record)?;
        (config.num_params(), 3.0 * forward_flops_per_token(&config, seq))
    };
    let tps = rates.len() as f64 / rates.iter().map(|r| 1.0 / r).sum::<f64>();
    let v = serde_json::json!({
        "impl": "slmc", "bench": if distill { "distill" } else { "train" }, "device": format!("{device:?}"),
        "threads": rayon::current_num_threads(), "params": params_trained, "batch": batch, "seq": seq, "tokens_per_s": tps,
        "ms_per_step": (batch * seq) as f64 / tps * 1e3, "flops_per_token": flops_per_token,
    });
    println!("{v}");
    Ok(())
}

/// Independent multiply-adds per loop iteration (enough to cover the FMA latency on both pipes).
const FMA_CHAINS: usize = 12;

/// Sustained FMA GFLOP/s over every thread of the pool, and the instruction set used.
fn fma_peak() -> anyhow::Result<(f64, &'static str)> {
    #[cfg(target_arch = "x86_64")]
    {
        let (lanes, isa): (usize, &'static str) = if std::is_x86_feature_detected!("avx512f") {
            (16, "avx512")
        } else if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            (8, "avx2")
        } else {
            anyhow::bail!("no FMA instructions on this CPU")
        };
        let iters = 100_000_000usize;
        let start = Instant::now();
        let sums = rayon::broadcast(|_| {
            // SAFETY: the instruction set was detected above.
            unsafe { if lanes == 16 { fma_loop_avx512(iters) } else { fma_loop_avx2(iters) } }
        });
        let secs = start.elapsed().as_secs_f64();
        // Keep the results alive so the loops are not optimised away.
        std::hint::black_box(sums.iter().sum::<f32>());
        let flops = (sums.len() * iters * FMA_CHAINS * lanes * 2) as f64;
        Ok((flops / secs / 1e9, isa))
    }
    #[cfg(not(target_arch = "x86_64"))]
    anyhow::bail!("`slmc bench peak` measures x86-64 FMA units only")
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_loop_avx512(iters: usize) -> f32 {
    use std::arch::x86_64::*;
    let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
    let mut acc = [_mm512_set1_ps(1.0); FMA_CHAINS];
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = _mm512_fmadd_ps(*x, a, b);
        }
    }
    acc.iter().map(|&x| _mm512_reduce_add_ps(x)).sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_loop_avx2(iters: usize) -> f32 {
    use std::arch::x86_64::*;
    let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
    let mut acc = [_mm256_set1_ps(1.0); FMA_CHAINS];
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = _mm256_fmadd_ps(*x, a, b);
        }
    }
    let mut out = [0.0f32; 8];
    acc.iter()
        .map(|&x| {
            // SAFETY: `out` holds the 8 floats the store writes.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), x) };
            out.iter().sum::<f32>()
        })
        .sum()
}
