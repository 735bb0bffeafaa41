//! Chunked vocabulary losses (and layer-wise checkpointing under them) compute the loss value and
//! parameter gradients of plain backpropagation through whole `[B, T, V]` logits: cross-entropy,
//! every KD divergence (online teacher, top-K cache), loss weights, hidden-state terms with and
//! without projections.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
mod common;

use slmc_config::ModelConfig;
use slmc_data::Sequences;
use slmc_model::CausalLm;
use slmc_model::model::Init;
use slmc_train::distill::{DistillObjective, Distilled, TeacherSignal};
use slmc_train::kd::{Divergence, HiddenLoss};
use slmc_train::teacher_cache::{TopKCache, TopKSpec};
use slmc_train::{Batch, CrossEntropy, GradOptions, StepLoss};

/// Relative tolerance on the loss value (the same sum in another order, in f32).
const LOSS_TOL: f32 = 1e-5;
/// Relative tolerance on each gradient tensor, against its largest entry.
const GRAD_TOL: f32 = 1e-4;

fn config(layers: usize, hidden: usize, tied: bool) -> ModelConfig {
    ModelConfig::from_json_str(
        &format!(
            r#"{{"model_type":"llama","vocab_size":48,"hidden_size":{hidden},"intermediate_size":64,"num_hidden_layers":{layers},
            "num_attention_heads":4,"num_key_value_heads":2,"max_position_embeddings":64,"tie_word_embeddings":{tied}}}"#
        ),
        "test",
    )
    .unwrap()
}

fn data(dir: &std::path::Path) -> Sequences {
    common::packed_rows(dir)
}

/// The reference (whole logits, one backward) and the chunked computation, with and without
/// layer-wise checkpointing, for chunks of 7 positions (3 × 16 = 48 positions: 7 chunks, the last
/// short) and a whole-batch chunk; asserts equal values and gradients.
fn compare<M: Module>(model: &M, objective: &mut dyn StepLoss<M>, batch: &Batch) -> usize {
    let divisor = 2.0;
    let reference = objective.loss(model, batch) / divisor;
    let want_loss: f32 = reference.clone().into_scalar();
    let want = GradientsParams::from_grads(reference.backward(), model);
    assert!(want_loss.abs() > 1e-3, "a loss to compare: {want_loss}");
    for (chunk, seed) in [(7, None), (7, Some(5)), (0, None), (1000, Some(5))] {
        let how = GradOptions { divisor, loss_chunk: chunk, checkpoint_seed: seed };
        let (got_loss, got) = objective.loss_and_grads(model, batch, &how).expect("chunked path");
        assert!(
            (got_loss - want_loss).abs() <= LOSS_TOL * want_loss.abs(),
            "chunk {chunk} checkpointing {seed:?}: {got_loss} vs {want_loss}"
        );
        assert_eq!(got.len(), want.len(), "the same parameters get gradients");
        struct Check<'a>(&'a GradientsParams, &'a GradientsParams, usize, String);
        impl ModuleVisitor for Check<'_> {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
                let (Some(a), Some(b)) = (self.0.get::<D>(p.id), self.1.get::<D>(p.id)) else { return };
                let scale: f32 = b.clone().abs().max().into_scalar();
                let diff: f32 = (a - b).abs().max().into_scalar();
                assert!(
                    diff <= GRAD_TOL * scale.max(1e-6),
                    "{}: param {}: {diff} vs scale {scale}",
                    self.3,
                    p.id
                );
                self.2 += 1;
            }
        }
        let mut check = Check(&got, &want, 0, format!("chunk {chunk} checkpointing {seed:?}"));
        model.visit(&mut check);
        assert_eq!(check.2, want.len());
    }
    want.len()
}

fn weights(dev: &Device) -> Tensor<2> {
    let w: Vec<f32> = (0..48).map(|i| if i % 3 == 1 || i > 40 { 0.0 } else { 1.0 }).collect();
    Tensor::from_data(TensorData::new(w, [3, 16]), dev)
}

#[test]
fn cross_entropy_chunks_match_whole_logits() {
    let dir = tempfile::tempdir().unwrap();
    let data = data(dir.path());
    let dev = Device::flex();
    for tied in [false, true] {
        let m = CausalLm::new(&config(2, 32, tied), Init::Normal { std: 0.3, seed: 2 }, &dev).train();
        let mut batch = Batch::gather(&data, vec![0, 3, 5], &dev);
        compare(&m, &mut CrossEntropy, &batch);
        batch.weights = Some(weights(&dev));
        compare(&m, &mut CrossEntropy, &batch);
    }
}

#[test]
fn every_kd_loss_chunks_match_whole_logits() {
    let dir = tempfile::tempdir().unwrap();
    let data = data(dir.path());
    let dev = Device::flex();
    let teacher = CausalLm::new(&config(3, 32, false), Init::Normal { std: 0.3, seed: 1 }, &dev);
    let cache = TopKCache::build(
        &teacher,
        &data,
        &[0, 3, 5],
        TopKSpec { k: 8, tau: 2.0, vocab: 48, batch_size: 2 },
        &mut |_, _| {},
    );
    let signals = [TeacherSignal::Online(&teacher), TeacherSignal::Cached(&cache)];
    let cases = [
        (Divergence::ForwardKl, 1.0, None),
        (Divergence::ForwardKl, 0.6, Some((HiddenLoss::Mse, 0.5, vec![(0, 0), (1, 2)]))),
        (Divergence::ReverseKl, 0.8, None),
        (Divergence::Jsd { beta: 0.3 }, 0.5, Some((HiddenLoss::Cosine, 1.0, vec![(1, 1)]))),
    ];
    for (divergence, alpha, hidden) in cases {
        for signal in &signals {
            if matches!(signal, TeacherSignal::Cached(_)) && divergence != Divergence::ForwardKl {
                continue; // the cache serves forward KL only
            }
            // Projections when the widths differ (a 16-wide student), none when they agree.
            for width in [32, 16] {
                let pairs = hidden.as_ref().map_or(0, |h: &(HiddenLoss, f64, Vec<(usize, usize)>)| h.2.len());
                let student =
                    CausalLm::new(&config(2, width, width == 16), Init::Normal { std: 0.3, seed: 2 }, &dev);
                let model = Distilled::new(student, pairs, width, 32).train();
                let signal = match signal {
                    TeacherSignal::Online(t) => TeacherSignal::Online(t),
                    TeacherSignal::Cached(c) => TeacherSignal::Cached(c),
                };
                let mut objective = DistillObjective {
                    teacher: signal,
                    divergence,
                    temperature: 2.0,
                    alpha,
                    vocab: 48,
                    hidden: hidden.clone(),
                };
                let mut batch = Batch::gather(&data, vec![0, 3, 5], &dev);
                let n = compare(&model, &mut objective, &batch);
                // Every student tensor trains (embeddings, final norm, 9 per layer, an untied head),
                // and the projections with them when the live teacher gives hidden states.
                let online = matches!(objective.teacher, TeacherSignal::Online(_));
                let projections = if online { model.projections.len() } else { 0 };
                assert_eq!(n, 2 + 2 * 9 + usize::from(width == 32) + projections);
                batch.weights = Some(weights(&dev));
                compare(&model, &mut objective, &batch);
            }
        }
    }
}
