//! The offline teacher: with K = vocabulary, training from the cache computes the same loss as
//! running the teacher online (up to the cache's f16 storage of log-probabilities).

mod common;

use burn::prelude::*;
use slmc_config::ModelConfig;
use slmc_model::CausalLm;
use slmc_model::model::Init;
use slmc_train::distill::{DistillObjective, Distilled, TeacherSignal};
use slmc_train::kd::Divergence;
use slmc_train::teacher_cache::{TopKCache, TopKSpec, sequences_drawn};
use slmc_train::{Batch, StepLoss};

/// Relative tolerance from storing log-probabilities as f16 (11-bit mantissa).
const F16_CACHE_TOL: f32 = 1e-2;

fn config(layers: usize) -> ModelConfig {
    ModelConfig::from_json_str(
        &format!(r#"{{"model_type":"llama","vocab_size":48,"hidden_size":32,"intermediate_size":64,"num_hidden_layers":{layers},
            "num_attention_heads":4,"num_key_value_heads":2,"max_position_embeddings":64}}"#),
        "test",
    )
    .unwrap()
}

#[test]
fn full_vocabulary_cache_equals_the_online_teacher() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::packed_rows(dir.path());
    let dev = Device::flex();
    let teacher = CausalLm::new(&config(2), Init::Normal { std: 0.3, seed: 1 }, &dev);
    let student =
        Distilled::new(CausalLm::new(&config(1), Init::Normal { std: 0.3, seed: 2 }, &dev), 0, 32, 32);
    let seqs = sequences_drawn(data.len(), 5, 8);
    assert!(!seqs.is_empty());
    let cache = TopKCache::build(
        &teacher,
        &data,
        &seqs,
        TopKSpec { k: 48, tau: 2.0, vocab: 48, batch_size: 3 },
        &mut |_, _| {},
    );
    // Round trip through the file format.
    let path = dir.path().join("c.cache");
    cache.save(&path, "fp").unwrap();
    assert!(TopKCache::load(&path, "other", &seqs).unwrap().is_none());
    let cache = TopKCache::load(&path, "fp", &seqs).unwrap().unwrap();
    assert_eq!(cache.len(), seqs.len());

    let idx: Vec<usize> = seqs.iter().take(3).copied().collect();
    let batch = Batch::gather(&data, idx.clone(), &dev);
    let objective = |signal| DistillObjective {
        teacher: signal,
        divergence: Divergence::ForwardKl,
        temperature: 2.0,
        alpha: 1.0,
        vocab: 48,
        hidden: None,
    };
    let online: f32 = objective(TeacherSignal::Online(&teacher)).loss(&student, &batch).into_scalar();
    let cached: f32 = objective(TeacherSignal::Cached(&cache)).loss(&student, &batch).into_scalar();
    assert!(online > 0.01);
    assert!((cached - online).abs() <= F16_CACHE_TOL * online, "cached {cached} vs online {online}");

    // A small K keeps the bulk of the loss through the tail bucket and stays close.
    let small = TopKCache::build(
        &teacher,
        &data,
        &seqs,
        TopKSpec { k: 8, tau: 2.0, vocab: 48, batch_size: 3 },
        &mut |_, _| {},
    );
    let top8: f32 = objective(TeacherSignal::Cached(&small)).loss(&student, &batch).into_scalar();
    assert!(top8 > 0.0 && (top8 - online).abs() < 0.5 * online, "top-8 {top8} vs online {online}");
}
