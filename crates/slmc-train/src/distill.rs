//! The distillation objective: a frozen teacher (plain device, no graph) and a trained student
//! with optional linear projections for hidden-state matching.

use crate::TrainError;
use crate::chunked::{LayerTerms, TokenMean, head_logits};
use crate::kd::{
    Divergence, HiddenLoss, hidden_loss, kd_loss, token_divergence, token_topk_forward_kl, topk_forward_kl,
};
use crate::loss::{masked_cross_entropy, token_nll};
use crate::teacher_cache::TopKCache;
use crate::trainer::{Batch, GradOptions, StepLoss, TrainModel, chunked_grads};
use burn::module::{Module, Param, ParamId};
use burn::nn::Linear;
use burn::optim::GradientsParams;
use burn::prelude::*;
use slmc_config::FloatDtype;
use slmc_formats::{Checkpoint, TensorToWrite, write_checkpoint};
use slmc_model::CausalLm;
use std::path::Path;

/// A student and the projections mapping its hidden states to the teacher's width.
#[derive(Module, Debug)]
pub struct Distilled {
    /// The student.
    pub student: CausalLm,
    /// One `[d_student → d_teacher]` projection per matched layer pair (empty when the widths
    /// agree or there is no hidden-state loss).
    pub projections: Vec<Linear>,
}

/// First parameter id of the projections (far above the student's 1, 2, 3… ids).
const PROJECTION_IDS: u64 = 1 << 40;

impl Distilled {
    /// Wraps `student` with `pairs` projections from `d_student` to `d_teacher` (none if equal),
    /// initialised to a leading identity block (zeros elsewhere), so training starts by comparing
    /// the dimensions the two widths share.
    pub fn new(student: CausalLm, pairs: usize, d_student: usize, d_teacher: usize) -> Self {
        let device = student.device();
        let projections = if d_student == d_teacher {
            Vec::new()
        } else {
            (0..pairs)
                .map(|i| {
                    let eye: Vec<f32> = (0..d_student * d_teacher)
                        .map(|k| if k / d_teacher == k % d_teacher { 1.0 } else { 0.0 })
                        .collect();
                    let mut w = Param::from_tensor(Tensor::from_data(
                        TensorData::new(eye, [d_student, d_teacher]),
                        &device,
                    ));
                    w.id = ParamId::from(PROJECTION_IDS + i as u64);
                    Linear { weight: w, bias: None }
                })
                .collect()
        };
        Self { student, projections }
    }
}

impl TrainModel for Distilled {
    fn lm(&self) -> &CausalLm {
        &self.student
    }
    fn with_lm(self, lm: CausalLm) -> Self {
        Self { student: lm, projections: self.projections }
    }
    fn save_extra(&self, dir: &Path) -> Result<(), TrainError> {
        if self.projections.is_empty() {
            return Ok(());
        }
        let tensors = self
            .projections
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let w = p.weight.val();
                let shape = w.dims().to_vec();
                let v: Vec<f32> = w.into_data().convert::<f32>().try_to_vec().expect("f32");
                TensorToWrite::from_f32(format!("projection.{i}"), shape, &v, FloatDtype::F32)
            })
            .collect();
        write_checkpoint(&dir.join("projections"), tensors, None)?;
        Ok(())
    }
    fn load_extra(self, dir: &Path) -> Result<Self, TrainError> {
        if self.projections.is_empty() {
            return Ok(self);
        }
        let ckpt = Checkpoint::open_dir(&dir.join("projections"))?;
        let device = self.student.device();
        let projections = self
            .projections
            .into_iter()
            .enumerate()
            .map(|(i, mut p)| {
                let (shape, _, v) = ckpt.read_f32(&format!("projection.{i}"))?;
                let mut w =
                    Param::from_tensor(Tensor::from_data(TensorData::new(v, [shape[0], shape[1]]), &device));
                w.id = p.weight.id;
                p.weight = w;
                Ok(p)
            })
            .collect::<Result<Vec<_>, TrainError>>()?;
        Ok(Self { student: self.student, projections })
    }
}

/// Where the teacher's distribution comes from.
pub enum TeacherSignal<'a> {
    /// The teacher model, run on every batch.
    Online(&'a CausalLm),
    /// A precomputed top-K cache (forward KL only).
    Cached(&'a TopKCache),
}

/// A hidden-state loss term: the loss, its weight and the (student layer, teacher layer) pairs.
pub type HiddenTerm = (HiddenLoss, f64, Vec<(usize, usize)>);

/// The distillation loss: `alpha · τ² · KD + (1 − alpha) · CE + w · hidden`, each averaged over
/// the batch's trained tokens (all of them for packed text).
pub struct DistillObjective<'a> {
    /// The teacher's distribution.
    pub teacher: TeacherSignal<'a>,
    /// Divergence.
    pub divergence: Divergence,
    /// Temperature.
    pub temperature: f64,
    /// KD weight.
    pub alpha: f64,
    /// Vocabulary entries compared (the shared tokenizer's; padding rows beyond it are sliced off).
    pub vocab: usize,
    /// Hidden-state loss, its weight and (student layer, teacher layer) pairs.
    pub hidden: Option<HiddenTerm>,
}

impl StepLoss<Distilled> for DistillObjective<'_> {
    fn loss(&mut self, model: &Distilled, batch: &Batch) -> Tensor<1> {
        let student_layers: Vec<usize> =
            self.hidden.as_ref().map_or(vec![], |h| h.2.iter().map(|p| p.0).collect());
        let (s_logits, s_hidden) = model.student.forward_with_hidden(batch.inputs.clone(), &student_layers);
        let w = batch.weights.clone();
        let ce = masked_cross_entropy(s_logits.clone(), batch.targets.clone(), w.clone());
        let v = self.vocab;
        let s_kd = if s_logits.dims()[2] == v { s_logits } else { s_logits.narrow(2, 0, v) };
        let (kd, t_hidden) = match &self.teacher {
            TeacherSignal::Cached(cache) => {
                let (ids, logp) = cache.batch(&batch.indices, &s_kd.device());
                (topk_forward_kl(ids, logp, s_kd, self.temperature, w.clone()), vec![])
            }
            TeacherSignal::Online(teacher) => {
                let teacher_layers: Vec<usize> =
                    self.hidden.as_ref().map_or(vec![], |h| h.2.iter().map(|p| p.1).collect());
                let (t_logits, t_hidden) = teacher.forward_with_hidden(batch.inputs.clone(), &teacher_layers);
                let t_kd = if t_logits.dims()[2] == v { t_logits } else { t_logits.narrow(2, 0, v) };
                (kd_loss(t_kd, s_kd, self.temperature, self.divergence, w.clone()), t_hidden)
            }
        };
        let mut loss = kd * self.alpha + ce * (1.0 - self.alpha);
        if let Some((kind, weight, _)) = &self.hidden {
            let n = s_hidden.len().max(1) as f64;
            for (i, (sh, th)) in s_hidden.into_iter().zip(t_hidden).enumerate() {
                let sh = match model.projections.get(i) {
                    Some(p) => p.forward(sh),
                    None => sh,
                };
                loss = loss + hidden_loss(sh, th, *kind, w.clone()) * (*weight / n);
            }
        }
        loss
    }
    fn loss_and_grads(
        &mut self,
        model: &Distilled,
        batch: &Batch,
        how: &GradOptions,
    ) -> Option<(f32, GradientsParams)> {
        let [b, t] = batch.targets.dims();
        let n = b * t;
        let mean = TokenMean::new(n, batch.weights.clone());
        let targets = batch.targets.clone().reshape([n]);
        let (v, tau, alpha, divisor) = (self.vocab, self.temperature, self.alpha, how.divisor);
        let hidden_pairs = self.hidden.as_ref().map_or(vec![], |h| h.2.clone());
        // The teacher's side, at most `[B, T, H]` and `[B, T, K]` whole: final-norm hidden states
        // (its logits are made chunk by chunk), or the cached top-K entries.
        #[allow(clippy::large_enum_variant)] // one value per micro-batch, on the stack
        enum Side {
            Online(Tensor<2>),
            Cached(Tensor<2, Int>, Tensor<2>),
        }
        let (side, t_hidden) = match &self.teacher {
            TeacherSignal::Cached(cache) => {
                let (ids, logp) = cache.batch(&batch.indices, &batch.inputs.device());
                let k = ids.dims()[2];
                (Side::Cached(ids.reshape([n, k]), logp.reshape([n, k])), vec![])
            }
            TeacherSignal::Online(teacher) => {
                let layers: Vec<usize> = hidden_pairs.iter().map(|p| p.1).collect();
                let (hn, hidden) = teacher.hidden_with_layers(batch.inputs.clone(), &layers);
                let d = hn.dims()[2];
                (Side::Online(hn.reshape([n, d])), hidden)
            }
        };
        let teacher = match &self.teacher {
            TeacherSignal::Online(t) => Some(*t),
            TeacherSignal::Cached(_) => None,
        };
        let loss = |s_logits: Tensor<2>, r: std::ops::Range<usize>| {
            let (start, len) = (r.start, r.len());
            let s_kd =
                if s_logits.dims()[1] == v { s_logits.clone() } else { s_logits.clone().narrow(1, 0, v) };
            let kd = match &side {
                Side::Cached(ids, logp) => token_topk_forward_kl(
                    ids.clone().narrow(0, start, len),
                    logp.clone().narrow(0, start, len),
                    s_kd,
                    tau,
                ),
                Side::Online(th) => {
                    let lm = teacher.expect("online teacher");
                    let t_logits = head_logits(lm, th.clone().narrow(0, start, len));
                    let t_kd = if t_logits.dims()[1] == v { t_logits } else { t_logits.narrow(1, 0, v) };
                    token_divergence(t_kd, s_kd, tau, self.divergence)
                }
            };
            let mut share = mean.share(kd, r.clone()) * (alpha * tau * tau);
            if alpha < 1.0 {
                let nll = token_nll(s_logits, targets.clone().narrow(0, start, len));
                share = share + mean.share(nll, r) * (1.0 - alpha);
            }
            share / divisor
        };
        let w = batch.weights.clone();
        let pairs = hidden_pairs.len().max(1) as f64;
        let term = |slot: usize, sh: Tensor<3>| {
            let (kind, weight, _) = self.hidden.as_ref().expect("terms only with a hidden loss");
            let sh = match model.projections.get(slot) {
                Some(p) => p.forward(sh),
                None => sh,
            };
            hidden_loss(sh, t_hidden[slot].clone(), *kind, w.clone()) * (*weight / pairs / divisor as f64)
        };
        // Hidden-state terms need the live teacher (a cached teacher has no hidden states).
        let layers = if t_hidden.is_empty() { vec![] } else { hidden_pairs.iter().map(|p| p.0).collect() };
        let terms = LayerTerms { layers, term: &term };
        Some(chunked_grads(model, &model.student, batch.inputs.clone(), how, &loss, &terms))
    }
}
