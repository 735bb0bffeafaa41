//! LoRA end to end on a tiny fixture model: a LoRA stage trains and exports a PEFT directory, a
//! llama.cpp adapter and the merged model; the PEFT export loaded back with `[model] adapter`
//! evaluates to the same perplexity; `slmc export --adapter` merges it to the same weights;
//! adapters that do not fit and recipes that would lose the adapter are refused clearly.

mod common;

use common::{root, slmc, text};
use std::path::{Path, PathBuf};

fn recipe(dir: &Path, name: &str, model_extra: &str, stages: &str, export: &str) -> PathBuf {
    let r = root();
    let body = format!(
        "name = \"{name}\"\n[model]\npath = \"{model}\"\n{model_extra}\n[data]\ntrain = \"{text}\"\neval = \"{text}\"\nseq-len = 32\n{stages}\n[export]\n{export}\n",
        model = r.join("tests/fixtures/models/llama_gqa").display(),
        text = r.join("tests/fixtures/eval.txt").display()
    );
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, body).unwrap();
    p
}

fn done(run: &Path, stage: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("stages").join(stage).join("done.json")).unwrap())
        .unwrap()
}

fn tensors(dir: &Path) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, Vec<f32>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| {
            (n, v.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// `slmc export MODEL --adapter PEFT EXTRA…` in `dir`.
fn export_adapter(dir: &Path, model: &Path, peft: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["export", model.to_str().unwrap(), "--adapter", peft.to_str().unwrap()];
    args.extend_from_slice(extra);
    slmc(dir, &args)
}

const LORA_STAGES: &str = r#"[[stage]]
kind = "eval"
[[stage]]
kind = "finetune"
method = "dora"
r = 4
alpha = 8
targets = "all-linear"
steps = 6
batch-size = 2
lr = 1e-2
[[stage]]
kind = "eval"
"#;

#[test]
fn a_lora_stage_exports_adapters_that_load_back_and_merge_to_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(
        dir.path(),
        "l",
        "",
        LORA_STAGES,
        "formats = [\"peft\", \"safetensors\"]\ndtype = \"float32\"",
    );
    let o = slmc(dir.path(), &["run", r.to_str().unwrap()]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("finetune dora ("), "{out}");
    let run = dir.path().join("runs/l");
    let (before, after) =
        (done(&run, "0-eval")["ppl"].as_f64().unwrap(), done(&run, "2-eval")["ppl"].as_f64().unwrap());
    assert!(after < before, "the adapter trains: {before} -> {after}");
    let peft = run.join("artifacts/l-peft");
    let adapter = slmc_formats::adapter::read_peft(&peft).unwrap();
    assert!(adapter.config.dora && adapter.modules.len() == 14, "{:?}", adapter.config);
    assert!(run.join("stages/1-finetune/data-order.json").is_file());
    let shown = text(&slmc(dir.path(), &["inspect", peft.to_str().unwrap()]));
    assert!(
        shown.contains("(PEFT DoRA)")
            && shown.contains("r = 4, alpha = 8, scale 2")
            && shown.contains("(14 modules)"),
        "{shown}"
    );

    // The PEFT export, loaded with `[model] adapter`, evaluates to the same perplexity.
    let r2 = recipe(
        dir.path(),
        "back",
        &format!("adapter = \"{}\"", peft.display()),
        "[[stage]]\nkind = \"eval\"\n",
        "formats = [\"safetensors\"]\ndtype = \"float32\"",
    );
    let o = slmc(dir.path(), &["run", r2.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let again = done(&dir.path().join("runs/back"), "0-eval")["ppl"].as_f64().unwrap();
    assert!((again - after).abs() <= 1e-9 * after, "{again} vs {after}");

    // `slmc export --adapter` merges to the weights the run exported.
    let merged = dir.path().join("merged");
    let model = root().join("tests/fixtures/models/llama_gqa");
    let o =
        export_adapter(dir.path(), &model, &peft, &["--dtype", "float32", "-o", merged.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let (a, b) = (tensors(&merged), tensors(&run.join("artifacts/l-safetensors")));
    assert_eq!(a.len(), b.len());
    for ((na, va), (nb, vb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        let d = va.iter().zip(vb).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(d <= 1e-6, "{na}: {d}");
    }
    // The base is not the merged model: the adapter changed something.
    assert_ne!(
        tensors(&model).iter().find(|t| t.0.ends_with("0.self_attn.q_proj.weight")),
        a.iter().find(|t| t.0.ends_with("0.self_attn.q_proj.weight"))
    );
}

#[test]
fn a_lora_adapter_converts_to_a_llama_cpp_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let model = root().join("tests/fixtures/models/llama_gqa");
    let peft = root().join("tests/fixtures/lora/lora");
    let out = dir.path().join("a.gguf");
    let o =
        export_adapter(dir.path(), &model, &peft, &["--format", "gguf-lora", "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    // What the library writes for it (checked against llama.cpp's convert_lora_to_gguf.py in
    // slmc-formats' tests/adapter.rs): same metadata, tensors and bytes.
    let adapter = slmc_formats::adapter::read_peft(&peft).unwrap();
    let config = slmc_config::ModelConfig::from_file(&model.join("config.json")).unwrap();
    let want = dir.path().join("want.gguf");
    let target = slmc_gguf::GgufLoraTarget::from_config(&config);
    slmc_gguf::write_gguf_lora(&adapter, &target, slmc_gguf::FileType::F32, &want).unwrap();
    let (got, want) = (std::fs::read(&out).unwrap(), std::fs::read(&want).unwrap());
    assert!(
        got == want,
        "CLI output ({} bytes) differs from the library's ({} bytes)",
        got.len(),
        want.len()
    );
    assert!(text(&o).contains("28 tensors"), "{}", text(&o));
}

#[test]
fn an_adapter_that_does_not_fit_the_model_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let other = root().join("tests/fixtures/models/phi3_fused");
    let peft = root().join("tests/fixtures/lora/lora");
    let o = export_adapter(dir.path(), &other, &peft, &["-o", "x"]);
    let out = text(&o);
    assert!(!o.status.success());
    assert!(out.contains("does not fit") && out.contains("`model.layers.0.mlp.gate_proj.weight`: the adapter targets it but the model has no such 2-D weight"), "{out}");
    assert!(!dir.path().join("x").exists(), "nothing written");
}

#[test]
fn recipes_that_would_lose_the_adapter_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let stages =
        format!("{LORA_STAGES}[[stage]]\nkind = \"quantize\"\nmethod = \"rtn\"\nbits = 4\ngroup-size = 32\n");
    let r = recipe(dir.path(), "q", "", &stages, "formats = [\"peft\"]");
    let o = slmc(dir.path(), &["check", r.to_str().unwrap()]);
    let out = text(&o);
    assert!(!o.status.success());
    assert!(out.contains("stage 3 (quantize) merges the adapters"), "{out}");
    let r =
        recipe(dir.path(), "n", "", "[[stage]]\nkind = \"finetune\"\nr = 8\n", "formats = [\"gguf-lora\"]");
    let out = text(&slmc(dir.path(), &["check", r.to_str().unwrap()]));
    assert!(out.contains("`r` in stage 0") && out.contains("set `method = \"lora\"`"), "{out}");
    assert!(out.contains("the `gguf-lora` export writes LoRA adapters"), "{out}");
    let r = recipe(
        dir.path(),
        "t",
        "",
        "[[stage]]\nkind = \"finetune\"\nmethod = \"lora\"\ntargets = [\"q_prj\"]\n",
        "formats = [\"peft\"]",
    );
    let out = text(&slmc(dir.path(), &["check", r.to_str().unwrap()]));
    assert!(out.contains("`q_prj` in `targets` selects none") && out.contains("q_proj"), "{out}");
}

#[test]
fn a_distill_stage_trains_a_lora_student() {
    let dir = tempfile::tempdir().unwrap();
    let teacher = root().join("tests/fixtures/models/llama_gqa");
    let stages = r#"[[stage]]
kind = "distill"
init = "current"
method = "lora"
r = 2
targets = ["q_proj", "v_proj"]
steps = 3
batch-size = 2
lr = 1e-2
"#;
    let r = recipe(
        dir.path(),
        "d",
        &format!("[teacher]\npath = \"{}\"", teacher.display()),
        stages,
        "formats = [\"peft\"]",
    );
    let o = slmc(dir.path(), &["run", r.to_str().unwrap()]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("distill (lora student)"), "{out}");
    let adapter = slmc_formats::adapter::read_peft(&dir.path().join("runs/d/artifacts/d-peft")).unwrap();
    assert_eq!(adapter.modules.len(), 4, "q_proj and v_proj of both layers");
    assert!(adapter.modules.values().any(|w| w.b.data.iter().any(|v| *v != 0.0)), "B trained away from 0");
}

#[test]
fn a_quantize_stage_after_lora_quantizes_the_merged_model_for_gguf() {
    let dir = tempfile::tempdir().unwrap();
    let stages = format!(
        "{LORA_STAGES}[[stage]]\nkind = \"quantize\"\nmethod = \"rtn\"\nbits = 4\ngroup-size = 32\n[[stage]]\nkind = \"eval\"\n"
    );
    let r =
        recipe(dir.path(), "lq", "", &stages, "formats = [\"gguf\", \"safetensors\"]\ndtype = \"float32\"");
    let o = slmc(dir.path(), &["run", r.to_str().unwrap()]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("merging the LoRA adapters into the weights before quantizing"), "{out}");
    let run = dir.path().join("runs/lq");
    assert!(run.join("artifacts/lq-q4_0.gguf").is_file());
    assert!(!run.join("stages/3-quantize/adapter").exists(), "the quantized state has no adapter left");
    // The quantized model is the merged one quantized: close to the adapted model's perplexity,
    // not the base's.
    let (base, adapted, quantized) = (
        done(&run, "0-eval")["ppl"].as_f64().unwrap(),
        done(&run, "2-eval")["ppl"].as_f64().unwrap(),
        done(&run, "4-eval")["ppl"].as_f64().unwrap(),
    );
    assert!((quantized - adapted).abs() < (quantized - base).abs(), "{base} {adapted} {quantized}");
}

#[test]
fn modules_to_save_that_name_nothing_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tied = root().join("tests/fixtures/models/llama_tied_bf16");
    let r = dir.path().join("m.toml");
    std::fs::write(
        &r,
        format!(
            "name = \"m\"\n[model]\npath = \"{}\"\n[data]\ntrain = \"{t}\"\neval = \"{t}\"\nseq-len = 32\n[[stage]]\nkind = \"finetune\"\nmethod = \"lora\"\nmodules-to-save = [\"lm_head\"]\nsteps = 1\nbatch-size = 1\n",
            tied.display(),
            t = root().join("tests/fixtures/eval.txt").display()
        ),
    )
    .unwrap();
    let o = slmc(dir.path(), &["run", r.to_str().unwrap()]);
    let out = text(&o);
    assert!(!o.status.success());
    assert!(out.contains("modules-to-save `lm_head` names no tensor of the model (the model ties lm_head to the embeddings: save `embed_tokens`)"), "{out}");
}
