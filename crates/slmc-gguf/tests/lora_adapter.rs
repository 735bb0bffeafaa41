//! llama.cpp LoRA adapters against llama.cpp's convert_lora_to_gguf.py (fixtures:
//! tests/fixtures/lora, made by scripts/make_lora_fixture.py).

use slmc_config::ModelConfig;
use slmc_formats::Checkpoint;
use slmc_formats::adapter::{LoraAdapter, TargetModules, read_peft};
use slmc_gguf::export::names::permute_rows;
use slmc_gguf::{FileType, GgufLoraTarget, GgufReader, Value, write_gguf_lora};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn case_dir(case: &str) -> PathBuf {
    fixtures().join("lora").join(case)
}

fn base_dir() -> PathBuf {
    fixtures().join("models/llama_gqa")
}

/// The base model's 2-D tensor shapes by name.
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

fn read_case(case: &str) -> LoraAdapter {
    read_peft(&case_dir(case)).unwrap_or_else(|e| panic!("{case}: {e}"))
}

fn base_config() -> ModelConfig {
    ModelConfig::from_file(&base_dir().join("config.json")).unwrap()
}

fn meta_map(r: &GgufReader) -> BTreeMap<String, Value> {
    r.file().metadata.iter().cloned().collect()
}

/// Cosmetic keys the converter derives from PEFT's README.md model card.
const COSMETIC: [&str; 6] = [
    "general.name",
    "general.base_model.count",
    "general.base_model.0.name",
    "general.base_model.0.organization",
    "general.base_model.0.repo_url",
    "general.tags",
];

#[test]
fn gguf_adapter_equals_convert_lora_to_gguf() {
    let a = read_case("lora");
    let target = GgufLoraTarget::from_config(&base_config());
    assert_eq!(
        (target.arch.as_str(), target.n_head, target.n_head_kv, target.permute_qk),
        ("llama", 4, 2, true)
    );
    let tmp = tempfile::tempdir().unwrap();
    for (ty, file) in [(FileType::F32, "reference-f32.gguf"), (FileType::F16, "reference-f16.gguf")] {
        let out = tmp.path().join(file);
        let report = write_gguf_lora(&a, &target, ty, &out).unwrap();
        let (ours, theirs) =
            (GgufReader::open(&out).unwrap(), GgufReader::open(&fixtures().join("lora").join(file)).unwrap());
        assert_eq!(report.file_bytes, ours.len());
        let infos: Vec<_> = ours.file().tensors.iter().map(|t| t.info.clone()).collect();
        assert_eq!(report.tensors, infos);
        let (mo, mt) = (meta_map(&ours), meta_map(&theirs));
        for (k, v) in &mo {
            assert_eq!(Some(v), mt.get(k), "{file}: {k}");
        }
        let extra: Vec<&String> = mt.keys().filter(|k| !mo.contains_key(*k)).collect();
        assert!(
            extra.iter().all(|k| COSMETIC.contains(&k.as_str())),
            "{file}: the converter also wrote {extra:?}"
        );
        assert_eq!(mo["adapter.lora.alpha"], Value::F32(8.0));
        // Tensors: the same names in the same order, shapes, types and bytes.
        let names = |r: &GgufReader| r.file().tensors.iter().map(|t| t.info.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&ours), names(&theirs), "{file}");
        assert_eq!(names(&ours).len(), 28);
        for t in &theirs.file().tensors {
            let (o, ob) = ours.tensor_bytes(&t.info.name).unwrap();
            assert_eq!(o.info, t.info, "{file}");
            assert_eq!(ob, theirs.tensor_bytes(&t.info.name).unwrap().1, "{file}: {}", t.info.name);
        }
    }
}

#[test]
fn gguf_adapter_shapes_pass_llama_cpp_checks_and_permute_b_of_q_and_k_only() {
    let a = read_case("lora");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("a.gguf");
    write_gguf_lora(&a, &GgufLoraTarget::from_config(&base_config()), FileType::F32, &out).unwrap();
    let r = GgufReader::open(&out).unwrap();
    let shapes = base_shapes();
    let gguf_of = |m: &str| {
        let tail = m.strip_prefix("model.layers.").unwrap();
        let (layer, rest) = tail.split_once('.').unwrap();
        let base = match rest {
            "self_attn.q_proj" => "attn_q",
            "self_attn.k_proj" => "attn_k",
            "self_attn.v_proj" => "attn_v",
            "self_attn.o_proj" => "attn_output",
            "mlp.gate_proj" => "ffn_gate",
            "mlp.up_proj" => "ffn_up",
            "mlp.down_proj" => "ffn_down",
            _ => panic!("{m}"),
        };
        format!("blk.{layer}.{base}.weight")
    };
    for (m, w) in &a.modules {
        let [out_f, in_f] = shapes(&format!("{m}.weight")).unwrap();
        let n = gguf_of(m);
        let la = r.file().tensor(&format!("{n}.lora_a")).unwrap();
        let lb = r.file().tensor(&format!("{n}.lora_b")).unwrap();
        // llama_adapter_lora_init_impl: W.ne[0] == a.ne[0], W.ne[1] == b.ne[1], a.ne[1] == b.ne[0].
        assert_eq!(la.info.ne, [in_f as u64, 4], "{n}");
        assert_eq!(lb.info.ne, [4, out_f as u64], "{n}");
        assert_eq!(r.tensor_f32(&format!("{n}.lora_a")).unwrap(), w.a.data, "A is never permuted: {n}");
        let b = r.tensor_f32(&format!("{n}.lora_b")).unwrap();
        let heads = if m.ends_with("q_proj") {
            Some(4)
        } else if m.ends_with("k_proj") {
            Some(2)
        } else {
            None
        };
        match heads {
            Some(h) => {
                assert_ne!(b, w.b.data, "{n}: B must be permuted");
                assert_eq!(b, permute_rows(&w.b.data, 4, h).unwrap(), "{n}");
            }
            None => assert_eq!(b, w.b.data, "{n}"),
        }
    }
    // qwen2 / phi3 (NEOX RoPE): nothing is permuted.
    let out2 = tmp.path().join("b.gguf");
    write_gguf_lora(&a, &GgufLoraTarget::new("qwen2", 4, 2), FileType::F32, &out2).unwrap();
    let r2 = GgufReader::open(&out2).unwrap();
    assert_eq!(r2.file().get("general.architecture").and_then(Value::as_str), Some("qwen2"));
    let q = &a.modules["model.layers.0.self_attn.q_proj"];
    assert_eq!(r2.tensor_f32("blk.0.attn_q.weight.lora_b").unwrap(), q.b.data);
}

#[test]
fn gguf_rslora_folds_the_scale_into_alpha() {
    let a = read_case("rslora");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("rs.gguf");
    let report =
        write_gguf_lora(&a, &GgufLoraTarget::from_config(&base_config()), FileType::F32, &out).unwrap();
    let r = GgufReader::open(&out).unwrap();
    let alpha = r.file().get("adapter.lora.alpha").and_then(Value::as_f32).unwrap();
    // llama.cpp: scale = alpha / rank with rank = lora_b.ne[0] = 4; PEFT: 8 / sqrt(4) = 4.
    let rank = r.file().tensor("blk.0.attn_q.weight.lora_b").unwrap().info.ne[0] as f32;
    assert_eq!(alpha / rank, a.scale() as f32);
    assert_eq!((alpha, report.alpha), (16.0, 16.0));
    assert!(report.notes.iter().any(|n| n.contains("rsLoRA")));
}

#[test]
fn gguf_refuses_what_llama_cpp_cannot_hold() {
    let tmp = tempfile::tempdir().unwrap();
    let target = GgufLoraTarget::from_config(&base_config());
    let err = |a: &LoraAdapter, t: &GgufLoraTarget, ty: FileType| {
        let out = tmp.path().join("x.gguf");
        let e = write_gguf_lora(a, t, ty, &out).unwrap_err().to_string();
        assert!(!out.exists(), "nothing is left behind");
        e
    };
    assert!(err(&read_case("dora"), &target, FileType::F32).contains("DoRA"));
    assert!(err(&read_case("modules_to_save"), &target, FileType::F32).contains("lm_head.weight"));
    assert!(err(&read_case("lora"), &target, FileType::Q4_0).contains("f32, f16 or bf16"));
    let mut a = read_case("lora");
    a.config.alpha = 0.0;
    assert!(err(&a, &target, FileType::F32).contains("alpha"));
    // lm_head LoRA on a tied model.
    let mut a = read_case("lora");
    let w = a.modules["model.layers.0.self_attn.q_proj"].clone();
    a.modules.insert("lm_head".into(), w);
    a.config.target_modules = TargetModules::Names(vec!["q_proj".into(), "lm_head".into()]);
    let tied = GgufLoraTarget { tied_embeddings: true, ..target.clone() };
    assert!(err(&a, &tied, FileType::F32).contains("ties lm_head"));
    // Untied, the same adapter writes output.weight.lora_a/b.
    let out = tmp.path().join("head.gguf");
    write_gguf_lora(&a, &target, FileType::F32, &out).unwrap();
    assert!(GgufReader::open(&out).unwrap().file().tensor("output.weight.lora_b").is_some());
}
