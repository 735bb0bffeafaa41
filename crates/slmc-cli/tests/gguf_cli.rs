//! `slmc export --format gguf` against llama.cpp's own tools, and `slmc inspect FILE.gguf`.
//!
//! References (tests/fixtures/gguf/converter/*.json, from scripts/make_gguf_fixtures.py): for
//! every fixture model, the metadata and tensor hashes of `convert_hf_to_gguf.py --outtype f32`
//! and the tensor types and hashes of `llama-quantize` for several types; plus the same for a
//! synthetic 8-layer llama with 256-wide rows (so K-quants and the `_m` mixes really apply),
//! whose weights this test regenerates from the script's xorshift stream.

use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use slmc_config::FloatDtype;
use slmc_formats::{TensorToWrite, write_checkpoint};
use slmc_gguf::{Array, GgufReader, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const VARIANTS: [&str; 8] = [
    "llama_gqa",
    "llama_tied_bf16",
    "llama3_rope",
    "llama_linear_v4",
    "mistral_sharded",
    "qwen2_bias",
    "phi3_fused",
    "phi3_longrope",
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn slmc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slmc"))
        .args(args)
        .env_remove("SLMC_DEVICE")
        .env_remove("SLMC_THREADS")
        .output()
        .expect("run slmc")
}

fn export(model: &Path, ty: &str, out: &Path) {
    let o = slmc(&[
        "export",
        model.to_str().unwrap(),
        "--format",
        "gguf",
        "--type",
        ty,
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "slmc export {ty}: {}", String::from_utf8_lossy(&o.stderr));
}

fn reference(name: &str) -> Json {
    let p = fixtures().join("gguf/converter").join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn short_hash(b: &[u8]) -> String {
    Sha256::digest(b).iter().take(8).map(|x| format!("{x:02x}")).collect()
}

/// gguf-py's view of a value: `[types, value]`, long arrays as length + hash of compact JSON.
fn summarize_value(v: &Value) -> Json {
    let types = match v {
        Value::Array(a) => vec![Json::from("ARRAY"), Json::from(a.elem_type().name())],
        v => vec![Json::from(v.value_type().name())],
    };
    let value = match v {
        Value::String(s) => Json::from(s.clone()),
        Value::U32(x) => Json::from(*x),
        Value::I32(x) => Json::from(*x),
        Value::F32(x) => Json::from(f64::from(*x)),
        Value::Bool(b) => Json::from(*b),
        Value::Array(a) => {
            let list: Json = match a {
                Array::String(v) => serde_json::to_value(v).unwrap(),
                Array::I32(v) => serde_json::to_value(v).unwrap(),
                Array::U32(v) => serde_json::to_value(v).unwrap(),
                Array::F32(v) => {
                    serde_json::to_value(v.iter().map(|x| f64::from(*x)).collect::<Vec<_>>()).unwrap()
                }
                other => panic!("unexpected array {other:?}"),
            };
            let items = list.as_array().unwrap();
            if items.len() > 16 {
                let text = serde_json::to_string(&list).unwrap();
                serde_json::json!({"len": items.len(), "json_sha256": short_hash(text.as_bytes())})
            } else {
                list
            }
        }
        other => panic!("unexpected value {other:?}"),
    };
    Json::Array(vec![Json::Array(types), value])
}

/// `(tensors name → [type, ne, hash] or [type, hash], metadata)` of a file slmc wrote.
fn summarize(path: &Path, with_ne: bool) -> (BTreeMap<String, Json>, BTreeMap<String, Json>) {
    let r = GgufReader::open(path).unwrap();
    let mut tensors = BTreeMap::new();
    for t in &r.file().tensors {
        let (_, bytes) = r.tensor_bytes(&t.info.name).unwrap();
        let ty = Json::from(t.info.ggml_type.name());
        let v = if with_ne {
            serde_json::json!([ty, t.info.ne, short_hash(bytes)])
        } else {
            serde_json::json!([ty, short_hash(bytes)])
        };
        tensors.insert(t.info.name.clone(), v);
    }
    let metadata = r
        .file()
        .metadata
        .iter()
        .filter(|(k, _)| k != "general.name")
        .map(|(k, v)| (k.clone(), summarize_value(v)))
        .collect();
    (tensors, metadata)
}

fn as_map(j: &Json) -> BTreeMap<String, Json> {
    j.as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Asserts two name → value maps are equal, listing the differences.
fn assert_same(what: &str, ours: &BTreeMap<String, Json>, want: &BTreeMap<String, Json>) {
    let mut diffs = Vec::new();
    for k in want.keys().chain(ours.keys()).collect::<std::collections::BTreeSet<_>>() {
        let (a, b) = (ours.get(k), want.get(k));
        let same = match (a, b) {
            // Floats: compare as f32 (the reference went through Python's float).
            (Some(Json::Array(x)), Some(Json::Array(y)))
                if x.len() == 2 && x[1].is_f64() && y[1].is_number() =>
            {
                x[0] == y[0] && x[1].as_f64().map(|v| v as f32) == y[1].as_f64().map(|v| v as f32)
            }
            _ => a == b,
        };
        if !same {
            diffs.push(format!("  {k}: slmc {a:?}, llama.cpp {b:?}"));
        }
    }
    assert!(diffs.is_empty(), "{what}: {} differences\n{}", diffs.len(), diffs.join("\n"));
}

#[test]
fn f32_exports_equal_convert_hf_to_gguf() {
    let dir = tempfile::tempdir().unwrap();
    for v in VARIANTS {
        let out = dir.path().join(format!("{v}.gguf"));
        export(&fixtures().join("models").join(v), "f32", &out);
        let (tensors, metadata) = summarize(&out, true);
        let r = reference(v);
        assert_same(&format!("{v} tensors"), &tensors, &as_map(&r["f32"]["tensors"]));
        assert_same(&format!("{v} metadata"), &metadata, &as_map(&r["f32"]["metadata"]));
    }
}

#[test]
fn quantized_exports_equal_llama_quantize() {
    let dir = tempfile::tempdir().unwrap();
    for v in VARIANTS {
        let r = reference(v);
        for (ty, section) in r.as_object().unwrap() {
            if ty == "f32" || ty == "generated_by" {
                continue;
            }
            let out = dir.path().join(format!("{v}.{ty}.gguf"));
            export(&fixtures().join("models").join(v), ty, &out);
            let (tensors, _) = summarize(&out, false);
            assert_same(&format!("{v} {ty}"), &tensors, &as_map(&section["tensors"]));
        }
    }
}

/// The xorshift stream of scripts/make_gguf_fixtures.py (`xorshift_stream`).
fn stream(n: usize) -> Vec<f32> {
    let mut x: u32 = 0x9E37_79B9;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let b = (i / 256) as i32;
            let scale = 10f64.powi(b % 7 - 3);
            let mut v = (f64::from(x) / 4_294_967_296.0 - 0.5) * scale + f64::from(b % 3 - 1) * 0.2 * scale;
            if i % 37 == 0 {
                v *= 8.0;
            }
            v as f32
        })
        .collect()
}

/// The synthetic model of `kquant_model` in scripts/make_gguf_fixtures.py.
fn kquant_model_dir(dir: &Path) {
    let mut shapes: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    shapes.insert("model.embed_tokens.weight".into(), vec![384, 256]);
    shapes.insert("model.norm.weight".into(), vec![256]);
    shapes.insert("lm_head.weight".into(), vec![384, 256]);
    for i in 0..8 {
        let p = format!("model.layers.{i}.");
        for (n, s) in [
            ("input_layernorm.weight", vec![256]),
            ("post_attention_layernorm.weight", vec![256]),
            ("self_attn.q_proj.weight", vec![256, 256]),
            ("self_attn.k_proj.weight", vec![128, 256]),
            ("self_attn.v_proj.weight", vec![128, 256]),
            ("self_attn.o_proj.weight", vec![256, 256]),
            ("mlp.gate_proj.weight", vec![512, 256]),
            ("mlp.up_proj.weight", vec![512, 256]),
            ("mlp.down_proj.weight", vec![256, 512]),
        ] {
            shapes.insert(format!("{p}{n}"), s);
        }
    }
    let total: usize = shapes.values().map(|s| s.iter().product::<usize>()).sum();
    let values = stream(total);
    let mut at = 0;
    let mut tensors = Vec::new();
    for (name, shape) in shapes {
        let n: usize = shape.iter().product();
        tensors.push(TensorToWrite::from_f32(name, shape, &values[at..at + n], FloatDtype::F32));
        at += n;
    }
    std::fs::create_dir_all(dir).unwrap();
    write_checkpoint(dir, tensors, None).unwrap();
    let config = serde_json::json!({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 384,
        "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 8, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 64, "max_position_embeddings": 128, "rms_norm_eps": 1e-05,
        "rope_theta": 10000.0, "tie_word_embeddings": false, "torch_dtype": "float32", "bos_token_id": 0,
        "eos_token_id": 1, "hidden_act": "silu"});
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(fixtures().join("tokenizer").join(f), dir.join(f)).unwrap();
    }
}

#[test]
fn k_quant_mixes_equal_llama_quantize_on_a_wide_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("kquant_llama");
    kquant_model_dir(&model);
    let r = reference("kquant_llama");
    let out = dir.path().join("f32.gguf");
    export(&model, "f32", &out);
    let (tensors, _) = summarize(&out, true);
    assert_same("kquant_llama f32", &tensors, &as_map(&r["f32"]["tensors"]));
    for (ty, section) in r.as_object().unwrap() {
        if ty == "f32" || ty == "generated_by" {
            continue;
        }
        let out = dir.path().join(format!("{ty}.gguf"));
        export(&model, ty, &out);
        let (tensors, _) = summarize(&out, false);
        assert_same(&format!("kquant_llama {ty}"), &tensors, &as_map(&section["tensors"]));
    }
}

#[test]
fn inspect_shows_gguf_metadata_and_tensor_types() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q.gguf");
    export(&fixtures().join("models/qwen2_bias"), "q8_0", &out);
    let o = slmc(&["inspect", out.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: Json = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["format"], "gguf");
    assert_eq!(j["version"], 3);
    assert_eq!(j["metadata"]["general.architecture"]["value"], "\"qwen2\"");
    assert_eq!(j["metadata"]["general.file_type"]["value"], "7");
    assert_eq!(j["metadata"]["qwen2.block_count"]["type"], "UINT32");
    assert_eq!(j["types"]["Q8_0"]["tensors"], 15); // 7 matrices × 2 layers + token_embd
    assert_eq!(j["tensors"].as_array().unwrap().len(), 26); // tied: no output.weight
    let text = slmc(&["inspect", out.to_str().unwrap()]);
    let s = String::from_utf8_lossy(&text.stdout);
    assert!(s.contains("GGUF v3") && s.contains("blk.0.attn_q.bias") && s.contains("Q8_0"), "{s}");
}

#[test]
fn gguf_errors_are_one_line_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.gguf");
    let mut bytes = b"GGUF".to_vec();
    bytes.extend_from_slice(&3u32.to_le_bytes());
    bytes.extend_from_slice(&u64::MAX.to_le_bytes());
    bytes.extend_from_slice(&0u64.to_le_bytes());
    std::fs::write(&bad, bytes).unwrap();
    let o = slmc(&["inspect", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("error: ") && err.contains("not a valid GGUF file") && err.contains("tensor count"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    let model = fixtures().join("models/llama_gqa");
    let out = dir.path().join("x.gguf");
    let o = slmc(&[
        "export",
        model.to_str().unwrap(),
        "--format",
        "gguf",
        "--type",
        "q3_k",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1)); // a usage error is a user error
    assert!(String::from_utf8_lossy(&o.stderr).contains("q4_k_m"));
    let o = slmc(&["export", model.to_str().unwrap(), "--type", "q8_0", "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--type applies to --format gguf"));
    assert!(!out.exists());
}

#[test]
fn default_type_follows_the_checkpoint_dtype() {
    let dir = tempfile::tempdir().unwrap();
    for (v, want) in [("llama_tied_bf16", "BF16"), ("llama_gqa", "F16")] {
        let out = dir.path().join(format!("{v}.gguf"));
        let o = slmc(&[
            "export",
            fixtures().join("models").join(v).to_str().unwrap(),
            "--format",
            "gguf",
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success());
        let r = GgufReader::open(&out).unwrap();
        let t = &r.file().tensor("blk.0.attn_q.weight").unwrap().info;
        assert_eq!(t.ggml_type.name(), want, "{v}");
    }
}
