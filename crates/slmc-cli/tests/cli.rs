//! End-to-end tests of the `slmc` binary on the committed fixtures.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn slmc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slmc"))
        .args(args)
        .env("COLUMNS", "100")
        .env_remove("SLMC_DEVICE")
        .env_remove("SLMC_THREADS")
        .output()
        .expect("run slmc")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn reference(variant: &str) -> Value {
    let p = fixtures().join("models").join(variant).join("reference.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn eval_json(model: &Path, data: &Path) -> Value {
    let o = slmc(&[
        "eval",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--ctx",
        "32",
        "--stride",
        "16",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_str(stdout(&o).trim()).unwrap()
}

fn assert_close(got: f64, want: f64, what: &str) {
    assert!(((got - want) / want).abs() < 1e-5, "{what}: {got} vs transformers {want}");
}

#[test]
fn eval_json_matches_transformers_on_pretokenized_jsonl_and_on_text() {
    for variant in ["llama_gqa", "phi3_longrope"] {
        let dir = fixtures().join("models").join(variant);
        let r = reference(variant);
        let got = eval_json(&dir, &dir.join("eval.jsonl"));
        assert_eq!(got["tokens"], r["nll"]["tokens"]);
        assert_close(got["mean_nll"].as_f64().unwrap(), r["nll"]["mean_nll"].as_f64().unwrap(), variant);
        assert_close(got["ppl"].as_f64().unwrap(), r["nll"]["ppl"].as_f64().unwrap(), variant);
        let got = eval_json(&dir, &fixtures().join("eval.txt"));
        assert_eq!(got["tokens"], r["nll_text"]["tokens"]);
        assert_close(got["mean_nll"].as_f64().unwrap(), r["nll_text"]["mean_nll"].as_f64().unwrap(), variant);
    }
}

#[test]
fn eval_reads_a_parquet_text_column() {
    use arrow_array::{ArrayRef, RecordBatch, StringArray};
    let text = std::fs::read_to_string(fixtures().join("eval.txt")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("eval.parquet");
    let batch = RecordBatch::try_from_iter([(
        "text",
        std::sync::Arc::new(StringArray::from(vec![text])) as ArrayRef,
    )])
    .unwrap();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), None)
            .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let dir = fixtures().join("models/qwen2_bias");
    let got = eval_json(&dir, &path);
    let want = reference("qwen2_bias");
    assert_close(
        got["mean_nll"].as_f64().unwrap(),
        want["nll_text"]["mean_nll"].as_f64().unwrap(),
        "parquet",
    );
}

#[test]
fn inspect_reports_architecture_and_counts() {
    let o = slmc(&["inspect", fixtures().join("models/llama_tied_bf16").to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["architecture"], "llama");
    assert_eq!(v["tied_embeddings"], true);
    assert_eq!(v["head_dim"], 32);
    // Tied: the stored values are exactly the parameters (no lm_head copy).
    assert_eq!(v["parameters"], v["stored_values"]);
    assert_eq!(v["dtypes"]["BF16"], v["stored_values"]);
    let o = slmc(&["inspect", fixtures().join("models/mistral_sharded").to_str().unwrap()]);
    assert!(stdout(&o).contains("sliding window") && stdout(&o).contains("mistral"), "{}", stdout(&o));
}

#[test]
fn generate_is_greedy_and_deterministic_by_default() {
    let dir = fixtures().join("models/llama_gqa");
    let args =
        ["generate", dir.to_str().unwrap(), "--prompt", "The river", "--max-new-tokens", "8", "--ignore-eos"];
    let (a, b) = (slmc(&args), slmc(&args));
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(stdout(&a).starts_with("The river"));
    assert_eq!(stdout(&a), stdout(&b));
    let sampled = |seed: &str| {
        let mut v = args.to_vec();
        v.extend(["--temperature", "1.5", "--seed", seed]);
        stdout(&slmc(&v))
    };
    assert_eq!(sampled("7"), sampled("7"), "same seed, same text");
}

#[test]
fn generate_chat_renders_the_prompt_with_the_models_template() {
    let teacher = fixtures().join("../../data/models/teacher");
    let question = "Which work is this passage from?\n\nTo be, or not to be";
    let t = teacher.to_str().unwrap();
    let chat =
        slmc(&["generate", t, "--chat", "--prompt", question, "--max-new-tokens", "12", "--ignore-eos"]);
    assert!(chat.status.success(), "{}", stderr(&chat));
    // The template's text for one user message with the assistant turn opened (the `<s>` it starts
    // with is what plain prompts get from the tokenizer): the same tokens, so the same continuation.
    let rendered = format!("<|user|>\n{question}\n<|assistant|>\n");
    let plain = slmc(&["generate", t, "--prompt", &rendered, "--max-new-tokens", "12", "--ignore-eos"]);
    assert!(plain.status.success(), "{}", stderr(&plain));
    let continuation = stdout(&plain).strip_prefix(rendered.as_str()).unwrap().to_string();
    assert!(continuation.trim().len() > 3, "{continuation:?}");
    assert_eq!(stdout(&chat), continuation);
    // A model without a chat template is a clear error.
    let fixture = fixtures().join("models/llama_gqa");
    let o = slmc(&["generate", fixture.to_str().unwrap(), "--chat", "--prompt", "hi"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("has no chat template"), "{}", stderr(&o));
}

#[test]
fn export_writes_a_directory_that_loads_and_evaluates_the_same() {
    let dir = fixtures().join("models/phi3_fused");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("phi3-export");
    let o = slmc(&["export", dir.to_str().unwrap(), "--format", "safetensors", "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let a = eval_json(&dir, &dir.join("eval.jsonl"));
    let b = eval_json(&out, &dir.join("eval.jsonl"));
    assert_eq!(a["mean_nll"], b["mean_nll"]);
}

#[test]
fn user_errors_exit_1_with_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let o = slmc(&["eval", tmp.path().to_str().unwrap(), "--data", "x.txt"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).starts_with("error: ") && stderr(&o).contains("no config.json"), "{}", stderr(&o));

    std::fs::write(tmp.path().join("config.json"), r#"{"model_type": "gpt_neox"}"#).unwrap();
    let o = slmc(&["inspect", tmp.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o)
            .contains("unsupported model_type `gpt_neox`; slmc supports llama, mistral, qwen2, phi3, gemma"),
        "{}",
        stderr(&o)
    );

    let dir = fixtures().join("models/llama_gqa");
    let o = slmc(&[
        "eval",
        dir.to_str().unwrap(),
        "--data",
        dir.join("eval.jsonl").to_str().unwrap(),
        "--ctx",
        "4096",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("exceeds the model's context of 128"), "{}", stderr(&o));
}

#[test]
fn usage_errors_exit_1_and_help_and_version_exit_0() {
    for (args, what) in [
        (vec!["eval", "--no-such-flag"], "unexpected argument '--no-such-flag'"),
        (vec!["eval", "m", "--data"], "a value is required for '--data <DATA>'"),
        (vec!["report"], "the following required arguments were not provided"),
        (vec!["no-such-command"], "unrecognized subcommand 'no-such-command'"),
    ] {
        let o = slmc(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).starts_with("error: ") && stderr(&o).contains(what), "{args:?}: {}", stderr(&o));
    }
    for args in [vec!["--help"], vec!["-h"], vec!["--version"], vec!["report", "--help"]] {
        let o = slmc(&args);
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        assert!(!stdout(&o).is_empty() && stderr(&o).is_empty(), "{args:?}");
    }
    assert_eq!(stdout(&slmc(&["--version"])).trim(), format!("slmc {}", env!("CARGO_PKG_VERSION")));
}

/// Help text is part of the interface: a change must be deliberate (set SLMC_UPDATE_SNAPSHOTS=1
/// to rewrite the snapshots).
#[test]
fn help_snapshots() {
    for (name, args) in [
        ("help", vec!["--help"]),
        ("eval-help", vec!["eval", "--help"]),
        ("report-help", vec!["report", "--help"]),
    ] {
        let o = slmc(&args);
        assert!(o.status.success());
        let got = stdout(&o);
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots").join(format!("{name}.txt"));
        if std::env::var_os("SLMC_UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(&path, &got).unwrap();
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(got, want, "{name} changed; rerun with SLMC_UPDATE_SNAPSHOTS=1 if intended");
    }
}
