//! `slmc prune` end to end on a tiny fixture model: SparseGPT 2:4 masks kept through sparse
//! fine-tuning and GPTQ, resume from the last finished block with identical masks, OWL layer
//! ratios, per-layer magnitude, and width/depth pruning to a smaller model that saves, evaluates and exports.

mod common;

use common::{MODULES, root, slmc, text};
use std::path::{Path, PathBuf};

fn recipe(dir: &Path, name: &str, stages: &str, export: &str) -> PathBuf {
    let r = root();
    let body = format!(
        "name = \"{name}\"\n[model]\npath = \"{model}\"\n[data]\ntrain = \"{text}\"\neval = \"{text}\"\nseq-len = 32\n{stages}\n[export]\n{export}\n",
        model = r.join("tests/fixtures/models/llama_gqa").display(),
        text = r.join("tests/fixtures/eval.txt").display()
    );
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, body).unwrap();
    p
}

/// The f32 values of `name` in a saved model directory, row-major `[out, in]`.
fn weight(model: &Path, name: &str) -> Vec<f32> {
    let bytes = std::fs::read(model.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(name).unwrap();
    assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name}");
    t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

#[test]
fn sparsegpt_2of4_masks_survive_sparse_finetuning_and_gptq_and_resume_identically() {
    let dir = tempfile::tempdir().unwrap();
    let stages = r#"[[stage]]
kind = "prune"
method = "sparsegpt"
pattern = "2:4"
calibration-samples = 16
batch-size = 4
[[stage]]
kind = "finetune"
steps = 3
batch-size = 2
lr = 1e-3
[[stage]]
kind = "quantize"
method = "gptq"
bits = 4
group-size = 32
calibration-samples = 16
batch-size = 4
[[stage]]
kind = "eval"
"#;
    let r = recipe(dir.path(), "s", stages, "formats = [\"safetensors\"]\ndtype = \"float32\"");
    let o = slmc(dir.path(), &["run", r.to_str().unwrap()]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("50.00 % of their weights zero (every row 2:4)"), "{out}");
    let run = dir.path().join("runs/s");
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let pruned: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["event"] == "prune")
        .collect();
    assert_eq!(pruned.len(), 14, "{metrics}");
    assert!(pruned.iter().all(|m| m["sparsity"] == 0.5 && m["rel_error"].as_f64().is_some_and(|e| e > 0.0)));

    let masks = slmc_prune::load_masks(&run.join("stages/0-prune/masks.safetensors")).unwrap();
    assert_eq!(masks.len(), 14);
    let (pruned_model, tuned, quantized) = (
        run.join("stages/0-prune/model"),
        run.join("stages/1-finetune/model"),
        run.join("stages/2-quantize/model"),
    );
    for l in 0..2 {
        for m in MODULES {
            let name = format!("model.layers.{l}.{m}");
            let mask = &masks[&name];
            assert!(mask.satisfies_n_m(2, 4), "{name}");
            let flags = mask.to_pruned();
            let key = format!("{name}.weight");
            let (p, t, q) = (weight(&pruned_model, &key), weight(&tuned, &key), weight(&quantized, &key));
            for (k, &is_pruned) in flags.iter().enumerate() {
                if is_pruned {
                    assert!(
                        p[k] == 0.0 && t[k] == 0.0 && q[k] == 0.0,
                        "{name}[{k}]: {} {} {}",
                        p[k],
                        t[k],
                        q[k]
                    );
                }
            }
            // Fine-tuning moved the kept weights; pruned ones did not move at all.
            assert!(
                flags.iter().zip(p.iter().zip(&t)).any(|(&f, (a, b))| !f && a != b),
                "{name} did not train"
            );
        }
    }
    // Later stages hand the masks on; the export is 2:4 sparse.
    assert_eq!(
        std::fs::read(run.join("stages/2-quantize/masks.safetensors")).unwrap(),
        std::fs::read(run.join("stages/0-prune/masks.safetensors")).unwrap()
    );
    let o = slmc(dir.path(), &["inspect", run.join("artifacts/s-safetensors").to_str().unwrap()]);
    let info = text(&o);
    // (4-bit rounding turns a few small kept weights into zeros as well.)
    assert!(info.contains("% of decoder linear weights are zero, every row 2:4"), "{info}");

    // `slmc prune` (a run directory of its own) gives the same masks and weights.
    let first_masks = std::fs::read(run.join("stages/0-prune/masks.safetensors")).unwrap();
    let first_w = weight(&pruned_model, "model.layers.1.mlp.down_proj.weight");
    let o = slmc(dir.path(), &["prune", r.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let only = dir.path().join("runs/s-prune/stages/0-prune");
    assert_eq!(std::fs::read(only.join("masks.safetensors")).unwrap(), first_masks);
    // Killed after block 0: block 1's files and the stage outputs are gone; the resumed prune
    // restores block 0 from its files and gives the same masks and weights.
    for f in [
        "done.json",
        "masks.safetensors",
        "blocks/block-0001.safetensors",
        "blocks/block-0001.weights.safetensors",
    ] {
        std::fs::remove_file(only.join(f)).unwrap();
    }
    std::fs::remove_dir_all(only.join("model")).unwrap();
    let o = slmc(dir.path(), &["prune", r.to_str().unwrap()]);
    let again = text(&o);
    assert!(o.status.success() && again.contains("resuming: 1 block(s) already pruned"), "{again}");
    assert_eq!(std::fs::read(only.join("masks.safetensors")).unwrap(), first_masks, "resumed masks differ");
    assert_eq!(weight(&only.join("model"), "model.layers.1.mlp.down_proj.weight"), first_w);
}

#[test]
fn wanda_with_owl_spreads_the_sparsity_over_layers() {
    let dir = tempfile::tempdir().unwrap();
    let stages = "[[stage]]\nkind = \"prune\"\nmethod = \"wanda\"\nsparsity = 0.5\nowl = { lambda = 0.1, m = 3 }\ncalibration-samples = 8\n";
    let r = recipe(dir.path(), "w", stages, "formats = []");
    let o = slmc(dir.path(), &["prune", r.to_str().unwrap()]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let stage = dir.path().join("runs/w-prune/stages/0-prune");
    let owl: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(stage.join("owl.json")).unwrap()).unwrap();
    let ratios: Vec<f64> = owl["ratios"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(ratios.len(), 2);
    assert!((ratios.iter().sum::<f64>() / 2.0 - 0.5).abs() < 1e-9, "{ratios:?}");
    assert!(ratios.iter().all(|r| (0.4 - 1e-9..=0.6 + 1e-9).contains(r)), "{ratios:?}");
    let masks = slmc_prune::load_masks(&stage.join("masks.safetensors")).unwrap();
    for (l, ratio) in ratios.iter().enumerate() {
        let m = &masks[&format!("model.layers.{l}.mlp.up_proj")];
        // Per row, exactly int(cols × ratio) weights go.
        assert_eq!(m.count(), m.rows() * (m.cols() as f64 * ratio) as usize, "layer {l}");
    }
}

#[test]
fn magnitude_per_layer_uses_one_threshold_per_matrix() {
    // `scope = "layer"`: the reference baselines' rule, sort(|W|)[int(n · 0.5)] and every
    // |w| <= it goes, recomputed here from the unpruned fixture; rows lose unequal shares.
    let dir = tempfile::tempdir().unwrap();
    let stages = "[[stage]]\nkind = \"prune\"\nmethod = \"magnitude\"\nsparsity = 0.5\nscope = \"layer\"\n";
    let r = recipe(dir.path(), "ml", stages, "formats = []");
    let o = slmc(dir.path(), &["prune", r.to_str().unwrap()]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("magnitude (per layer)"), "{out}");
    let stage = dir.path().join("runs/ml-prune/stages/0-prune");
    let done: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(stage.join("done.json")).unwrap()).unwrap();
    assert_eq!(done["magnitude_scope"], "layer");
    let original = root().join("tests/fixtures/models/llama_gqa");
    for module in MODULES {
        let name = format!("model.layers.1.{module}.weight");
        let (w, pruned) = (weight(&original, &name), weight(&stage.join("model"), &name));
        let mut sorted: Vec<f32> = w.iter().map(|v| v.abs()).collect();
        sorted.sort_by(f32::total_cmp);
        let thresh = sorted[w.len() / 2];
        for (a, b) in w.iter().zip(&pruned) {
            assert_eq!(*b, if a.abs() <= thresh { 0.0 } else { *a }, "{name}");
        }
    }
}

#[test]
fn width_and_depth_pruning_write_smaller_models_that_run() {
    let dir = tempfile::tempdir().unwrap();
    let stages = r#"[[stage]]
kind = "prune"
method = "width"
num-attention-heads = 2
hidden-size = 32
intermediate-size = 64
calibration-samples = 8
[[stage]]
kind = "prune"
method = "depth"
num-hidden-layers = 1
importance = "magnitude"
[[stage]]
kind = "eval"
"#;
    let r = recipe(dir.path(), "p", stages, "formats = [\"safetensors\", \"gguf\"]\ngguf-type = \"f16\"");
    let o = slmc(dir.path(), &["check", r.to_str().unwrap()]);
    let plan = text(&o);
    assert!(o.status.success(), "{plan}");
    assert!(plan.contains("heads 4→2, KV heads 2→2, intermediate 128→64, hidden 64→32"), "{plan}");
    assert!(plan.contains("depth (weight magnitude): 2 → 1 layers"), "{plan}");
    let o = slmc(dir.path(), &["run", r.to_str().unwrap()]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let art = dir.path().join("runs/p/artifacts");
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(art.join("p-safetensors/config.json")).unwrap())
            .unwrap();
    assert_eq!(
        (
            &cfg["hidden_size"],
            &cfg["intermediate_size"],
            &cfg["num_attention_heads"],
            &cfg["num_key_value_heads"]
        ),
        (&32.into(), &64.into(), &2.into(), &2.into())
    );
    assert_eq!((&cfg["num_hidden_layers"], &cfg["head_dim"]), (&1.into(), &16.into()));
    let model = art.join("p-safetensors");
    let eval = root().join("tests/fixtures/eval.txt");
    let o = slmc(dir.path(), &["eval", model.to_str().unwrap(), "--data", eval.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = slmc(dir.path(), &["inspect", art.join("p-f16.gguf").to_str().unwrap(), "--json"]);
    let info = text(&o);
    assert!(o.status.success() && info.contains("\"llama.embedding_length\""), "{info}");
    // A structural change after unstructured masks is refused before any work.
    let bad = recipe(
        dir.path(),
        "bad",
        "[[stage]]\nkind = \"prune\"\nmethod = \"magnitude\"\nsparsity = 0.5\n[[stage]]\nkind = \"prune\"\nmethod = \"depth\"\nkeep = 0.5\n",
        "formats = []",
    );
    let o = slmc(dir.path(), &["check", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("prune structurally first"), "{}", text(&o));
}
