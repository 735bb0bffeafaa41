//! `slmc quantize` end to end on a tiny fixture model: GPTQ records, metrics, GGUF blocks and a
//! packed GPTQ directory; resume from the last finished block; recipes that cannot be honoured
//! are refused by `slmc check` before any work.

mod common;

use common::{root, slmc, text};
use std::path::{Path, PathBuf};

fn recipe(dir: &Path, stage: &str, export: &str) -> PathBuf {
    let r = root();
    let body = format!(
        r#"name = "q"
[model]
path = "{model}"
[data]
train = "{text}"
eval = "{text}"
seq-len = 32
[[stage]]
kind = "quantize"
{stage}
[[stage]]
kind = "eval"
[export]
{export}
"#,
        model = r.join("tests/fixtures/models/llama_gqa").display(),
        text = r.join("tests/fixtures/eval.txt").display()
    );
    let p = dir.join("q.toml");
    std::fs::write(&p, body).unwrap();
    p
}

#[test]
fn gptq_quantizes_exports_and_resumes_from_the_last_block() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(
        dir.path(),
        "method = \"gptq\"\nbits = 4\ngroup-size = 32\ncalibration-samples = 16\nbatch-size = 4",
        "formats = [\"gguf\", \"gptq\"]",
    );
    let o = slmc(dir.path(), &["quantize", r.to_str().unwrap()]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let run = dir.path().join("runs/q-quantize");
    let stage = run.join("stages/0-quantize");
    // Per-module metrics with the reconstruction error; calibration windows kept for references.
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let modules: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["event"] == "quantize")
        .collect();
    assert_eq!(modules.len(), 14, "{metrics}");
    assert!(
        modules.iter().all(|m| m["rel_error"].as_f64().is_some_and(|e| e > 0.0 && e < 0.05)),
        "{metrics}"
    );
    let calib = std::fs::read(stage.join("calibration.safetensors")).unwrap();
    let calib = safetensors::SafeTensors::deserialize(&calib).unwrap();
    assert_eq!(calib.tensor("input_ids").unwrap().shape(), &[16, 32]);

    // GGUF: the quantized linears are Q4_0 blocks.
    let gguf = run.join("artifacts/q-q4_0.gguf");
    let o = slmc(dir.path(), &["inspect", gguf.to_str().unwrap(), "--json"]);
    let info = text(&o);
    assert!(o.status.success() && info.contains("Q4_0"), "{info}");

    // Packed GPTQ directory: v1 zeros of a symmetric 4-bit grid are the golden word 0x77777777.
    let gptq = run.join("artifacts/q-gptq");
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(gptq.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["quantization_config"]["bits"], 4);
    assert_eq!(cfg["quantization_config"]["group_size"], 32);
    assert!(gptq.join("quantize_config.json").is_file() && gptq.join("tokenizer.json").is_file());
    let st = std::fs::read(gptq.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&st).unwrap();
    let qz = st.tensor("model.layers.1.mlp.down_proj.qzeros").unwrap();
    assert_eq!(qz.dtype(), safetensors::Dtype::I32);
    assert!(qz.data().chunks_exact(4).all(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) == 0x7777_7777));
    assert!(st.tensor("model.layers.1.mlp.down_proj.weight").is_err());
    assert_eq!(st.tensor("model.embed_tokens.weight").unwrap().dtype(), safetensors::Dtype::F16);

    // Killed after block 0: the record file of block 1 and the stage outputs are gone.
    let first = std::fs::read(stage.join("quant.safetensors")).unwrap();
    for f in ["done.json", "quant.safetensors", "blocks/block-0001.safetensors"] {
        std::fs::remove_file(stage.join(f)).unwrap();
    }
    std::fs::remove_dir_all(stage.join("model")).unwrap();
    std::fs::remove_file(run.join("stages/1-eval/done.json")).ok();
    let o = slmc(dir.path(), &["quantize", r.to_str().unwrap()]);
    let again = text(&o);
    assert!(o.status.success() && again.contains("resuming: 1 block(s) already quantized"), "{again}");
    assert_eq!(std::fs::read(stage.join("quant.safetensors")).unwrap(), first, "resumed codes differ");
    // metrics.jsonl describes one run: block 1, redone, is logged once, and block 0 is kept.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut modules: Vec<&str> =
        lines.iter().filter(|v| v["event"] == "quantize").map(|v| v["module"].as_str().unwrap()).collect();
    assert_eq!(modules.len(), 14);
    modules.dedup();
    assert_eq!(modules.len(), 14, "each module once");
    let blocks: Vec<u64> = lines
        .iter()
        .filter(|v| v["event"] == "quantize_block")
        .map(|v| v["block"].as_u64().unwrap())
        .collect();
    assert_eq!(blocks, [0, 1]);
}

#[test]
fn rtn_needs_no_training_data() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(dir.path(), "method = \"rtn\"\nbits = 8\ngroup-size = 32", "formats = [\"gguf\"]");
    let body = std::fs::read_to_string(&r).unwrap();
    let body =
        body.replace(&format!("train = \"{}\"\n", root().join("tests/fixtures/eval.txt").display()), "");
    std::fs::write(&r, body).unwrap();
    let o = slmc(dir.path(), &["run", r.to_str().unwrap()]);
    let out = text(&o);
    assert!(o.status.success() && out.contains("RTN 8-bit g32 sym on 14 modules"), "{out}");
    assert!(dir.path().join("runs/q/artifacts/q-q8_0.gguf").is_file());
}

#[test]
fn check_refuses_grids_the_exports_cannot_hold_and_unknown_modules() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "bits = 4\ngroup-size = 32",
            "formats = [\"gguf\"]\ngguf-type = \"q4_k_m\"",
            "set `gguf-type = \"q4_0\"`",
        ),
        (
            "bits = 4\ngroup-size = 32\nsym = false",
            "formats = [\"gguf\"]\ngguf-type = \"q4_0\"",
            "set `gguf-type = \"q4_1\"`",
        ),
        ("bits = 4\ngroup-size = 128", "formats = [\"gguf\"]", "cannot hold the 4-bit g128 sym codes"),
        ("bits = 3\ngroup-size = 32", "formats = [\"gptq\"]", "packs 2-, 4- or 8-bit codes"),
        ("bits = 4\ntargets = [\"q_projj\"]", "formats = [\"safetensors\"]", "did you mean `q_proj`?"),
        ("bits = 4\ngroup-size = 128", "formats = [\"gptq\"]", "whole groups of 128 columns"),
        ("bits = 4\ngroup-size = 32\ntargets = [\"*.mlp.*\"]", "formats = [\"gptq\"]", "8 are left out"),
        (
            "bits = 4\n[[stage]]\nkind = \"quantize\"",
            "formats = [\"safetensors\"]",
            "at most one quantize stage",
        ),
    ];
    for (stage, export, want) in cases {
        let r = recipe(dir.path(), stage, export);
        let o = slmc(dir.path(), &["check", r.to_str().unwrap()]);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(1), "{stage} / {export}: {out}");
        assert!(out.contains(want), "{stage} / {export}: want `{want}` in\n{out}");
    }
    // The same recipe with requantize = true is accepted.
    let r = recipe(
        dir.path(),
        "bits = 4\ngroup-size = 128",
        "formats = [\"gguf\"]\ngguf-type = \"q4_k_m\"\nrequantize = true",
    );
    let o = slmc(dir.path(), &["check", r.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn requantize_lets_ggml_redo_a_grid_gguf_cannot_hold() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(
        dir.path(),
        "method = \"gptq\"\nbits = 4\ngroup-size = 64\ncalibration-samples = 8\nignore = [\"mlp.down_proj\"]",
        "formats = [\"gguf\"]\ngguf-type = \"q8_0\"\nrequantize = true",
    );
    let o = slmc(dir.path(), &["run", r.to_str().unwrap()]);
    let out = text(&o);
    assert!(o.status.success() && out.contains("GPTQ 4-bit g64 sym on 12 modules"), "{out}");
    let gguf = dir.path().join("runs/q/artifacts/q-q8_0.gguf");
    let o = slmc(dir.path(), &["inspect", gguf.to_str().unwrap(), "--json"]);
    let info = text(&o);
    assert!(o.status.success() && info.contains("Q8_0") && !info.contains("Q4_0"), "{info}");
}

#[test]
fn modules_left_out_stay_full_precision_in_the_gguf() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(
        dir.path(),
        "method = \"rtn\"\nbits = 4\ngroup-size = 32\nignore = [\"mlp.down_proj\"]",
        "formats = [\"gguf\"]",
    );
    let o = slmc(dir.path(), &["run", r.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let gguf = dir.path().join("runs/q/artifacts/q-q4_0.gguf");
    let o = slmc(dir.path(), &["inspect", gguf.to_str().unwrap(), "--json"]);
    let info: serde_json::Value = serde_json::from_str(&String::from_utf8_lossy(&o.stdout)).unwrap();
    let tensors = info["tensors"].as_array().unwrap_or_else(|| panic!("{info}"));
    let ty = |name: &str| {
        tensors.iter().find(|t| t["name"] == name).map(|t| t["type"].as_str().unwrap().to_string())
    };
    assert_eq!(ty("blk.0.ffn_down.weight").as_deref(), Some("F16"), "{info}");
    assert_eq!(ty("blk.0.ffn_up.weight").as_deref(), Some("Q4_0"), "{info}");
}
