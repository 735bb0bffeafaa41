//! End-to-end recipe runs on a tiny fixture model: run, resume, refusal of a changed recipe,
//! gates, kind-filtered commands, and `slmc check`.

mod common;

use common::{root, slmc, text};
use std::path::{Path, PathBuf};

/// A recipe fine-tuning the llama_gqa fixture on the fixture text.
fn recipe(dir: &Path, extra: &str) -> PathBuf {
    let r = root();
    let body = format!(
        r#"name = "tiny"
seed = 1
[model]
path = "{model}"
[data]
train = "{text}"
seq-len = 32
eval-fraction = 0.1
[[stage]]
kind = "eval"
[[stage]]
kind = "finetune"
steps = 6
batch-size = 4
lr = 3e-3
warmup-steps = 1
checkpoint-every = 2
log-every = 1
[[stage]]
kind = "eval"
[export]
formats = ["safetensors", "gguf"]
dtype = "bfloat16"
gguf-type = "q8_0"
{extra}"#,
        model = r.join("tests/fixtures/models/llama_gqa").display(),
        text = r.join("tests/fixtures/eval.txt").display()
    );
    let p = dir.join("tiny.toml");
    std::fs::write(&p, body).unwrap();
    p
}

/// Perplexities of the eval stages, in stage order ("stage N: eval, perplexity X over ...").
fn ppl_lines(out: &str) -> Vec<f64> {
    out.lines()
        .filter(|l| l.starts_with("stage ") && l.contains(": eval, perplexity "))
        .filter_map(|l| l.split("perplexity ").nth(1))
        .filter_map(|r| r.split_whitespace().next()?.parse().ok())
        .collect()
}

#[test]
fn run_trains_evaluates_exports_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(dir.path(), "");
    let o = slmc(dir.path(), &["run", r.to_str().unwrap()]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let ppl = ppl_lines(&out);
    assert_eq!(ppl.len(), 2, "{out}");
    assert!(ppl[1] < ppl[0], "fine-tuning on the data must lower its held-out perplexity: {ppl:?}");
    let run = dir.path().join("runs/tiny");
    for f in ["manifest.json", "metrics.jsonl", "report.html", "stages/1-finetune/done.json"] {
        assert!(run.join(f).is_file(), "{f}");
    }
    let art = run.join("artifacts/tiny-safetensors");
    let o = slmc(dir.path(), &["inspect", art.to_str().unwrap(), "--json"]);
    assert!(text(&o).contains("\"BF16\""), "{}", text(&o));
    let steps =
        std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().matches("\"event\":\"step\"").count();
    assert_eq!(steps, 6);

    // Same recipe again: every stage is done, nothing is recomputed.
    let o = slmc(dir.path(), &["run", r.to_str().unwrap()]);
    let again = text(&o);
    assert!(o.status.success() && again.contains("already done"), "{again}");
    assert!(again.contains(&format!("final perplexity {:.3}", ppl[1])), "{again}");

    // Interrupted mid-stage: delete the finished stage's marker and model, keep the step-4 checkpoint.
    let stage = run.join("stages/1-finetune");
    std::fs::remove_file(stage.join("done.json")).unwrap();
    std::fs::remove_dir_all(stage.join("model")).unwrap();
    std::fs::remove_dir_all(stage.join("checkpoints/step-000006")).unwrap();
    std::fs::remove_file(run.join("stages/2-eval/done.json")).unwrap();
    let o = slmc(dir.path(), &["run", r.to_str().unwrap()]);
    let resumed = text(&o);
    assert!(o.status.success() && resumed.contains("resuming from the checkpoint at step 4"), "{resumed}");
    let last = ppl_lines(&resumed)[0];
    let want = *ppl.last().unwrap();
    assert!((last - want).abs() / want < 1e-4, "resumed final ppl {last} vs {want}");
    let steps =
        std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().matches("\"event\":\"step\"").count();
    assert_eq!(steps, 6, "steps 5-6 are logged once");
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let stage2_evals = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["event"] == "eval" && v["stage"] == 2)
        .count();
    assert_eq!(stage2_evals, 1, "the rerun eval stage replaces its line");

    // A changed recipe is refused, and --fresh starts over.
    let o = slmc(dir.path(), &["run", r.to_str().unwrap(), "--set", "stage.1.lr=1e-3"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("different recipe or inputs"), "{}", text(&o));
}

#[test]
fn failing_gate_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(dir.path(), "[gates]\nmax-ppl = 1.5\n");
    let o = slmc(dir.path(), &["run", r.to_str().unwrap(), "--set", "stage.1.steps=1"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("gate FAIL"), "{}", text(&o));
}

#[test]
fn kind_commands_run_only_their_stages() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(dir.path(), "");
    let o = slmc(dir.path(), &["finetune", r.to_str().unwrap(), "--set", "stage.1.steps=1"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("stage 0: eval"), "{}", text(&o));
    assert!(dir.path().join("runs/tiny-finetune/stages/1-finetune/done.json").is_file());
    let only_eval = dir.path().join("e.toml");
    let body = std::fs::read_to_string(&r).unwrap();
    let (head, _) = body.split_once("[[stage]]").unwrap();
    std::fs::write(&only_eval, format!("{head}[[stage]]\nkind = \"eval\"\n")).unwrap();
    let o = slmc(dir.path(), &["finetune", only_eval.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("has no `finetune` stage"), "{}", text(&o));
}

#[test]
fn check_prints_the_plan_and_reports_a_missing_model_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(dir.path(), "");
    let o = slmc(dir.path(), &["check", r.to_str().unwrap()]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("touches 21 tensors")
            && out.contains("AdamW state")
            && out.contains("export   safetensors (bfloat16)")
            && out.contains("export   gguf (q8_0)"),
        "{out}"
    );
    let o = slmc(dir.path(), &["check", r.to_str().unwrap(), "--set", "model.path=nowhere"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("nowhere is not a Hugging Face model directory")
            && text(&o).contains("--set model.path=nowhere"),
        "{}",
        text(&o)
    );
}

/// A distill recipe: the llama_gqa fixture as teacher; `stage` is the distill stage's body.
fn distill_recipe(dir: &Path, stage: &str) -> PathBuf {
    let r = root();
    let model = r.join("tests/fixtures/models/llama_gqa");
    let body = format!(
        r#"name = "kd"
[model]
path = "{model}"
[teacher]
path = "{model}"
[data]
train = "{text}"
seq-len = 32
[[stage]]
kind = "distill"
steps = 4
batch-size = 4
lr = 3e-3
log-every = 1
{stage}
[[stage]]
kind = "eval"
"#,
        model = model.display(),
        text = r.join("tests/fixtures/eval.txt").display()
    );
    let p = dir.join("kd.toml");
    std::fs::write(&p, body).unwrap();
    p
}

#[test]
fn distill_variants_run_end_to_end() {
    for (name, stage, layers, hidden) in [
        (
            "teacher-layers + cosine",
            "init = \"teacher-layers\"\nlayers = [1]\nhidden-loss = \"cosine\"\ntemperature = 2.0",
            1,
            64,
        ),
        (
            "narrower fresh student + projection",
            "init = \"config\"\nstudent-config = { num_hidden_layers = 1, hidden_size = 32, intermediate_size = 64 }\nhidden-loss = \"mse\"\nlayer-map = [[0, 1]]\nloss = \"jsd\"\nbeta = 0.5",
            1,
            32,
        ),
        ("top-K cache", "init = \"teacher-layers\"\nteacher-cache = \"topk:16\"\nalpha = 1.0", 1, 64),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let r = distill_recipe(dir.path(), stage);
        let o = slmc(dir.path(), &["check", r.to_str().unwrap()]);
        assert!(o.status.success(), "{name}: {}", text(&o));
        assert!(text(&o).contains(&format!("student {layers} layers × {hidden}")), "{name}: {}", text(&o));
        let o = slmc(dir.path(), &["distill", r.to_str().unwrap()]);
        assert!(o.status.success(), "{name}: {}", text(&o));
        let o = slmc(dir.path(), &["run", r.to_str().unwrap()]);
        let out = text(&o);
        assert!(o.status.success(), "{name}: {out}");
        assert!(out.contains(&format!("student {layers} layers")), "{name}: {out}");
        let model = dir.path().join("runs/kd/stages/0-distill/model");
        let o = slmc(dir.path(), &["inspect", model.to_str().unwrap(), "--json"]);
        assert!(text(&o).contains(&format!("\"hidden_size\": {hidden}")), "{name}: {}", text(&o));
        if name == "top-K cache" {
            assert!(dir.path().join("runs/kd/stages/0-distill/teacher-top16.cache").is_file());
        }
    }
}

#[test]
fn distill_refuses_a_different_tokenizer_before_any_compute() {
    let dir = tempfile::tempdir().unwrap();
    // A teacher whose tokenizer differs: copy the fixture and swap in another vocabulary.
    let teacher = dir.path().join("teacher");
    std::fs::create_dir(&teacher).unwrap();
    let src = root().join("tests/fixtures/models/llama_gqa");
    for f in ["config.json", "model.safetensors", "tokenizer_config.json"] {
        std::fs::copy(src.join(f), teacher.join(f)).unwrap();
    }
    let tok =
        std::fs::read_to_string(src.join("tokenizer.json")).unwrap().replacen("\"<pad>\"", "\"<pad2>\"", 2);
    std::fs::write(teacher.join("tokenizer.json"), tok).unwrap();
    let r = distill_recipe(dir.path(), "init = \"teacher-layers\"");
    let text_ = std::fs::read_to_string(&r).unwrap().replacen(
        &format!("[teacher]\npath = \"{}\"", src.display()),
        &format!("[teacher]\npath = \"{}\"", teacher.display()),
        1,
    );
    std::fs::write(&r, text_).unwrap();
    let o = slmc(dir.path(), &["run", r.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("tokenizer differs"), "{}", text(&o));
    assert!(!dir.path().join("runs/kd/stages/0-distill/checkpoints").exists());
}

#[test]
fn phi_student_recipe_checks_against_a_tiny_phi3() {
    let r = root();
    let phi = r.join("tests/fixtures/models/phi3_fused");
    let o = slmc(
        &r,
        &[
            "check",
            "recipes/phi-student.toml",
            "--set",
            &format!("model.path={}", phi.display()),
            "--set",
            &format!("teacher.path={}", phi.display()),
            "--set",
            "data.seq-len=64",
        ],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    // 2 teacher layers → every other one: a 1-layer student.
    assert!(
        out.contains("distill: phi3")
            && out.contains("student 1 layers × 64")
            && out.contains("teacher layers [0]"),
        "{out}"
    );
}

#[test]
fn shipped_quickstart_runs_end_to_end_on_a_tiny_model() {
    let r = root();
    let dir = tempfile::tempdir().unwrap();
    let model = r.join("tests/fixtures/models/llama_gqa");
    let text_file = r.join("tests/fixtures/eval.txt");
    let set = |k: &str, v: &str| ["--set".to_string(), format!("{k}={v}")];
    let mut args: Vec<String> = vec!["run".into(), r.join("recipes/quickstart.toml").display().to_string()];
    for (k, v) in [
        ("model.path", model.display().to_string()),
        ("teacher.path", model.display().to_string()),
        ("data.train", text_file.display().to_string()),
        ("data.eval", text_file.display().to_string()),
        ("data.seq-len", "32".into()),
        ("stage.1.steps", "6".into()),
        ("stage.1.batch-size", "2".into()),
        ("run-dir", dir.path().join("qs").display().to_string()),
    ] {
        args.extend(set(k, &v));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = slmc(dir.path(), &args);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let ppl = ppl_lines(&out);
    assert_eq!(ppl.len(), 3, "{out}");
    assert!(out.contains("student 1 layers"), "{out}");
    assert!(out.contains("quantize, GPTQ 4-bit g32 sym on 7 modules"), "{out}");
    assert!((ppl[2] - ppl[1]).abs() / ppl[1] < 0.05, "4-bit GPTQ stays close to the student: {ppl:?}");
    assert!(dir.path().join("qs/artifacts/quickstart-safetensors/model.safetensors").is_file());
    let gguf = dir.path().join("qs/artifacts/quickstart-q4_0.gguf");
    let o = slmc(dir.path(), &["inspect", gguf.to_str().unwrap()]);
    assert!(o.status.success() && text(&o).contains("Q4_0"), "{}", text(&o));
}

#[test]
fn check_states_the_memory_budget_and_warns_about_stages_over_it() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(dir.path(), "");
    let r = r.to_str().unwrap();
    let out = text(&slmc(dir.path(), &["check", r]));
    assert!(out.contains("memory   estimates assume one device") && out.contains("no budget given"), "{out}");
    assert!(!out.contains("will not fit"), "{out}");
    let o = slmc(dir.path(), &["check", r, "--memory-budget", "1kB"]);
    let out = text(&o);
    assert!(o.status.success(), "a warning, not an error: {out}");
    assert!(out.contains("budget 1.0 kB") && out.contains("warning: stage 0 plans"), "{out}");
    assert!(out.contains("will not fit the 1.0 kB budget"), "{out}");
    let out = text(&slmc(dir.path(), &["check", r, "--memory-budget", "1TB"]));
    assert!(out.contains("budget 1000.00 GB") && !out.contains("will not fit"), "{out}");
    // The recipe field, and a bad size rejected at the command line.
    let out = text(&slmc(dir.path(), &["check", r, "--set", "memory-budget=2kB"]));
    assert!(out.contains("budget 2.0 kB") && out.contains("will not fit"), "{out}");
    let o = slmc(dir.path(), &["check", r, "--memory-budget", "48XB"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("unknown unit `xb`"), "{}", text(&o));
}

#[test]
fn precision_is_planned_and_bf16_mixed_training_tracks_f32() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(dir.path(), "");
    let r = r.to_str().unwrap();
    let f32_plan = text(&slmc(dir.path(), &["check", r]));
    let o = slmc(dir.path(), &["check", r, "--set", "stage.1.precision=bf16"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_ne!(text(&o), f32_plan, "bf16 halves the stage's weights, gradients and moments");
    let out = text(&slmc(dir.path(), &["check", r, "--set", "stage.1.precision=bf15"]));
    assert!(out.contains("did you mean `bf16`?"), "{out}");
    // The same training in f32 and in bf16-mixed (bf16 activations, f32 master weights and
    // AdamW): the loss curves agree to within BF16_CURVE_TOL at every step.
    const BF16_CURVE_TOL: f64 = 2e-2;
    let curve = |precision: &str| -> Vec<f64> {
        let sub = dir.path().join(precision);
        std::fs::create_dir_all(&sub).unwrap();
        let o = slmc(
            &sub,
            &["run", r, "--set", &format!("stage.1.precision={precision}"), "--set", "stage.1.log-every=1"],
        );
        assert!(o.status.success(), "{precision}: {}", text(&o));
        let metrics = std::fs::read_to_string(sub.join("runs/tiny/metrics.jsonl")).unwrap();
        metrics
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["event"] == "step" && v["stage"] == 1)
            .map(|v| v["loss"].as_f64().unwrap())
            .collect()
    };
    let (full, mixed) = (curve("f32"), curve("bf16-mixed"));
    assert!(full.len() >= 5 && full.len() == mixed.len(), "{full:?} {mixed:?}");
    for (step, (a, b)) in full.iter().zip(&mixed).enumerate() {
        assert!((a - b).abs() <= BF16_CURVE_TOL * a, "step {}: f32 {a} vs bf16-mixed {b}", step + 1);
    }
    assert!(full.iter().zip(&mixed).any(|(a, b)| a != b), "bf16-mixed really computed in bf16");
}
