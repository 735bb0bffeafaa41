//! LoRA / DoRA / QLoRA on the model: PEFT 0.21.2's adapters (tests/fixtures/lora, made by
//! scripts/make_lora_fixture.py) give PEFT's logits, B = 0 is the base bit for bit, the adapted
//! forward equals the merged one, only adapter parameters get gradients, and an NF4 base computes
//! with its dequantized weights.

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::prelude::*;
use slmc_config::FloatDtype;
use slmc_formats::adapter::{LoraConfig, read_peft};
use slmc_formats::nf4::Nf4Options;
use slmc_model::{HfModel, lora};
use std::path::{Path, PathBuf};

/// f32 forward vs PEFT's f32 forward: max |Δlogit| ≤ this × max |logit| (the base model's own
/// parity with transformers is held to the same bound in tests/parity.rs).
const LOGIT_TOL: f32 = 1e-4;
/// Adapted forward (x·W + s·x·A·B) vs merged forward (x·(W + s·A·B)): the same sums in another
/// order.
const MERGE_TOL: f32 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn base() -> HfModel {
    HfModel::load(&fixtures().join("models/llama_gqa"), &Device::flex()).unwrap()
}

/// Tensors by name: shape and values.
type Tensors = std::collections::HashMap<String, (Vec<usize>, Vec<f32>)>;

fn reference(case: &str) -> (Vec<i64>, Tensors) {
    let bytes = std::fs::read(fixtures().join("lora").join(case).join("reference.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let ids: Vec<i64> = st
        .tensor("input_ids")
        .unwrap()
        .data()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let mut tensors = std::collections::HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() == safetensors::Dtype::F32 {
            tensors.insert(name, (view.shape().to_vec(), FloatDtype::F32.decode(view.data())));
        }
    }
    (ids, tensors)
}

fn logits(model: &slmc_model::CausalLm, ids: &[i64]) -> Vec<f32> {
    let ids: Vec<i32> = ids.iter().map(|&i| i as i32).collect();
    let n = ids.len();
    let t = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, n]), &model.device());
    model.forward(t).into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
}

#[test]
fn peft_adapters_give_peft_logits_unmerged_and_merged() {
    for case in ["lora", "dora", "rslora", "modules_to_save"] {
        let adapter = read_peft(&fixtures().join("lora").join(case)).unwrap();
        let (ids, reference) = reference(case);
        let model = lora::attach(base().model, &adapter).unwrap();
        let got = logits(&model, &ids);
        let want = &reference["logits_adapter"].1;
        let base_logits = &reference["logits_base"].1;
        let tol = LOGIT_TOL * max_abs(want);
        let d = max_diff(&got, want);
        assert!(d <= tol, "{case}: adapted logits differ from PEFT's by {d} (tolerance {tol})");
        // The adapter matters: the check above would fail for the base model.
        assert!(max_diff(base_logits, want) > 100.0 * tol, "{case}: fixture adapter is a no-op");
        let merged = lora::merge(model);
        assert!(!lora::has_adapters(&merged));
        let d = max_diff(&logits(&merged, &ids), &reference["logits_merged"].1);
        assert!(d <= tol, "{case}: merged logits differ from PEFT's merge_and_unload by {d}");
    }
}

#[test]
fn extract_returns_the_attached_adapter_exactly() {
    for case in ["lora", "dora", "modules_to_save"] {
        let adapter = read_peft(&fixtures().join("lora").join(case)).unwrap();
        let model = lora::attach(base().model, &adapter).unwrap();
        let back = lora::extract(&model).unwrap().unwrap();
        assert_eq!(back.modules, adapter.modules, "{case}");
        assert_eq!(back.saved, adapter.saved, "{case}");
    }
}

fn fresh(dora: bool) -> (slmc_model::CausalLm, slmc_formats::adapter::LoraAdapter) {
    let model = base().model;
    let mut config = LoraConfig::new(4, 8.0, vec!["q_proj".into(), "v_proj".into(), "down_proj".into()]);
    config.dora = dora;
    let modules = lora::matching_modules(&model, &config);
    let adapter = lora::init_adapter(&model, &config, &modules, 7).unwrap();
    (model, adapter)
}

#[test]
fn fresh_adapters_start_exactly_at_the_base_model() {
    for dora in [false, true] {
        let (model, adapter) = fresh(dora);
        let ids: Vec<i64> = (1..40).collect();
        let want = logits(&model, &ids);
        let adapted = lora::attach(model, &adapter).unwrap();
        assert_eq!(lora::adapter_modules(&adapted).len(), 2 * 3);
        assert_eq!(logits(&adapted, &ids), want, "dora={dora}: B = 0 must leave the logits bit-exact");
        // A is PEFT's kaiming-uniform: |A| ≤ 1/sqrt(in) and not all zero.
        let w = adapter.modules.values().next().unwrap();
        let bound = 1.0 / (w.a.cols as f32).sqrt();
        assert!(w.a.data.iter().all(|v| v.abs() <= bound) && max_abs(&w.a.data) > 0.5 * bound);
    }
}

#[test]
fn adapted_forward_equals_merged_forward() {
    for dora in [false, true] {
        let (model, mut adapter) = fresh(dora);
        for (i, w) in adapter.modules.values_mut().enumerate() {
            for (j, v) in w.b.data.iter_mut().enumerate() {
                *v = (((i * 31 + j * 17) % 23) as f32 - 11.0) * 0.01;
            }
            if let Some(m) = &mut w.magnitude {
                m.iter_mut().enumerate().for_each(|(j, v)| *v *= 1.0 + 0.01 * (j % 5) as f32);
            }
        }
        let ids: Vec<i64> = (1..40).collect();
        let base_logits = logits(&model, &ids);
        let adapted = lora::attach(model, &adapter).unwrap();
        let a = logits(&adapted, &ids);
        let m = logits(&lora::merge(adapted), &ids);
        let tol = MERGE_TOL * max_abs(&a);
        assert!(max_diff(&a, &m) <= tol, "dora={dora}: {} > {tol}", max_diff(&a, &m));
        assert!(max_diff(&a, &base_logits) > 100.0 * tol, "dora={dora}: the adapter changed nothing");
    }
}

#[test]
fn only_adapters_and_saved_modules_get_gradients() {
    let (model, mut adapter) = fresh(true);
    adapter.config.modules_to_save = vec!["lm_head".into()];
    let model = lora::attach(model, &adapter).unwrap();
    let model = lora::trainable_adapters(model, &["lm_head".into()]).train();
    let ids =
        Tensor::<2, Int>::from_data(TensorData::new((1..20).collect::<Vec<i32>>(), [1, 19]), &model.device());
    let loss = model.forward(ids).square().mean();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let q = model.decoder_linear("model.layers.0.self_attn.q_proj").unwrap();
    let l = q.lora.as_ref().unwrap();
    assert!(grads.get::<2>(l.a.id).is_some() && grads.get::<2>(l.b.id).is_some());
    assert!(grads.get::<1>(l.magnitude.as_ref().unwrap().id).is_some());
    assert!(grads.get::<2>(model.lm_head.as_ref().unwrap().weight.id).is_some(), "lm_head is saved");
    assert!(grads.get::<2>(q.weight.id).is_none(), "frozen base weight got a gradient");
    assert!(grads.get::<2>(model.embed_tokens.weight.id).is_none());
    assert!(grads.get::<1>(model.final_norm().weight.id).is_none());
    let k = model.decoder_linear("model.layers.0.self_attn.k_proj").unwrap();
    assert!(grads.get::<2>(k.weight.id).is_none());
    // Exactly the adapter factors, magnitudes and lm_head: 6 modules × 3 tensors + 1.
    assert_eq!(grads.len(), 6 * 3 + 1);
    let n = lora::trainable_parameters(&model.valid(), &["lm_head".into()]);
    let c = &model.config;
    let expect_head = c.vocab_size * c.hidden_size;
    assert!(n > expect_head && n < expect_head + 20_000, "{n}");
}

#[test]
fn nf4_base_computes_with_its_dequantized_weights() {
    let (model, mut adapter) = fresh(false);
    adapter.modules.values_mut().for_each(|w| w.b.data.iter_mut().for_each(|v| *v = 0.02));
    let model = lora::attach(model, &adapter).unwrap();
    let packed = lora::pack_nf4(model.clone(), &Nf4Options::default()).unwrap();
    let q = packed.decoder_linear("model.layers.0.mlp.down_proj").unwrap();
    assert!(q.packed.is_some() && q.weight.val().dims() == [0, 0], "dense copy not freed");
    let ids: Vec<i64> = (1..30).collect();
    let from_packed = logits(&packed, &ids);
    let unpacked = lora::unpack_nf4(packed);
    assert_eq!(logits(&unpacked, &ids), from_packed, "NF4 forward must equal the dequantized forward");
    // The dequantized weights are NF4's: close to the dense ones (relative Frobenius error of
    // 4-bit NormalFloat on Gaussian weights is about 0.1) but not equal.
    for name in model.config.linear_modules() {
        let dense = model.decoder_linear(&name).unwrap().weight.val();
        let deq = unpacked.decoder_linear(&name).unwrap().weight.val();
        let err: f32 = (dense.clone() - deq).square().sum().sqrt().into_scalar();
        let norm: f32 = dense.square().sum().sqrt().into_scalar();
        assert!(err > 0.0 && err < 0.15 * norm, "{name}: relative error {}", err / norm);
    }
}
