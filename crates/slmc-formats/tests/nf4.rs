//! NF4 + double quantization against bitsandbytes 0.49.2 on CPU (fixtures: tests/fixtures/nf4,
//! made by scripts/make_nf4_fixture.py). Codes, absmaxes, nested absmaxes, offsets, code maps and
//! the saved tensors (quant-state JSON included) must be bit-identical; dequantized values too,
//! except where bitsandbytes' own CPU kernel is wrong (then they must equal bnb's pure-torch path).

use sha2::{Digest, Sha256};
use slmc_config::FloatDtype;
use slmc_formats::FormatError;
use slmc_formats::checkpoint::{Checkpoint, TensorToWrite, write_checkpoint};
use slmc_formats::nf4::torch_mean::torch_mean;
use slmc_formats::nf4::{Absmax, NF4, Nf4Options, Nf4Tensor, QUANT_STATE_SUFFIX, TensorSource, dynamic_map};
use std::path::{Path, PathBuf};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/nf4")
}

fn open(file: &str) -> Checkpoint {
    Checkpoint::open_files(&[fixture_dir().join(file)]).unwrap()
}

fn reference() -> serde_json::Value {
    let text = std::fs::read_to_string(fixture_dir().join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// One quantized weight of the fixture: a case in one variant ("plain" or "dq").
struct Weight {
    case: String,
    variant: &'static str,
    /// The variant's entry in reference.json.
    info: serde_json::Value,
    /// Its tensor name, `<case>.<variant>.weight`.
    name: String,
}

fn weights(reference: &serde_json::Value) -> Vec<Weight> {
    let mut out = Vec::new();
    for (case, info) in reference["cases"].as_object().unwrap() {
        for variant in ["plain", "dq"] {
            let name = format!("{case}.{variant}.weight");
            out.push(Weight { case: case.clone(), variant, info: info[variant].clone(), name });
        }
    }
    out
}

fn f32s(ckpt: &Checkpoint, name: &str) -> Vec<f32> {
    ckpt.read_f32(name).unwrap_or_else(|e| panic!("{name}: {e}")).2
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// The input of a case, its shape and options for `variant` ("plain" or "dq").
fn case_input(ckpt: &Checkpoint, case: &str, variant: &str) -> (Vec<f32>, [usize; 2], Nf4Options) {
    let (shape, dtype, values) = ckpt.read_f32(&format!("{case}.input")).unwrap();
    let opts = Nf4Options { double_quant: variant == "dq", dtype, ..Nf4Options::default() };
    (values, [shape[0], shape[1]], opts)
}

/// Asserts every tensor `ours` makes equals the stored one (name, dtype, shape, bytes) and that
/// the source holds no other tensor of this weight.
fn assert_tensors_equal(ours: &[TensorToWrite], theirs: &Checkpoint, weight: &str) {
    for t in ours {
        let stored = theirs.stored(&t.name).unwrap().unwrap_or_else(|| panic!("{} not in fixture", t.name));
        assert_eq!(t.dtype, stored.dtype, "{}", t.name);
        assert_eq!(t.shape, stored.shape, "{}", t.name);
        assert!(t.data == stored.data, "{}: bytes differ", t.name);
    }
    let prefix = format!("{weight}.");
    let theirs_count = theirs.names().filter(|n| *n == weight || n.starts_with(&prefix)).count();
    assert_eq!(ours.len(), theirs_count, "{weight}: tensor count");
}

#[test]
fn codebooks_equal_the_stored_maps() {
    let ckpt = open("cases.safetensors");
    let reference = reference();
    for w in weights(&reference) {
        assert_eq!(bits(&f32s(&ckpt, &format!("{}.quant_map", w.name))), bits(&NF4), "{}", w.name);
        if w.variant == "dq" {
            let map = f32s(&ckpt, &format!("{}.nested_quant_map", w.name));
            assert_eq!(bits(&map), bits(&dynamic_map()), "{}", w.name);
        }
    }
    // bnb's create_dynamic_map() starts at −0.99296874; the stored map starts at −1.0 because
    // quantize_cpu overwrites entry 0 of the map it is given.
    assert!(reference["create_dynamic_map_code0"].as_f64().unwrap() > -0.9931);
    assert_eq!(dynamic_map()[0], -1.0);
}

#[test]
fn torch_mean_is_bit_exact() {
    let reference = reference();
    for case in reference["torch_mean"]["cases"].as_array().unwrap() {
        let n = case["n"].as_u64().unwrap();
        let scale = (1 + n % 7) as f32;
        let x: Vec<f32> = (0..n)
            .map(|k| {
                let int = (k.wrapping_mul(2654435761).wrapping_add(97 * n) % (1 << 32)) >> 8;
                int as f32 / (1u32 << 24) as f32 * scale
            })
            .collect();
        let want = case["mean_f32_bits"].as_u64().unwrap() as u32;
        assert_eq!(torch_mean(&x).to_bits(), want, "n = {n}: {} vs {}", torch_mean(&x), f32::from_bits(want));
    }
}

#[test]
fn codes_and_absmax_are_bit_exact() {
    let ckpt = open("cases.safetensors");
    for w in weights(&reference()) {
        let (values, shape, opts) = case_input(&ckpt, &w.case, w.variant);
        let t = Nf4Tensor::quantize(&values, shape, &opts).unwrap();
        let name = &w.name;
        assert!(t.packed() == ckpt.bytes(name).unwrap(), "{name}: packed codes differ");
        match t.absmax() {
            Absmax::Plain(a) => {
                assert_eq!(bits(a), bits(&f32s(&ckpt, &format!("{name}.absmax"))), "{name}");
            }
            Absmax::Double(d) => {
                let want_offset = w.info["nested_offset_f32_bits"].as_u64().unwrap() as u32;
                assert_eq!(d.offset.to_bits(), want_offset, "{name}: offset");
                assert!(d.codes == ckpt.bytes(&format!("{name}.absmax")).unwrap(), "{name}: absmax codes");
                let nested = f32s(&ckpt, &format!("{name}.nested_absmax"));
                assert_eq!(bits(&d.nested_absmax), bits(&nested), "{name}: nested absmax");
                assert_eq!(d.nested_blocksize, 256);
            }
        }
        // Every saved tensor, the quant-state JSON included, byte for byte.
        assert_tensors_equal(&t.to_tensors(name), &ckpt, name);
    }
}

#[test]
fn dequantize_equals_bitsandbytes_where_it_is_correct() {
    let ckpt = open("cases.safetensors");
    let mut bug_cases = 0;
    for w in weights(&reference()) {
        let name = &w.name;
        let t = Nf4Tensor::from_tensors(name, &ckpt).unwrap();
        let ours = t.dequantize();
        // bnb returns the weight's dtype: the f32 products rounded once (the bf16 case).
        let digest = hex(&Sha256::digest(t.dtype().encode(&ours)));
        assert_eq!(digest, w.info["reference_dequant_sha256"].as_str().unwrap(), "{name}");
        if w.info["bnb_dequant_correct"].as_bool().unwrap() {
            assert_eq!(digest, w.info["dequant_sha256"].as_str().unwrap(), "{name}");
        } else {
            // bnb 0.49.2's AVX512 CPU kernel (width 96: a multiple of 16, not of 64).
            assert_ne!(digest, w.info["dequant_sha256"].as_str().unwrap(), "{name}");
            bug_cases += 1;
        }
        let stored = format!("{}.dq.dequant", w.case);
        if w.variant == "dq" && ckpt.contains(&stored) {
            let rounded = t.dtype().decode(&t.dtype().encode(&ours));
            assert_eq!(bits(&rounded), bits(&f32s(&ckpt, &stored)), "{name}: elementwise");
        }
        let [rows, cols] = t.shape();
        for range in [0..1, 1..3, rows / 2..rows, rows - 1..rows] {
            let part = t.dequantize_rows(range.clone()).unwrap();
            let whole = &ours[range.start * cols..range.end * cols];
            assert_eq!(bits(&part), bits(whole), "{name} {range:?}");
        }
    }
    assert_eq!(bug_cases, 2, "the 64x96 case shows bnb's CPU dequantization bug (plain and dq)");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn transformers_saved_layers_read_and_are_reproduced_byte_for_byte() {
    let ckpt = open("transformers_layer.safetensors");
    let reference = reference();
    let qcfg = &reference["transformers"]["quantization_config"];
    assert_eq!(qcfg["bnb_4bit_quant_type"], "nf4");
    assert_eq!(qcfg["bnb_4bit_use_double_quant"], true);
    for weight in reference["transformers"]["weights"].as_array().unwrap() {
        let weight = weight.as_str().unwrap();
        let loaded = Nf4Tensor::from_tensors(weight, &ckpt).unwrap();
        let (shape, _, source) = ckpt.read_f32(&format!("source.{weight}")).unwrap();
        let ours = Nf4Tensor::quantize(&source, [shape[0], shape[1]], &Nf4Options::default()).unwrap();
        assert_eq!(ours, loaded, "{weight}");
        assert_tensors_equal(&ours.to_tensors(weight), &ckpt, weight);
        let err = loaded.dequantize().iter().zip(&source).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(err < 0.02, "{weight}: NF4 error {err}");
    }
}

#[test]
fn to_tensors_from_tensors_round_trips_through_a_file() {
    let ckpt = open("cases.safetensors");
    let dir = tempfile::tempdir().unwrap();
    let mut all = Vec::new();
    let mut expected = Vec::new();
    for w in weights(&reference()) {
        let t = Nf4Tensor::from_tensors(&w.name, &ckpt).unwrap();
        let tensors = t.to_tensors(&w.name);
        assert_eq!(Nf4Tensor::from_tensors(&w.name, &tensors[..]).unwrap(), t, "{} in memory", w.name);
        all.extend(tensors);
        expected.push((w.name, t));
    }
    write_checkpoint(dir.path(), all, None).unwrap();
    let back = Checkpoint::open_dir(dir.path()).unwrap();
    for (weight, t) in expected {
        assert_eq!(Nf4Tensor::from_tensors(&weight, &back).unwrap(), t, "{weight} from file");
    }
}

/// The tensors of one fixture weight, to corrupt.
fn sample(variant: &str) -> (String, Vec<TensorToWrite>) {
    let ckpt = open("cases.safetensors");
    let weight = format!("w96x100_heavy.{variant}.weight");
    let tensors = Nf4Tensor::from_tensors(&weight, &ckpt).unwrap().to_tensors(&weight);
    (weight, tensors)
}

fn edit(tensors: &[TensorToWrite], name: &str, f: impl FnOnce(&mut TensorToWrite)) -> Vec<TensorToWrite> {
    let mut out: Vec<TensorToWrite> = tensors
        .iter()
        .map(|t| TensorToWrite {
            name: t.name.clone(),
            dtype: t.dtype,
            shape: t.shape.clone(),
            data: t.data.clone(),
        })
        .collect();
    f(out.iter_mut().find(|t| t.name == name).unwrap_or_else(|| panic!("{name}")));
    out
}

fn load_err(weight: &str, tensors: &[TensorToWrite]) -> String {
    match Nf4Tensor::from_tensors(weight, tensors) {
        Ok(_) => panic!("{weight}: corrupt state accepted"),
        Err(e) => e.to_string(),
    }
}

fn set_json(t: &mut TensorToWrite, json: String) {
    t.data = json.into_bytes();
    t.shape = vec![t.data.len()];
}

#[test]
fn corrupt_states_are_clear_errors() {
    for variant in ["plain", "dq"] {
        let (w, good) = sample(variant);
        let state = format!("{w}{QUANT_STATE_SUFFIX}");
        // Any one tensor missing.
        for t in &good {
            let rest: Vec<TensorToWrite> = good
                .iter()
                .filter(|o| o.name != t.name)
                .map(|o| TensorToWrite {
                    name: o.name.clone(),
                    dtype: o.dtype,
                    shape: o.shape.clone(),
                    data: o.data.clone(),
                })
                .collect();
            let err = load_err(&w, &rest);
            assert!(err.contains(&t.name), "{err} should name {}", t.name);
        }
        // Truncated packed codes: fewer bytes than the shape says, then a consistent but short shape.
        let err = load_err(
            &w,
            &edit(&good, &w, |t| {
                t.data.pop();
            }),
        );
        assert!(err.contains("bytes"), "{err}");
        let err = load_err(
            &w,
            &edit(&good, &w, |t| {
                t.data.pop();
                t.shape = vec![t.data.len(), 1];
            }),
        );
        assert!(err.contains("expected 4800"), "{err}");
        // Absmax with one block too few, or in the other level's dtype.
        let err = load_err(
            &w,
            &edit(&good, &format!("{w}.absmax"), |t| {
                let size = t.data.len() / t.shape[0];
                t.data.truncate(t.data.len() - size);
                t.shape[0] -= 1;
            }),
        );
        assert!(err.contains("expected 150"), "{err}");
        let err = load_err(
            &w,
            &edit(&good, &format!("{w}.absmax"), |t| {
                t.dtype = if t.dtype == safetensors::Dtype::U8 {
                    safetensors::Dtype::F32
                } else {
                    safetensors::Dtype::U8
                };
            }),
        );
        assert!(err.contains(&format!("{w}.absmax")), "{err}");
        // A quant map that is not NF4's.
        let err = load_err(&w, &edit(&good, &format!("{w}.quant_map"), |t| t.data[0] ^= 1));
        assert!(err.contains("NF4 level"), "{err}");
        // The JSON: another shape, FP4, truncated at every length (never a panic).
        let json = String::from_utf8(good.iter().find(|t| t.name == state).unwrap().data.clone()).unwrap();
        let err = load_err(&w, &edit(&good, &state, |t| set_json(t, json.replace("[96, 100]", "[96, 101]"))));
        assert!(err.contains("expected"), "{err}");
        let err = load_err(
            &w,
            &edit(&good, &state, |t| set_json(t, json.replace("\"blocksize\": 64", "\"blocksize\": 48"))),
        );
        assert!(err.contains("blocksize 48"), "{err}");
        for len in 0..json.len() {
            load_err(&w, &edit(&good, &state, |t| set_json(t, json[..len].to_string())));
        }
        let fp4 = edit(&good, &state, |t| t.name = format!("{w}.quant_state.bitsandbytes__fp4"));
        assert!(load_err(&w, &fp4).contains("FP4"));
    }
    // Double-quant tensors next to a plain state's JSON.
    let (w, plain) = sample("plain");
    let (dq_w, dq) = sample("dq");
    let plain_json = plain.iter().find(|t| t.name.ends_with(QUANT_STATE_SUFFIX)).unwrap().data.clone();
    let err = load_err(
        &dq_w,
        &edit(&dq, &format!("{dq_w}{QUANT_STATE_SUFFIX}"), |t| {
            t.data = plain_json;
            t.shape = vec![t.data.len()];
        }),
    );
    assert!(err.contains(".nested_absmax") && err.contains("no nested_offset"), "{err}");
    // A plain state whose absmax is stored as double-quant codes.
    let codes = dq.iter().find(|t| t.name == format!("{dq_w}.absmax")).unwrap().data.clone();
    let err = load_err(
        &w,
        &edit(&plain, &format!("{w}.absmax"), |t| {
            t.data = codes;
            t.dtype = safetensors::Dtype::U8;
        }),
    );
    assert!(err.contains("is U8; bitsandbytes stores it as F32"), "{err}");
    // A NaN nested absmax.
    let err = load_err(
        &dq_w,
        &edit(&dq, &format!("{dq_w}.nested_absmax"), |t| {
            t.data[..4].copy_from_slice(&f32::NAN.to_le_bytes());
        }),
    );
    assert!(err.contains("nested absmax"), "{err}");
}

#[test]
fn quantize_refuses_bad_input_with_an_nf4_error() {
    let err = Nf4Tensor::quantize(&[1.0, f32::INFINITY], [1, 2], &Nf4Options::default()).unwrap_err();
    assert!(matches!(err, FormatError::Nf4 { .. }), "{err}");
    let t = Nf4Tensor::quantize(&[0.5; 128], [2, 64], &Nf4Options::default()).unwrap();
    assert!(t.dequantize_rows(1..3).is_err());
    assert_eq!(t.dtype(), FloatDtype::F32);
}
