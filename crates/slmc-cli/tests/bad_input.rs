//! Bad input gets exit code 1 and one `error:` line, never a panic (exit 2) or an abort (134),
//! and loses nothing: token ids outside the vocabulary, absurd config sizes, an absurd tokenizer
//! vocabulary, out-of-range sampling settings, a NaN adapter, a damaged safetensors header,
//! exports onto existing paths; and diagnostics stay bounded however many problems a recipe has.

mod common;

use common::{root, slmc, text};
use std::path::{Path, PathBuf};
use std::process::Output;

/// Asserts exit code 1, exactly one `error:` line, and that it contains `want`.
fn assert_one_error(o: &Output, want: &str) {
    let out = text(o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{out}");
    assert!(errors[0].contains(want), "want {want:?} in: {out}");
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/models").join(name)
}

/// A copy of the llama_gqa fixture with `key` set to `value` in its config.json.
fn with_config(dir: &Path, key: &str, value: serde_json::Value) -> PathBuf {
    let out = dir.join(format!("model-{key}"));
    std::fs::create_dir_all(&out).unwrap();
    for f in std::fs::read_dir(fixture("llama_gqa")).unwrap().map(Result::unwrap) {
        std::fs::copy(f.path(), out.join(f.file_name())).unwrap();
    }
    let path = out.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    cfg[key] = value;
    std::fs::write(&path, cfg.to_string()).unwrap();
    out
}

#[test]
fn training_data_with_ids_outside_the_vocabulary_is_refused_before_any_stage() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("ids.jsonl");
    let row: Vec<u32> = (0..40).map(|i| if i == 17 { 5000 } else { i }).collect();
    std::fs::write(&data, format!("{}\n", serde_json::json!({ "input_ids": row })).repeat(8)).unwrap();
    let recipe = tmp.path().join("r.toml");
    std::fs::write(
        &recipe,
        format!(
            "name = \"ids\"\n[model]\npath = \"{}\"\n[data]\ntrain = {{ path = \"{}\", ids-column = \"input_ids\" }}\n\
             seq-len = 16\n[[stage]]\nkind = \"finetune\"\nsteps = 2\nbatch-size = 2\nwarmup-steps = 0\n",
            fixture("llama_gqa").display(),
            data.display()
        ),
    )
    .unwrap();
    let o = slmc(tmp.path(), &["run", recipe.to_str().unwrap()]);
    assert_one_error(&o, "holds token id 5000, outside the model's vocabulary of 384");
    assert!(!tmp.path().join("runs/ids/stages").exists(), "no stage ran");
}

#[test]
fn absurd_config_sizes_are_refused_before_anything_is_allocated() {
    let tmp = tempfile::tempdir().unwrap();
    let huge = serde_json::json!(1u64 << 40);
    let data = root().join("tests/fixtures/eval.txt");
    for key in ["num_hidden_layers", "vocab_size", "head_dim", "num_key_value_heads", "hidden_size"] {
        let model = with_config(tmp.path(), key, huge.clone());
        let m = model.to_str().unwrap();
        for args in [vec!["inspect", m], vec!["eval", m, "--data", data.to_str().unwrap()]] {
            assert_one_error(&slmc(tmp.path(), &args), &format!("`{key}` = 1099511627776 is larger than"));
        }
        let recipe = tmp.path().join(format!("{key}.toml"));
        std::fs::write(
            &recipe,
            format!(
                "name = \"x\"\n[model]\npath = \"{m}\"\n[[stage]]\nkind = \"quantize\"\nmethod = \"rtn\"\n"
            ),
        )
        .unwrap();
        let o = slmc(tmp.path(), &["check", recipe.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(text(&o).contains("is larger than slmc supports"), "{}", text(&o));
    }
    // Within the limits but far larger than the checkpoint: refused before the model is built.
    let model = with_config(tmp.path(), "num_hidden_layers", serde_json::json!(4000));
    let o = slmc(tmp.path(), &["eval", model.to_str().unwrap(), "--data", data.to_str().unwrap()]);
    assert_one_error(&o, "config.json describes");
    let o = slmc(
        tmp.path(),
        &["tokenizer", "train", "--data", data.to_str().unwrap(), "--vocab-size", "4000000000", "-o", "tok"],
    );
    assert_one_error(&o, "vocab size 4000000000 is larger than slmc supports");
}

#[test]
fn sampling_settings_outside_their_range_are_usage_errors() {
    let m = fixture("llama_gqa");
    for (flag, value, want) in [
        ("--temperature", "NaN", "finite number"),
        ("--temperature", "-1", "finite number"),
        ("--top-p", "0", "(0, 1]"),
        ("--top-p", "2", "(0, 1]"),
    ] {
        let arg = format!("{flag}={value}");
        let o = slmc(&root(), &["generate", m.to_str().unwrap(), "--prompt", "a", &arg]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(text(&o).contains(want), "{flag} {value}: {}", text(&o));
    }
}

#[test]
fn an_adapter_holding_nan_is_refused_naming_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let adapter = tmp.path().join("nan-adapter");
    std::fs::create_dir(&adapter).unwrap();
    let src = root().join("tests/fixtures/lora/lora");
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(src.join(f), adapter.join(f)).unwrap();
    }
    // The first value of the first tensor (data starts after the 8-byte length and the header).
    let path = adapter.join("adapter_model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    bytes[8 + header..12 + header].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    let out = tmp.path().join("merged");
    let o = slmc(
        tmp.path(),
        &[
            "export",
            fixture("llama_gqa").to_str().unwrap(),
            "--adapter",
            adapter.to_str().unwrap(),
            "-o",
            "merged",
        ],
    );
    assert_one_error(&o, "holds NaN at index 0");
    assert!(!out.exists(), "nothing written");
}

#[test]
fn a_damaged_safetensors_header_is_described_in_words() {
    let tmp = tempfile::tempdir().unwrap();
    let model = with_config(tmp.path(), "model_type", serde_json::json!("llama"));
    let weights = model.join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&weights, bytes).unwrap();
    let o = slmc(tmp.path(), &["inspect", model.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(!text(&o).contains("HeaderTooLarge") && text(&o).contains("100 MB header limit"), "{}", text(&o));
}

#[test]
fn export_refuses_an_existing_output_unless_forced_and_leaves_no_temporaries() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let m = fixture("llama_gqa");
    let m = m.to_str().unwrap();
    std::fs::write(dir.join("file"), "mine").unwrap();
    std::fs::create_dir(dir.join("folder")).unwrap();
    std::fs::write(dir.join("folder/keep.txt"), "mine").unwrap();
    for out in ["file", "folder"] {
        assert_one_error(&slmc(dir, &["export", m, "-o", out]), "pass --force to replace it");
        assert_one_error(&slmc(dir, &["export", m, "--format", "gguf", "--type", "f32", "-o", out]), out);
    }
    assert_eq!(std::fs::read_to_string(dir.join("file")).unwrap(), "mine");
    assert_eq!(std::fs::read_to_string(dir.join("folder/keep.txt")).unwrap(), "mine");
    assert_one_error(&slmc(dir, &["export", m, "-o", ".", "--force"]), "the working directory");
    // --force replaces a file with the exported directory, completely.
    let o = slmc(dir, &["export", m, "-o", "file", "--force"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(dir.join("file/model.safetensors").is_file());
    // A killed export's temporaries (pid 4194304: above Linux's largest) are swept by the next.
    std::fs::write(dir.join(".slmc-tmp-4194304-abcdef"), vec![0u8; 1000]).unwrap();
    std::fs::create_dir(dir.join(".out.partial-4194304-abcdef")).unwrap();
    let o = slmc(dir, &["export", m, "--format", "gguf", "--type", "f32", "-o", "out.gguf"]);
    assert!(o.status.success(), "{}", text(&o));
    let mut left: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    left.sort();
    assert_eq!(left, ["file", "folder", "out.gguf"]);
}

#[test]
fn diagnostics_stay_bounded_however_many_problems_a_recipe_has() {
    let tmp = tempfile::tempdir().unwrap();
    let ignores: Vec<String> = (0..1000).map(|i| format!("\"nomatch{i}\"")).collect();
    let recipe = tmp.path().join("r.toml");
    std::fs::write(
        &recipe,
        format!(
            "name = \"many\"\n[model]\npath = \"{}\"\n[[stage]]\nkind = \"quantize\"\nmethod = \"rtn\"\nignore = [{}]\n",
            fixture("llama_gqa").display(),
            ignores.join(", ")
        ),
    )
    .unwrap();
    for command in ["check", "run"] {
        let o = slmc(tmp.path(), &[command, recipe.to_str().unwrap()]);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(1), "{out}");
        assert!(out.len() < 16_000, "{command}: {} bytes of output", out.len());
        assert!(out.contains("… and 980 more problems"), "{out}");
        assert!(out.lines().all(|l| l.chars().count() < 400), "{command}: a quoted line is cut to a window");
    }
}

#[test]
fn more_threads_than_cores_are_lowered_with_a_warning() {
    let cores = std::thread::available_parallelism().unwrap().get();
    let asked = (cores * 8).to_string();
    let m = fixture("llama_gqa");
    let data = root().join("tests/fixtures/eval.txt");
    let o = slmc(
        &root(),
        &["--threads", &asked, "eval", m.to_str().unwrap(), "--data", data.to_str().unwrap(), "--ctx", "32"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("--threads {asked} is more than the {cores} cores here")),
        "{}",
        text(&o)
    );
    assert_one_error(&slmc(&root(), &["--threads", "0", "inspect", m.to_str().unwrap()]), "at least 1");
}
