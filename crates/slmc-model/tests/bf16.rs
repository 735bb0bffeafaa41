//! bf16 compute on the flex backend: mixed precision (f32 master weights, bf16 activations) and a
//! model whose parameters are cast to bf16 (a frozen teacher), against transformers computing
//! natively in bf16 on the same weights (`logits_native` of the bf16 fixtures) and against slmc's
//! own f32 computation; gradients of mixed precision reach the f32 parameters.

// Reports its measured figures in the test output.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use burn::prelude::*;
use burn::tensor::DType;
use slmc_config::FloatDtype;
use slmc_model::HfModel;
use slmc_model::model::cast_parameters;
use std::path::{Path, PathBuf};

/// bf16 rounds every activation to 8 mantissa bits: transformers and slmc, both in bf16, differ
/// by at most this × max|logit| (and each from the f32 computation by about as much).
const BF16_TOL: f32 = 5e-2;

fn fixture(v: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models").join(v)
}

struct Reference {
    ids: Tensor<2, Int>,
    /// transformers in f32.
    logits: Vec<f32>,
    /// transformers computing natively in the storage dtype (bf16/f16 fixtures only).
    native: Option<Vec<f32>>,
}

fn reference(v: &str) -> Reference {
    let bytes = std::fs::read(fixture(v).join("reference.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let ids = st.tensor("input_ids").unwrap();
    let shape = [ids.shape()[0], ids.shape()[1]];
    let flat: Vec<i32> =
        ids.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as i32).collect();
    let f32s = |name: &str| st.tensor(name).ok().map(|t| FloatDtype::F32.decode(t.data()));
    Reference {
        ids: Tensor::from_data(TensorData::new(flat, shape), &Device::flex()),
        logits: f32s("logits").unwrap(),
        native: f32s("logits_native"),
    }
}

fn values(t: Tensor<3>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec().unwrap()
}

fn rel(a: &[f32], b: &[f32]) -> f32 {
    let d = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    d / b.iter().fold(0.0f32, |m, y| m.max(y.abs()))
}

#[test]
fn bf16_compute_tracks_transformers_bf16_and_f32() {
    let m = HfModel::load(&fixture("llama_tied_bf16"), &Device::flex()).unwrap();
    let r = reference("llama_tied_bf16");
    let (ids, f32_ref, bf16_ref) = (r.ids, r.logits, r.native.unwrap());
    let f32_ours = values(m.model.forward(ids.clone()));
    let mixed = m.model.clone().with_compute_dtype(DType::BF16);
    let logits = mixed.forward(ids.clone());
    assert_eq!(logits.dtype(), DType::F32, "logits come back in f32");
    let mixed = values(logits);
    // Parameters cast to bf16 too: the same numbers (the fixture's weights are bf16 already).
    let cast = cast_parameters(m.model.clone(), DType::BF16).with_compute_dtype(DType::BF16);
    assert_eq!(cast.embed_tokens.weight.val().dtype(), DType::BF16);
    let pure = values(cast.forward(ids));
    let (vs_hf_bf16, vs_f32) = (rel(&mixed, &bf16_ref), rel(&mixed, &f32_ref));
    eprintln!(
        "bf16 vs transformers bf16 {vs_hf_bf16:.2e}, vs transformers f32 {vs_f32:.2e}, transformers bf16 vs f32 {:.2e}, slmc f32 vs transformers f32 {:.2e}",
        rel(&bf16_ref, &f32_ref),
        rel(&f32_ours, &f32_ref)
    );
    assert!(vs_hf_bf16 <= BF16_TOL && vs_f32 <= BF16_TOL, "{vs_hf_bf16} {vs_f32}");
    // bf16 really computed in bf16: not the f32 numbers.
    assert!(rel(&mixed, &f32_ours) > 1e-4);
    assert_eq!(pure, mixed);
}

#[test]
fn every_family_runs_in_bf16_and_mixed_gradients_reach_f32_parameters() {
    for v in
        ["gemma2_softcap", "gemma3_text_swa", "phi2_parallel", "qwen3_qknorm", "granite_mult", "smollm3_nope"]
    {
        let m = HfModel::load(&fixture(v), &Device::flex()).unwrap();
        let reference = reference(v);
        let got = values(m.model.clone().with_compute_dtype(DType::BF16).forward(reference.ids));
        let r = rel(&got, &reference.logits);
        assert!(r <= BF16_TOL, "{v}: bf16 vs f32 {r}");
    }
    let device = Device::flex().autodiff();
    let m = HfModel::load(&fixture("llama_gqa"), &device).unwrap();
    let ids = reference("llama_gqa").ids;
    let model = m.model.with_compute_dtype(DType::BF16);
    let loss = model.forward(ids.to_device(&device)).mean();
    let grads = loss.backward();
    let w = model.layers[0].self_attn.q_proj.as_ref().unwrap().weight.val();
    let g = w.grad(&grads).expect("the f32 master weight gets a gradient through the bf16 cast");
    assert_eq!((w.dtype(), g.dtype()), (DType::F32, DType::F32));
    let g: Vec<f32> = g.into_data().convert::<f32>().try_to_vec().unwrap();
    assert!(g.iter().all(|x| x.is_finite()) && g.iter().any(|x| *x != 0.0));
}
