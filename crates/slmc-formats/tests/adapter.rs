//! LoRA adapters against PEFT 0.21.2 (fixtures: tests/fixtures/lora, made by
//! scripts/make_lora_fixture.py); the GGUF adapters are tested in slmc-gguf.

// Reports its measured figures in the test output.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use slmc_config::FloatDtype;
use slmc_formats::adapter::peft::{ADAPTER_CONFIG, ADAPTER_WEIGHTS};
use slmc_formats::adapter::peft_config::{config_to_json, config_to_string};
use slmc_formats::adapter::{LoraAdapter, LoraConfig, TargetModules, check_fits, read_peft, write_peft};
use slmc_formats::checkpoint::{Checkpoint, SINGLE_FILE, TensorToWrite, write_checkpoint};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Merged weights vs PEFT's merge_and_unload: f32 products of 4 terms plus one add (LoRA), and a
/// row norm (DoRA) summed in another order than torch. Measured max |Δ|: 6e-8 (LoRA, rsLoRA), 9e-8 (DoRA).
const MERGE_TOL: f32 = 1e-6;

const CASES: [&str; 4] = ["lora", "dora", "rslora", "modules_to_save"];
const ALL: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn case_dir(case: &str) -> PathBuf {
    fixtures().join("lora").join(case)
}

fn base_dir() -> PathBuf {
    fixtures().join("models/llama_gqa")
}

fn read_case(case: &str) -> LoraAdapter {
    read_peft(&case_dir(case)).unwrap_or_else(|e| panic!("{case}: {e}"))
}

fn json_file(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `target_modules` is written from a Python set: compare it as a set.
fn normalised(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(t) = v.get_mut("target_modules").and_then(|t| t.as_array_mut()) {
        t.sort_by_key(|s| s.as_str().unwrap_or_default().to_string());
    }
    v
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn base_shapes() -> impl Fn(&str) -> Option<[usize; 2]> {
    let ck = Checkpoint::open_dir(&base_dir()).unwrap();
    let shapes: BTreeMap<String, [usize; 2]> = ck
        .names()
        .filter_map(|n| match ck.meta(n)?.shape.as_slice() {
            [r, c] => Some((n.to_string(), [*r, *c])),
            _ => None,
        })
        .collect();
    move |n: &str| shapes.get(n).copied()
}

#[test]
fn reads_every_peft_fixture() {
    let expect_modules = |targets: usize| 2 * targets; // 2 layers
    for case in CASES {
        let a = read_case(case);
        let c = &a.config;
        assert_eq!((c.r, c.alpha), (4, 8.0), "{case}");
        assert_eq!(c.base_model_name_or_path.as_deref(), Some("tests/fixtures/models/llama_gqa"));
        assert_eq!(c.task_type.as_deref(), Some("CAUSAL_LM"));
        assert_eq!(a.dtype, FloatDtype::F32);
        let TargetModules::Names(t) = &c.target_modules else { panic!("{case}: names expected") };
        let n_targets = t.len();
        assert_eq!(a.modules.len(), expect_modules(n_targets), "{case}");
        for (m, w) in &a.modules {
            assert_eq!(w.rank(), 4, "{m}");
            assert_eq!(w.magnitude.is_some(), case == "dora", "{m}");
            assert!(w.b.data.iter().any(|&x| x != 0.0), "{m}: the fixture's B is perturbed");
        }
        let q = &a.modules["model.layers.1.self_attn.q_proj"];
        assert_eq!((q.in_features(), q.out_features()), (64, 64));
        match case {
            "lora" => assert_eq!((c.dropout, a.scale()), (0.05, 2.0)),
            "rslora" => assert!(c.rslora && a.scale() == 4.0),
            "dora" => assert!(c.dora && a.scale() == 2.0),
            _ => {
                assert_eq!(c.modules_to_save, ["lm_head"]);
                assert_eq!(a.saved.keys().collect::<Vec<_>>(), ["lm_head.weight"]);
                assert_eq!(a.saved["lm_head.weight"].shape, [384, 64]);
            }
        }
        // The scale PEFT itself used.
        let reference = json_file(&fixtures().join("lora/reference.json"));
        assert_eq!(reference["cases"][case]["peft_scaling"].as_f64(), Some(a.scale()), "{case}");
    }
}

#[test]
fn write_then_read_is_exact_and_matches_peft_files() {
    let tmp = tempfile::tempdir().unwrap();
    for case in CASES {
        let a = read_case(case);
        let out = tmp.path().join(case);
        let files = write_peft(&a, &out).unwrap();
        assert_eq!(files, [out.join(ADAPTER_CONFIG), out.join(ADAPTER_WEIGHTS)]);
        assert_eq!(read_peft(&out).unwrap(), a, "{case}");
        // The config is PEFT's text byte for byte (same target order, since it was read from PEFT).
        let ours = std::fs::read_to_string(out.join(ADAPTER_CONFIG)).unwrap();
        let peft = std::fs::read_to_string(case_dir(case).join(ADAPTER_CONFIG)).unwrap();
        assert_eq!(ours, peft, "{case}");
        // The same tensor keys, shapes and bytes.
        let (ours, peft) = (
            Checkpoint::open_dir_file(&out.join(ADAPTER_WEIGHTS)),
            Checkpoint::open_dir_file(&case_dir(case).join(ADAPTER_WEIGHTS)),
        );
        assert_eq!(ours.names().collect::<Vec<_>>(), peft.names().collect::<Vec<_>>(), "{case}");
        for n in peft.names() {
            assert_eq!(ours.meta(n), peft.meta(n), "{n}");
            assert_eq!(ours.bytes(n).unwrap(), peft.bytes(n).unwrap(), "{n}");
        }
    }
    // Writing over an existing adapter replaces it and leaves nothing else behind.
    let a = read_case("lora");
    write_peft(&a, &tmp.path().join("lora")).unwrap();
    let names: BTreeSet<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, CASES.iter().map(|c| c.to_string()).collect());
}

trait OpenFile {
    fn open_dir_file(path: &Path) -> Checkpoint;
}

impl OpenFile for Checkpoint {
    fn open_dir_file(path: &Path) -> Checkpoint {
        Checkpoint::open_files(&[path.to_path_buf()]).unwrap()
    }
}

#[test]
fn config_written_for_the_same_settings_is_peft_s() {
    for case in CASES {
        let mut c = LoraConfig::new(4, 8.0, ALL.iter().map(|s| s.to_string()).collect());
        c.base_model_name_or_path = Some("tests/fixtures/models/llama_gqa".into());
        match case {
            "lora" => c.dropout = 0.05,
            "dora" => c.dora = true,
            "rslora" => c.rslora = true,
            _ => {
                c.target_modules = TargetModules::Names(vec!["q_proj".into(), "v_proj".into()]);
                c.modules_to_save = vec!["lm_head".into()];
            }
        }
        let peft = json_file(&case_dir(case).join(ADAPTER_CONFIG));
        let ours = config_to_json(&c);
        let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&ours), keys(&peft), "{case}: key set");
        assert_eq!(normalised(ours), normalised(peft), "{case}: values");
        assert!(!config_to_string(&c).ends_with('\n'), "PEFT writes no trailing newline");
    }
}

/// PEFT's merged weights (`merged.<module>.weight` in reference.safetensors) from the base weights.
#[test]
fn merge_matches_peft_merge_and_unload() {
    let base = Checkpoint::open_dir(&base_dir()).unwrap();
    let mut worst: BTreeMap<&str, f32> = BTreeMap::new();
    for case in CASES {
        let a = read_case(case);
        let reference = Checkpoint::open_dir_file(&case_dir(case).join("reference.safetensors"));
        let merged: Vec<&str> = reference.names().filter_map(|n| n.strip_prefix("merged.")).collect();
        assert!(merged.len() >= 3, "{case}");
        for param in merged {
            let (_, _, want) = reference.read_f32(&format!("merged.{param}")).unwrap();
            let (_, _, w0) = base.read_f32(param).unwrap();
            let module = param.strip_suffix(".weight").unwrap();
            let got = match a.saved.get(param) {
                Some(t) => t.data.clone(),
                None => {
                    let mut w = w0.clone();
                    a.merge_into(module, &mut w).unwrap();
                    w
                }
            };
            let d = max_abs_diff(&got, &want);
            let w = worst.entry(case).or_default();
            *w = w.max(d);
            assert!(d <= MERGE_TOL, "{case} {param}: max |Δ| {d}");
            // Not vacuous: the merge moves the weight far beyond the tolerance.
            assert!(max_abs_diff(&w0, &want) > 1e3 * MERGE_TOL, "{case} {param}");
        }
    }
    // The tolerance separates the right scale from a wrong one: rsLoRA merged with alpha / r.
    let mut a = read_case("rslora");
    a.config.rslora = false;
    let reference = Checkpoint::open_dir_file(&case_dir("rslora").join("reference.safetensors"));
    let param = "model.layers.0.self_attn.q_proj.weight";
    let (_, _, mut w) = base.read_f32(param).unwrap();
    a.merge_into("model.layers.0.self_attn.q_proj", &mut w).unwrap();
    assert!(max_abs_diff(&w, &reference.read_f32(&format!("merged.{param}")).unwrap().2) > 1e3 * MERGE_TOL);
    eprintln!("merge: max |Δ| against PEFT per case: {worst:?}");
}

#[test]
fn check_fits_names_the_tensor_that_does_not_fit() {
    let shapes = base_shapes();
    for case in CASES {
        check_fits(&read_case(case), &shapes).unwrap_or_else(|e| panic!("{case}: {e}"));
    }
    let a = read_case("lora");
    let bad = "model.layers.1.self_attn.v_proj.weight";
    let wrong_v = |n: &str| if n == bad { Some([33, 64]) } else { shapes(n) };
    let err = check_fits(&a, &wrong_v).unwrap_err().to_string();
    assert!(err.contains(bad) && err.contains("[33, 64]") && err.contains("[32, 64]"), "{err}");
    let missing = "model.layers.0.mlp.up_proj.weight";
    let without_up = |n: &str| if n == missing { None } else { shapes(n) };
    let err = check_fits(&a, &without_up).unwrap_err().to_string();
    assert!(err.contains(missing), "{err}");
    // A model with another width: the first module that differs is named.
    let narrower =
        |n: &str| shapes(n).map(|[r, c]| if n.contains("down_proj") { [r, c / 2] } else { [r, c] });
    let err = check_fits(&a, &narrower).unwrap_err().to_string();
    assert!(err.contains("model.layers.0.mlp.down_proj.weight") && err.contains("[64, 64]"), "{err}");
    // A modules_to_save tensor of another vocabulary size.
    let m = read_case("modules_to_save");
    let other_vocab = |n: &str| if n == "lm_head.weight" { Some([500, 64]) } else { shapes(n) };
    let err = check_fits(&m, &other_vocab).unwrap_err().to_string();
    assert!(err.contains("lm_head.weight") && err.contains("[384, 64]"), "{err}");
}

/// Rewrites a fixture's tensors under other keys (and possibly extra tensors) into `dir`.
fn rewrite_tensors(case: &str, dir: &Path, rename: impl Fn(&str) -> String, extra: Vec<TensorToWrite>) {
    let ck = Checkpoint::open_dir_file(&case_dir(case).join(ADAPTER_WEIGHTS));
    let mut tensors: Vec<TensorToWrite> = ck
        .names()
        .map(|n| {
            let (shape, dt, v) = ck.read_f32(n).unwrap();
            TensorToWrite::from_f32(rename(n), shape, &v, dt)
        })
        .collect();
    tensors.extend(extra);
    write_checkpoint(dir, tensors, None).unwrap();
    std::fs::rename(dir.join(SINGLE_FILE), dir.join(ADAPTER_WEIGHTS)).unwrap();
}

fn copy_config(case: &str, dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut cfg = json_file(&case_dir(case).join(ADAPTER_CONFIG));
    edit(&mut cfg);
    std::fs::write(dir.join(ADAPTER_CONFIG), cfg.to_string()).unwrap();
}

#[test]
fn reads_keys_with_adapter_names_and_without_prefix() {
    for case in ["dora", "modules_to_save"] {
        let tmp = tempfile::tempdir().unwrap();
        copy_config(case, tmp.path(), |_| {});
        rewrite_tensors(
            case,
            tmp.path(),
            |n| {
                n.strip_prefix("base_model.model.")
                    .unwrap()
                    .replace("lora_A.weight", "lora_A.default.weight")
                    .replace("lora_B.weight", "lora_B.default.weight")
                    .replace("lora_magnitude_vector", "lora_magnitude_vector.default.weight")
                    .replace("lm_head.weight", "lm_head.modules_to_save.default.weight")
            },
            vec![],
        );
        assert_eq!(read_peft(tmp.path()).unwrap(), read_case(case), "{case}");
    }
}

#[test]
fn unsupported_adapters_are_refused_by_name() {
    let cfg_err = |edit: &dyn Fn(&mut serde_json::Value)| {
        let tmp = tempfile::tempdir().unwrap();
        copy_config("lora", tmp.path(), |c| edit(c));
        rewrite_tensors("lora", tmp.path(), str::to_string, vec![]);
        read_peft(tmp.path()).unwrap_err().to_string()
    };
    for (key, value) in [
        ("lora_bias", serde_json::json!(true)),
        ("layers_to_transform", serde_json::json!([0])),
        ("alpha_pattern", serde_json::json!({"q_proj": 16})),
        ("use_qalora", serde_json::json!(true)),
    ] {
        let err = cfg_err(&|c| c[key] = value.clone());
        assert!(err.contains(key) && err.contains("adapter_config.json"), "{key}: {err}");
    }
    let err = cfg_err(&|c| c["init_lora_weights"] = "pissa".into());
    assert!(err.contains("init_lora_weights") && err.contains("pissa"), "{err}");
    let err = cfg_err(&|c| c["target_modules"] = serde_json::json!(["q_proj"]));
    assert!(err.contains("model.layers.0.mlp.down_proj") && err.contains("target_modules"), "{err}");

    let tensor_err = |extra: TensorToWrite, rename: &dyn Fn(&str) -> String| {
        let tmp = tempfile::tempdir().unwrap();
        copy_config("lora", tmp.path(), |_| {});
        rewrite_tensors("lora", tmp.path(), rename, vec![extra]);
        read_peft(tmp.path()).unwrap_err().to_string()
    };
    let t = |name: &str, shape: Vec<usize>| {
        let n = shape.iter().product();
        TensorToWrite::from_f32(name, shape, &vec![0.5; n], FloatDtype::F32)
    };
    let same = |n: &str| n.to_string();
    for (key, shape) in [
        ("base_model.model.model.embed_tokens.lora_embedding_A", vec![4, 384]),
        ("base_model.model.model.layers.0.self_attn.q_proj.lora_B.bias", vec![64]),
        ("base_model.model.model.norm.weight", vec![64]),
    ] {
        let err = tensor_err(t(key, shape), &same);
        assert!(err.contains(key), "{key}: {err}");
    }
    // Convolution LoRA: a 4-D lora_A.
    let conv = "base_model.model.model.conv.lora_A.weight";
    let err = tensor_err(t(conv, vec![4, 3, 1, 1]), &same);
    assert!(err.contains(conv) && err.contains("convolution"), "{err}");
    // A module with lora_A but no lora_B.
    let err =
        tensor_err(t("base_model.model.model.layers.2.self_attn.q_proj.lora_A.weight", vec![4, 64]), &same);
    assert!(err.contains("model.layers.2.self_attn.q_proj") && err.contains("lora_B"), "{err}");
    // use_rslora is fine.
    let tmp = tempfile::tempdir().unwrap();
    copy_config("lora", tmp.path(), |c| c["use_rslora"] = true.into());
    rewrite_tensors("lora", tmp.path(), str::to_string, vec![]);
    assert_eq!(read_peft(tmp.path()).unwrap().scale(), 4.0);

    let tmp = tempfile::tempdir().unwrap();
    copy_config("lora", tmp.path(), |_| {});
    std::fs::write(tmp.path().join("adapter_model.bin"), b"pickle").unwrap();
    let err = read_peft(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("adapter_model.safetensors") && err.contains("pickled"), "{err}");
}

#[test]
fn bf16_adapters_round_trip_in_bf16() {
    let mut a = read_case("dora");
    a.dtype = FloatDtype::BF16;
    let tmp = tempfile::tempdir().unwrap();
    write_peft(&a, tmp.path()).unwrap();
    let back = read_peft(tmp.path()).unwrap();
    assert_eq!(back.dtype, FloatDtype::BF16);
    let m = "model.layers.0.mlp.up_proj";
    let round = |v: &[f32]| FloatDtype::BF16.decode(&FloatDtype::BF16.encode(v));
    assert_eq!(back.modules[m].b.data, round(&a.modules[m].b.data));
    assert_eq!(back.modules[m].magnitude, a.modules[m].magnitude.as_deref().map(round));
}

#[test]
fn multimodal_names_are_written_for_the_multimodal_class_and_read_back_as_text_names() {
    let tmp = tempfile::tempdir().unwrap();
    for case in CASES {
        let a = read_case(case);
        let out = tmp.path().join(case);
        write_peft(&a.for_multimodal_base(), &out).unwrap();
        let ckpt = Checkpoint::open_dir_file(&out.join(ADAPTER_WEIGHTS));
        let keys: Vec<&str> = ckpt.names().collect();
        assert!(
            keys.iter().all(|k| !k.starts_with("base_model.model.model.")
                || k.starts_with("base_model.model.model.language_model.")),
            "{case}: {keys:?}"
        );
        // target_modules lists every adapted module in full (never a suffix the vision tower has).
        let config = json_file(&out.join(ADAPTER_CONFIG));
        let targets = config["target_modules"].as_array().unwrap();
        assert_eq!(targets.len(), a.modules.len(), "{case}");
        assert!(
            targets
                .iter()
                .all(|t| t.as_str().unwrap().starts_with("model.language_model.") || t == "lm_head")
        );
        // Read back: the text model's names and the same weights.
        let back = read_peft(&out).unwrap();
        assert_eq!(back.modules, a.modules, "{case}");
        assert_eq!(back.saved, a.saved, "{case}");
    }
}
