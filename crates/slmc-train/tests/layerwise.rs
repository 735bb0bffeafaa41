//! Layer-wise gradient checkpointing computes the gradients plain backpropagation does: full
//! training, LoRA, DoRA with modules-to-save, and LoRA over an NF4 base.

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::prelude::*;
use slmc_config::ModelConfig;
use slmc_formats::adapter::LoraConfig;
use slmc_formats::nf4::Nf4Options;
use slmc_model::model::Init;
use slmc_model::{CausalLm, lora};
use slmc_train::loss::{cross_entropy, token_nll};

/// Relative tolerance on each gradient tensor (the same sums, recomputed in another order).
const GRAD_TOL: f32 = 1e-4;

fn model(tied: bool) -> CausalLm {
    let cfg = ModelConfig::from_json_str(
        &format!(
            r#"{{"model_type":"llama","vocab_size":64,"hidden_size":32,"intermediate_size":64,"num_hidden_layers":3,
            "num_attention_heads":4,"num_key_value_heads":2,"max_position_embeddings":64,"rms_norm_eps":1e-5,
            "tie_word_embeddings":{tied}}}"#
        ),
        "test",
    )
    .unwrap();
    CausalLm::new(&cfg, Init::Normal { std: 0.1, seed: 3 }, &Device::flex())
}

fn with_adapters(m: CausalLm, dora: bool, saved: &[&str]) -> CausalLm {
    let mut config = LoraConfig::new(4, 8.0, vec!["q_proj".into(), "v_proj".into(), "down_proj".into()]);
    config.dora = dora;
    config.modules_to_save = saved.iter().map(|s| s.to_string()).collect();
    let modules = lora::matching_modules(&m, &config);
    let mut adapter = lora::init_adapter(&m, &config, &modules, 1).unwrap();
    adapter
        .modules
        .values_mut()
        .for_each(|w| w.b.data.iter_mut().enumerate().for_each(|(i, v)| *v = 0.05 * ((i % 7) as f32 - 3.0)));
    lora::attach_trainable(m, &adapter).unwrap()
}

fn batch(device: &Device) -> (Tensor<2, Int>, Tensor<2, Int>) {
    let ids: Vec<i32> = (0..2 * 13).map(|i| (i * 7 % 61) + 1).collect();
    let t = Tensor::<2, Int>::from_data(TensorData::new(ids, [2, 13]), device);
    (t.clone().narrow(1, 0, 12), t.narrow(1, 1, 12))
}

/// Every parameter's gradient, as (id, flattened values), from both methods.
fn compare(m: CausalLm) {
    let m = m.train();
    let (inputs, targets) = batch(&m.device());
    let loss = cross_entropy(m.forward(inputs.clone()), targets.clone()) / 2.0;
    let want_loss: f32 = loss.clone().into_scalar();
    let want = GradientsParams::from_grads(loss.backward(), &m);
    // Chunks of 5 positions over 2 × 12: the vocabulary loss in five pieces, the last one short.
    let flat = targets.clone().reshape([24]);
    let head = |logits: Tensor<2>, r: std::ops::Range<usize>| {
        token_nll(logits, flat.clone().narrow(0, r.start, r.len())).sum() / 24.0 / 2.0
    };
    let terms = slmc_train::chunked::LayerTerms::none();
    let (got_loss, got) = slmc_train::layerwise::loss_and_grads(&m, &m, inputs, 5, &head, &terms, 9);
    assert!((got_loss - want_loss).abs() <= 1e-5 * want_loss.abs(), "{got_loss} vs {want_loss}");
    assert_eq!(got.len(), want.len(), "the same parameters get gradients");
    struct Check<'a>(&'a GradientsParams, &'a GradientsParams, usize);
    impl burn::module::ModuleVisitor for Check<'_> {
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<D>>) {
            let (Some(a), Some(b)) = (self.0.get::<D>(p.id), self.1.get::<D>(p.id)) else { return };
            let scale: f32 = b.clone().abs().max().into_scalar();
            let diff: f32 = (a - b).abs().max().into_scalar();
            assert!(diff <= GRAD_TOL * scale.max(1e-6), "param {}: {diff} vs scale {scale}", p.id);
            self.2 += 1;
        }
    }
    let mut check = Check(&got, &want, 0);
    m.valid().visit(&mut check);
    assert_eq!(check.2, want.len());
}

#[test]
fn full_training_gradients_match() {
    compare(model(false));
    compare(model(true));
}

#[test]
fn lora_and_dora_gradients_match() {
    compare(with_adapters(model(false), false, &[]));
    compare(with_adapters(model(true), true, &["embed_tokens"]));
    compare(with_adapters(model(false), true, &["lm_head"]));
}

#[test]
fn qlora_gradients_match() {
    let m = lora::pack_nf4(with_adapters(model(false), false, &[]), &Nf4Options::default()).unwrap();
    compare(m);
}
