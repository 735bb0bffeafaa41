//! Parity with transformers on the committed fixtures (tests/fixtures, made by
//! scripts/make_fixtures.py): logits, greedy generation, perplexity, tokenizer ids, and
//! save→load round trips, for every supported architecture variant.

// Reports its measured figures in the test output.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use burn::prelude::*;
use serde_json::Value;
use slmc_config::FloatDtype;
use slmc_model::generate::{GenerateOptions, generate};
use slmc_model::hf_dir::{SaveOptions, save};
use slmc_model::perplexity::{WindowSpec, evaluate};
use slmc_model::{HfModel, Tokenizer, weights};
use std::path::{Path, PathBuf};

/// f32 computation vs transformers' f32 computation: max |Δlogit| ≤ this × max |logit|.
const LOGIT_TOL: f32 = 1e-4;
/// slmc's f32 computation on bf16/f16-stored weights vs transformers computing natively in that
/// dtype (every activation rounded to 8 or 11 mantissa bits).
const NATIVE_LOW_PRECISION_TOL: f32 = 5e-2;
/// Relative tolerance on mean NLL (f32 log-softmax vs the f64 reference).
const NLL_REL_TOL: f64 = 1e-5;

const VARIANTS: &[&str] = &[
    "llama_gqa",
    "llama_tied_bf16",
    "llama3_rope",
    "llama_linear_v4",
    "mistral_sharded",
    "qwen2_bias",
    "phi3_fused",
    "phi3_longrope",
    "gemma_geglu",
    "gemma2_softcap",
    "gemma3_text_swa",
    "gemma3_mm",
    "granite_mult",
    "phi2_parallel",
    "qwen3_qknorm",
    "smollm3_nope",
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn model_dir(variant: &str) -> PathBuf {
    fixtures().join("models").join(variant)
}

struct Reference {
    ids: Vec<Vec<i64>>,
    tensors: std::collections::HashMap<String, (Vec<usize>, Vec<f32>)>,
    json: Value,
}

fn reference(variant: &str) -> Reference {
    let dir = model_dir(variant);
    let bytes = std::fs::read(dir.join("reference.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let ids_view = st.tensor("input_ids").unwrap();
    let seq = ids_view.shape()[1];
    let flat: Vec<i64> =
        ids_view.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
    let ids = flat.chunks(seq).map(<[i64]>::to_vec).collect();
    let mut tensors = std::collections::HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() == safetensors::Dtype::F32 {
            let v = FloatDtype::F32.decode(view.data());
            tensors.insert(name, (view.shape().to_vec(), v));
        }
    }
    let json = serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap()).unwrap();
    Reference { ids, tensors, json }
}

fn ids_tensor(rows: &[Vec<i64>], device: &Device) -> Tensor<2, Int> {
    let (b, s) = (rows.len(), rows[0].len());
    let flat: Vec<i32> = rows.iter().flatten().map(|&x| x as i32).collect();
    Tensor::from_data(TensorData::new(flat, [b, s]), device)
}

/// Max |a - b| and max |b|.
fn compare(got: &[f32], want: &[f32]) -> (f32, f32) {
    assert_eq!(got.len(), want.len());
    let diff = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    let scale = want.iter().map(|b| b.abs()).fold(0.0f32, f32::max);
    (diff, scale)
}

fn logits_of(model: &HfModel, rows: &[Vec<i64>]) -> Vec<f32> {
    let device = model.model.device();
    model.model.forward(ids_tensor(rows, &device)).into_data().convert::<f32>().try_to_vec().unwrap()
}

/// The device these tests run on: flex, or libtorch's CPU device when the crate is built with
/// `--features tch` and the environment sets `SLMC_TEST_DEVICE=tch` (docs/backends.md).
fn test_device() -> Device {
    #[cfg(feature = "tch")]
    if std::env::var("SLMC_TEST_DEVICE").as_deref() == Ok("tch") {
        #[allow(deprecated)]
        return Device::libtorch();
    }
    Device::flex()
}

fn load(variant: &str) -> HfModel {
    HfModel::load(&model_dir(variant), &test_device()).unwrap_or_else(|e| panic!("{variant}: {e}"))
}

#[test]
fn logits_match_transformers_for_every_variant() {
    // Every variant is measured and reported before the test fails, so that one run on a new
    // backend (SLMC_TEST_DEVICE=tch) gives the whole table.
    let (mut report, mut failed) = (Vec::new(), Vec::new());
    for &variant in VARIANTS {
        let m = load(variant);
        let r = reference(variant);
        let (diff, scale) = compare(&logits_of(&m, &r.ids), &r.tensors["logits"].1);
        report.push(format!("{variant}: max|Δ| {diff:.3e} (max|logit| {scale:.2})"));
        if diff > LOGIT_TOL * scale {
            failed.push(format!("{variant}: max|Δlogit| {diff} > {LOGIT_TOL} × {scale}"));
        }

        // The first 12 tokens alone (for longrope: short factors; for mistral: no window).
        let short: Vec<Vec<i64>> = vec![r.ids[0][..12].to_vec()];
        let (diff, scale) = compare(&logits_of(&m, &short), &r.tensors["logits_short"].1);
        report.push(format!("{variant} short: max|Δ| {diff:.3e}"));
        if diff > LOGIT_TOL * scale {
            failed.push(format!("{variant} short: {diff} > {LOGIT_TOL} × {scale}"));
        }

        if let Some((_, native)) = r.tensors.get("logits_native") {
            let (diff, scale) = compare(&logits_of(&m, &r.ids), native);
            report.push(format!("{variant}: vs native {:?} max|Δ| {diff:.3e}", m.stored_dtype));
            if diff > NATIVE_LOW_PRECISION_TOL * scale {
                failed.push(format!("{variant} native: {diff} > {NATIVE_LOW_PRECISION_TOL} × {scale}"));
            }
        }
    }
    eprintln!("{}", report.join("\n"));
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn greedy_generation_with_kv_cache_matches_transformers() {
    let mut failed = Vec::new();
    for &variant in VARIANTS {
        let m = load(variant);
        let r = reference(variant);
        let g = &r.json["greedy"];
        let prompt: Vec<u32> =
            g["prompt_ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
        let want: Vec<u32> =
            g["new_ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
        let eos = g["eos_id"].as_u64().unwrap_or(1) as u32;
        let options =
            GenerateOptions { max_new_tokens: want.len(), stop_ids: vec![eos], ..Default::default() };
        let got = generate(&m.model, &prompt, &options, &mut |_| {}).unwrap();
        if got != want {
            failed.push(format!("{variant}: {got:?} != {want:?}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn perplexity_matches_transformers_on_token_rows_and_on_text() {
    let text = std::fs::read_to_string(fixtures().join("eval.txt")).unwrap();
    for &variant in VARIANTS {
        let m = load(variant);
        let r = reference(variant);
        let rows: Vec<Vec<u32>> = std::fs::read_to_string(model_dir(variant).join("eval.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                v["input_ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
            })
            .collect();
        for (key, rows) in
            [("nll", rows), ("nll_text", vec![m.tokenizer.as_ref().unwrap().encode(&text, true).unwrap()])]
        {
            let want = &r.json[key];
            let spec = WindowSpec {
                max_length: want["max_length"].as_u64().unwrap() as usize,
                stride: want["stride"].as_u64().unwrap() as usize,
            };
            let got = evaluate(&m.model, &rows, spec, 3, &mut |_, _| {}).unwrap();
            assert_eq!(got.tokens as u64, want["tokens"].as_u64().unwrap(), "{variant} {key}");
            let (g, w) = (got.mean_nll(), want["mean_nll"].as_f64().unwrap());
            assert!(((g - w) / w).abs() < NLL_REL_TOL, "{variant} {key}: mean NLL {g} vs transformers {w}");
        }
    }
}

#[test]
fn tokenizer_ids_and_decoding_match_transformers() {
    let dir = fixtures().join("tokenizer");
    let tok = Tokenizer::from_dir(&dir, None).unwrap();
    assert_eq!((tok.bos_id, tok.eos_ids.clone(), tok.pad_id), (Some(0), vec![1], Some(2)));
    let cases: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap()).unwrap();
    let cases = cases["cases"].as_array().unwrap();
    assert!(cases.len() >= 8);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> =
            case["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
        let got = tok.encode(text, true).unwrap();
        assert_eq!(got, want, "ids of {text:?}");
        assert_eq!(tok.decode(&got, true).unwrap(), case["decoded"].as_str().unwrap(), "decode of {text:?}");
    }
}

#[test]
fn save_then_load_is_bit_exact_in_the_stored_dtype() {
    for &variant in VARIANTS {
        let m = load(variant);
        let out = tempfile::tempdir().unwrap();
        let target = out.path().join("saved");
        let options = SaveOptions {
            dtype: Some(m.stored_dtype),
            max_shard_bytes: None,
            tokenizer_dir: Some(m.dir.clone()),
            tensor_dtype: None,
        };
        save(&m.model, &target, &options).unwrap();
        let again = HfModel::load(&target, &test_device()).unwrap();
        assert_eq!(again.stored_dtype, m.stored_dtype, "{variant}");
        assert_eq!(again.config.num_params(), m.config.num_params(), "{variant}");
        let (a, b) = (weights::export(&m.model), weights::export(&again.model));
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!((&x.name, &x.shape), (&y.name, &y.shape), "{variant}");
            assert!(
                x.values.iter().zip(&y.values).all(|(p, q)| p.to_bits() == q.to_bits()),
                "{variant}: {} differs",
                x.name
            );
        }
        // The tensors on disk equal the original checkpoint's, byte for byte.
        let (orig, saved) = (
            slmc_formats::Checkpoint::open_dir(&m.dir).unwrap(),
            slmc_formats::Checkpoint::open_dir(&target).unwrap(),
        );
        for name in saved.names() {
            // A multimodal checkpoint holds the language model under `language_model.`; slmc
            // saves it text-only.
            let source =
                if orig.meta(name).is_some() { name.to_string() } else { format!("language_model.{name}") };
            assert_eq!(saved.bytes(name).unwrap(), orig.bytes(&source).unwrap(), "{variant}: {name}");
        }
        assert!(target.join("tokenizer.json").is_file() && target.join("generation_config.json").is_file());
    }
}

#[test]
fn strict_loading_names_the_offending_tensor() {
    let src = model_dir("llama_gqa");
    let tmp = tempfile::tempdir().unwrap();
    let m = load("llama_gqa");
    // Drop one tensor and add a stray one.
    let mut tensors: Vec<slmc_formats::TensorToWrite> = weights::export(&m.model)
        .into_iter()
        .filter(|t| t.name != "model.layers.1.mlp.down_proj.weight")
        .map(|t| slmc_formats::TensorToWrite::from_f32(t.name, t.shape, &t.values, FloatDtype::F32))
        .collect();
    tensors.push(slmc_formats::TensorToWrite::from_f32(
        "model.layers.9.extra.weight",
        vec![2],
        &[1.0, 2.0],
        FloatDtype::F32,
    ));
    slmc_formats::write_checkpoint(tmp.path(), tensors, None).unwrap();
    std::fs::copy(src.join("config.json"), tmp.path().join("config.json")).unwrap();
    let err = HfModel::load(tmp.path(), &test_device()).err().unwrap().to_string();
    assert!(err.contains("missing tensor `model.layers.1.mlp.down_proj.weight`"), "{err}");
    assert!(err.contains("unexpected tensor `model.layers.9.extra.weight`"), "{err}");

    // A mis-shaped tensor (config says 3 layers' worth of width mismatch).
    let cfg = std::fs::read_to_string(src.join("config.json"))
        .unwrap()
        .replace("\"intermediate_size\": 128", "\"intermediate_size\": 96");
    std::fs::write(tmp.path().join("config.json"), cfg).unwrap();
    std::fs::copy(src.join("model.safetensors"), tmp.path().join("model.safetensors")).unwrap();
    let err = HfModel::load(tmp.path(), &test_device()).err().unwrap().to_string();
    assert!(
        err.contains("model.layers.0.mlp.gate_proj.weight` has shape [128, 64], expected [96, 64]"),
        "{err}"
    );
}

#[test]
fn truncated_weights_are_an_error_not_a_panic() {
    let src = model_dir("llama_gqa");
    let tmp = tempfile::tempdir().unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(src.join(f), tmp.path().join(f)).unwrap();
    }
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    std::fs::write(tmp.path().join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let err = HfModel::load(tmp.path(), &test_device()).err().unwrap().to_string();
    assert!(err.contains("truncated"), "{err}");
}

#[test]
fn gemma3_multimodal_loads_from_either_tensor_layout() {
    // transformers 5 saves `language_model.model.*`; 4.52+ checkpoints use `model.language_model.*`.
    let m = load("gemma3_mm");
    let ckpt = slmc_formats::Checkpoint::open_dir(&model_dir("gemma3_mm")).unwrap();
    assert!(ckpt.names().any(|n| n.starts_with("vision_tower.")), "the fixture has a vision tower");
    let renamed: Vec<weights::HfTensor> = ckpt
        .names()
        .map(|n| {
            let (_, _, values) = ckpt.read_f32(n).unwrap();
            let name = n.replacen("language_model.model.", "model.language_model.", 1);
            weights::HfTensor { name, shape: ckpt.meta(n).unwrap().shape, values }
        })
        .collect();
    assert!(renamed.iter().any(|t| t.name.starts_with("model.language_model.layers.")));
    let (other, _) = weights::load(&m.config, &renamed[..], "renamed", &test_device()).unwrap();
    let r = reference("gemma3_mm");
    let ids = ids_tensor(&r.ids, &test_device());
    let (a, b) = (m.model.forward(ids.clone()), other.forward(ids));
    let (a, b): (Vec<f32>, Vec<f32>) =
        (a.into_data().try_to_vec().unwrap(), b.into_data().try_to_vec().unwrap());
    assert_eq!(a, b);
}
