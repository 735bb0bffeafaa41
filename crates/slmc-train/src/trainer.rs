//! The training loop.

use crate::TrainError;
use crate::checkpoint::{self, TrainState};
use crate::clip::clip_grad_norm;
use crate::eval::eval_loss;
use crate::loss::masked_cross_entropy;
use crate::schedule::lr_at;
use burn::module::{Module, ParamGroup};
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use slmc_data::{Order, Sequences};
use slmc_model::CausalLm;
use slmc_recipe::TrainParams;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// A batch of packed sequences: inputs and their next-token targets.
pub struct Batch {
    /// `[B, T]` input ids.
    pub inputs: Tensor<2, Int>,
    /// `[B, T]` target ids (inputs shifted by one).
    pub targets: Tensor<2, Int>,
    /// Index of each sequence in the training split (for per-sequence caches).
    pub indices: Vec<usize>,
    /// `[B, T]` loss weight of each target (1 = trained, 0 = masked), for instruction rows;
    /// `None` for packed text, where every target trains.
    pub weights: Option<Tensor<2>>,
}

/// What the engine trains: a language model, possibly with extra trainable modules (e.g.
/// distillation projections) that are checkpointed beside it.
pub trait TrainModel: Module + Sized {
    /// The language model.
    fn lm(&self) -> &CausalLm;
    /// The same object around another language model (used when resuming).
    fn with_lm(self, lm: CausalLm) -> Self;
    /// Writes the extra modules' tensors into a checkpoint directory.
    fn save_extra(&self, _dir: &std::path::Path) -> Result<(), TrainError> {
        Ok(())
    }
    /// Reads them back.
    fn load_extra(self, _dir: &std::path::Path) -> Result<Self, TrainError> {
        Ok(self)
    }
}

impl TrainModel for CausalLm {
    fn lm(&self) -> &CausalLm {
        self
    }
    fn with_lm(self, lm: CausalLm) -> Self {
        lm
    }
}

impl Batch {
    /// Builds a batch, recording the sequences' indices.
    pub fn with_indices(seqs: Vec<Vec<u32>>, indices: Vec<usize>, device: &Device) -> Self {
        let b = seqs.len();
        let t = seqs[0].len() - 1;
        let mut inputs = Vec::with_capacity(b * t);
        let mut targets = Vec::with_capacity(b * t);
        for s in &seqs {
            inputs.extend(s[..t].iter().map(|&x| x as i32));
            targets.extend(s[1..].iter().map(|&x| x as i32));
        }
        Self {
            inputs: Tensor::from_data(TensorData::new(inputs, [b, t]), device),
            targets: Tensor::from_data(TensorData::new(targets, [b, t]), device),
            indices,
            weights: None,
        }
    }
}

/// The objective of a training step (cross-entropy here; distillation plugs in its own).
pub trait StepLoss<M> {
    /// The scalar loss of `batch` under `model` (differentiable).
    fn loss(&mut self, model: &M, batch: &Batch) -> Tensor<1>;

    /// The loss value and gradients of `batch`, computed the memory-bounded way: the vocabulary
    /// loss over chunks of positions ([`crate::chunked`]) and, when `how.checkpoint_seed` is set,
    /// with layer-wise gradient checkpointing ([`crate::layerwise`]). The loss is divided by
    /// `how.divisor` (gradient accumulation). `None` when the objective only has
    /// [`StepLoss::loss`]; the engine then backpropagates that (whole logits).
    fn loss_and_grads(
        &mut self,
        _model: &M,
        _batch: &Batch,
        _how: &GradOptions,
    ) -> Option<(f32, GradientsParams)> {
        None
    }
}

/// How [`StepLoss::loss_and_grads`] computes a micro-batch's gradients.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradOptions {
    /// The loss is divided by this (the number of accumulated micro-batches).
    pub divisor: f32,
    /// Positions per chunk of the vocabulary loss (0 = the whole micro-batch at once).
    pub loss_chunk: usize,
    /// `Some(seed)`: layer-wise gradient checkpointing, with the dropout masks drawn from `seed`.
    pub checkpoint_seed: Option<u64>,
}

/// Runs the chunked (and, with `how.checkpoint_seed`, layer-wise) gradient computation.
pub(crate) fn chunked_grads<M: Module>(
    model: &M,
    lm: &CausalLm,
    inputs: Tensor<2, Int>,
    how: &GradOptions,
    loss: &crate::chunked::ChunkLoss<'_>,
    terms: &crate::chunked::LayerTerms<'_>,
) -> (f32, GradientsParams) {
    match how.checkpoint_seed {
        Some(seed) => crate::layerwise::loss_and_grads(model, lm, inputs, how.loss_chunk, loss, terms, seed),
        None => crate::chunked::loss_and_grads(model, lm, inputs, how.loss_chunk, loss, terms),
    }
}

/// Next-token cross-entropy.
pub struct CrossEntropy;

impl<M: TrainModel> StepLoss<M> for CrossEntropy {
    fn loss(&mut self, model: &M, batch: &Batch) -> Tensor<1> {
        masked_cross_entropy(
            model.lm().forward(batch.inputs.clone()),
            batch.targets.clone(),
            batch.weights.clone(),
        )
    }

    fn loss_and_grads(
        &mut self,
        model: &M,
        batch: &Batch,
        how: &GradOptions,
    ) -> Option<(f32, GradientsParams)> {
        let [b, t] = batch.targets.dims();
        let mean = crate::chunked::TokenMean::new(b * t, batch.weights.clone());
        let targets = batch.targets.clone().reshape([b * t]);
        let divisor = how.divisor;
        let loss = |logits: Tensor<2>, r: std::ops::Range<usize>| {
            let nll = crate::loss::token_nll(logits, targets.clone().narrow(0, r.start, r.len()));
            mean.share(nll, r) / divisor
        };
        let terms = crate::chunked::LayerTerms::none();
        Some(chunked_grads(model, model.lm(), batch.inputs.clone(), how, &loss, &terms))
    }
}

/// Training and held-out sequences (packed text, or masked instruction rows).
pub struct TrainData {
    /// Training sequences.
    pub train: Sequences,
    /// Held-out sequences for periodic evaluation.
    pub eval: Option<Sequences>,
}

/// Everything a run needs besides the model and data.
pub struct TrainOptions<'a> {
    /// Optimisation settings.
    pub params: &'a TrainParams,
    /// Seed of the data order.
    pub seed: u64,
    /// Where checkpoints go (resumes from the newest one found there).
    pub checkpoint_dir: PathBuf,
    /// Set (e.g. by Ctrl-C) to stop after the current step with a checkpoint.
    pub interrupt: Option<&'a AtomicBool>,
    /// Testing hook: stop after this step without writing anything, as a killed process would.
    pub kill_after: Option<usize>,
    /// Layer-wise gradient checkpointing ([`crate::layerwise`]): one layer's activations at a
    /// time, for one extra forward pass.
    pub layerwise: bool,
    /// Sparse fine-tuning: `(module name, keep)` pairs (row-major `[out, in]`, true = trains);
    /// the other weights of those modules are zero and stay exactly zero.
    pub keep_masks: Option<&'a [(String, Vec<bool>)]>,
}

/// Progress reported by [`train`].
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Training continues from a checkpoint.
    Resumed {
        /// Steps already done.
        step: usize,
    },
    /// An optimizer step finished.
    Step {
        /// Steps done (1-based).
        step: usize,
        /// Total steps.
        total: usize,
        /// Loss of the step (mean over its micro-batches).
        loss: f32,
        /// Learning rate used.
        lr: f64,
        /// Gradient norm before clipping.
        grad_norm: f64,
        /// Training tokens consumed so far.
        tokens_seen: u64,
        /// Throughput since the previous step event.
        tokens_per_s: f64,
    },
    /// A held-out evaluation.
    Eval {
        /// Steps done.
        step: usize,
        /// Mean next-token NLL.
        loss: f64,
    },
    /// A damaged checkpoint was passed over when resuming (the previous one is used instead, or
    /// training starts over when none is intact).
    CheckpointRejected {
        /// Its directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A checkpoint was written.
    Checkpoint {
        /// Steps done.
        step: usize,
        /// Its directory.
        path: PathBuf,
    },
}

fn optimizer(p: &TrainParams) -> ModuleOptimizer {
    let cfg = |wd: f64| {
        AdamWConfig::new()
            .with_beta_1(p.beta1 as f32)
            .with_beta_2(p.beta2 as f32)
            .with_epsilon(p.eps as f32)
            .with_weight_decay(wd as f32)
    };
    // No weight decay on norm scales and biases (the usual practice; burn's AdamW would decay all).
    let no_decay = ParamGroup::from_regex(r"(norm\.weight|bias)$").expect("static regex");
    cfg(p.weight_decay).init().with_group(no_decay, cfg(0.0).build(), None)
}

/// Trains `model` (given on a plain device) and returns it (plain device). Resumes from the newest
/// checkpoint in `options.checkpoint_dir` if there is one.
pub fn train<M: TrainModel>(
    model: M,
    data: &TrainData,
    options: &TrainOptions<'_>,
    objective: &mut dyn StepLoss<M>,
    observer: &mut dyn FnMut(&Event),
) -> Result<M, TrainError> {
    let p = options.params;
    let device = model.lm().device();
    let per_step = p.batch_size * p.grad_accum;
    if data.train.len() < p.batch_size {
        return Err(TrainError::Data(format!(
            "{} training sequences of {} tokens; batch-size {} needs more data",
            data.train.len(),
            data.train.seq_len(),
            p.batch_size
        )));
    }
    let mut rejected = |path: &std::path::Path, why: &str| {
        observer(&Event::CheckpointRejected { path: path.to_path_buf(), reason: why.to_string() })
    };
    let restored =
        checkpoint::load_latest(&options.checkpoint_dir, model, optimizer(p), &device, &mut rejected)?;
    let (model, mut optim, mut state) = match restored {
        Ok((m, o, s)) => {
            observer(&Event::Resumed { step: s.step });
            (m, o, s)
        }
        Err(model) => (
            model,
            optimizer(p),
            TrainState { step: 0, tokens_seen: 0, sequences_drawn: 0, seed: options.seed },
        ),
    };
    // Built after any checkpoint is loaded: parameter ids come from the loaded record.
    let grad_mask = options.keep_masks.map(|k| crate::sparse::GradMask::new(model.lm(), k)).transpose()?;
    let mut order = Order::new(data.train.len(), state.seed);
    let mut model = model.train();
    let tokens_per_seq = data.train.seq_len() as u64;
    let mut last_ckpt = checkpoint::list(&options.checkpoint_dir)
        .pop()
        .map_or("none".to_string(), |(_, d)| d.display().to_string());
    let mut clock = Instant::now();
    while state.step < p.steps {
        let lr = lr_at(p, state.step);
        let mut accum = GradientsAccumulator::<M>::new();
        let mut loss_sum = 0.0f32;
        for _ in 0..p.grad_accum {
            let indices: Vec<usize> =
                (0..p.batch_size).map(|i| order.at(state.sequences_drawn + i as u64)).collect();
            state.sequences_drawn += p.batch_size as u64;
            let batch = Batch::gather(&data.train, indices, &device);
            let divisor = p.grad_accum as f32;
            let seed = state.seed ^ state.sequences_drawn.wrapping_mul(0xD1B5_4A32_D192_ED03);
            // Dropout masks come from the device RNG: drawing them from this micro-batch's seed
            // makes a resumed run see the masks the uninterrupted one saw.
            device.seed(seed);
            let how = GradOptions {
                divisor,
                loss_chunk: p.loss_chunk,
                checkpoint_seed: options.layerwise.then_some(seed),
            };
            let (value, grads) = match objective.loss_and_grads(&model, &batch, &how) {
                Some(r) => r,
                None if options.layerwise => {
                    return Err(TrainError::Data(
                        "this objective does not support layer-wise gradient checkpointing".into(),
                    ));
                }
                None => {
                    let loss = objective.loss(&model, &batch) / divisor;
                    let value: f32 = loss.clone().into_scalar();
                    (value, GradientsParams::from_grads(loss.backward(), &model))
                }
            };
            if !value.is_finite() {
                return Err(TrainError::NonFiniteLoss {
                    step: state.step + 1,
                    value,
                    last_checkpoint: last_ckpt,
                });
            }
            loss_sum += value;
            accum.accumulate(&model, grads);
        }
        let mut grads = accum.grads();
        if let Some(mask) = &grad_mask {
            mask.apply(&mut grads);
        }
        let grad_norm = clip_grad_norm(&model, &mut grads, p.clip_grad_norm);
        if !grad_norm.is_finite() {
            return Err(TrainError::NonFiniteLoss {
                step: state.step + 1,
                value: f32::NAN,
                last_checkpoint: last_ckpt,
            });
        }
        model = optim.step(lr, model, grads);
        state.step += 1;
        state.tokens_seen += per_step as u64 * tokens_per_seq;
        if state.step % p.log_every == 0 || state.step == p.steps {
            let secs = clock.elapsed().as_secs_f64().max(1e-9);
            let steps_since =
                if state.step % p.log_every == 0 { p.log_every } else { state.step % p.log_every };
            observer(&Event::Step {
                step: state.step,
                total: p.steps,
                loss: loss_sum,
                lr,
                grad_norm,
                tokens_seen: state.tokens_seen,
                tokens_per_s: (steps_since * per_step) as f64 * tokens_per_seq as f64 / secs,
            });
            clock = Instant::now();
        }
        if options.kill_after == Some(state.step) {
            return Err(TrainError::Interrupted { step: state.step });
        }
        // The step's evaluation comes before its checkpoint: a run stopped (Ctrl-C) or killed
        // after the checkpoint has logged it, and one killed before redoes the step and it.
        let eval_due = p.eval_every > 0 && state.step % p.eval_every == 0;
        if let Some(eval) = &data.eval
            && (eval_due || state.step == p.steps)
        {
            let loss = eval_loss(model.valid().lm(), eval, p.eval_sequences, p.batch_size);
            observer(&Event::Eval { step: state.step, loss });
            clock = Instant::now();
        }
        let interrupted = options.interrupt.is_some_and(|f| f.load(Ordering::Relaxed));
        let periodic = p.checkpoint_every > 0 && state.step % p.checkpoint_every == 0;
        if periodic || interrupted || state.step == p.steps {
            let path = checkpoint::save(&options.checkpoint_dir, &model, &optim, &state, 2)?;
            last_ckpt = path.display().to_string();
            observer(&Event::Checkpoint { step: state.step, path });
        }
        if interrupted {
            return Err(TrainError::Interrupted { step: state.step });
        }
    }
    Ok(model.valid())
}
