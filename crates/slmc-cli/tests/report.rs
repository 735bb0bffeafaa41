//! The run report: `metrics.jsonl` after a run killed (SIGKILL) and resumed describes one run,
//! and `report.html` of a real small run (eval → finetune → eval → GPTQ → eval, two exports and a
//! gate) shows the curves, per-module errors, evaluations and artifact sizes of that run;
//! `slmc report RUN_DIR` renders it again.

use serde_json::Value;
mod common;

use common::{slmc, text};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn metrics(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn events<'a>(lines: &'a [Value], event: &str) -> Vec<&'a Value> {
    lines.iter().filter(|v| v["event"] == event).collect()
}

/// A finetune recipe on the llama_gqa fixture; `stages` follow `[data]`.
fn recipe(dir: &Path, name: &str, stages: &str, extra: &str) -> PathBuf {
    common::fixture_recipe(dir, name, 3, &format!("{stages}\n{extra}"))
}

const LONG_FINETUNE: &str = r#"[[stage]]
kind = "finetune"
steps = 400
batch-size = 2
lr = 1e-3
warmup-steps = 2
log-every = 1
eval-every = 50
eval-sequences = 4
checkpoint-every = 100
"#;

/// Starts `slmc run`, waits until `ready` holds for the run directory, then SIGKILLs it.
/// Returns whether it was killed (false: it finished first).
fn run_and_kill(dir: &Path, recipe: &Path, run: &Path, ready: impl Fn(&Path) -> bool) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_slmc"))
        .current_dir(dir)
        .args(["run", recipe.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if ready(run) {
            child.kill().unwrap();
            child.wait().unwrap();
            return true;
        }
        assert!(start.elapsed() < Duration::from_secs(300), "the run never reached the kill point");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn logged_steps(run: &Path) -> Vec<u64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == "step")
        .filter_map(|v| v["step"].as_u64())
        .collect()
}

#[test]
fn a_run_killed_twice_and_resumed_logs_every_step_once_with_the_uninterrupted_losses() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(dir.path(), "kill", LONG_FINETUNE, "");
    let run = dir.path().join("runs/kill");
    let ckpt = run.join("stages/0-finetune/checkpoints");

    // Killed before its first checkpoint: the resumed run starts from step 1 again.
    let killed = run_and_kill(dir.path(), &r, &run, |run| logged_steps(run).len() >= 3);
    assert!(killed, "the run finished before it could be killed");
    assert!(!ckpt.join("step-000100").exists(), "killed before the first checkpoint");
    // Killed after the step-100 checkpoint, with later steps logged: it resumes at step 101.
    let killed = run_and_kill(dir.path(), &r, &run, |run| {
        ckpt.join("step-000100").is_dir() && logged_steps(run).last().is_some_and(|&s| s >= 105)
    });
    assert!(killed, "the run finished before it could be killed");
    let before = logged_steps(&run);
    assert!(before.iter().filter(|&&s| s > 100).count() >= 5, "{before:?}");

    let o = slmc(dir.path(), &["run", r.to_str().unwrap()]);
    assert!(
        o.status.success() && text(&o).contains("resuming from the checkpoint at step 100"),
        "{}",
        text(&o)
    );
    let resumed = metrics(&run);
    let steps: Vec<u64> = events(&resumed, "step").iter().map(|v| v["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, (1..=400).collect::<Vec<u64>>(), "each step once, in order");
    let evals: Vec<u64> = events(&resumed, "eval").iter().map(|v| v["step"].as_u64().unwrap()).collect();
    assert_eq!(evals, (1..=8).map(|i| i * 50).collect::<Vec<u64>>());

    // The same recipe uninterrupted logs the same losses.
    let clean = tempfile::tempdir().unwrap();
    let r = recipe(clean.path(), "kill", LONG_FINETUNE, "");
    let o = slmc(clean.path(), &["run", r.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let want = metrics(&clean.path().join("runs/kill"));
    for (event, key) in [("step", "loss"), ("eval", "loss"), ("step", "tokens_seen")] {
        let got: Vec<f64> = events(&resumed, event).iter().map(|v| v[key].as_f64().unwrap()).collect();
        let want: Vec<f64> = events(&want, event).iter().map(|v| v[key].as_f64().unwrap()).collect();
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((g - w).abs() <= 1e-4 * w.abs(), "{event} {key} #{i}: {g} vs uninterrupted {w}");
        }
    }
}

const REPORT_STAGES: &str = r#"[[stage]]
kind = "eval"
[[stage]]
kind = "finetune"
steps = 8
batch-size = 4
lr = 3e-3
warmup-steps = 1
log-every = 1
eval-every = 4
eval-sequences = 4
checkpoint-every = 4
[[stage]]
kind = "eval"
[[stage]]
kind = "quantize"
method = "gptq"
bits = 4
group-size = 32
calibration-samples = 8
[[stage]]
kind = "eval"
"#;

/// The rows of `<table class="{class}">`, as cell texts (tags stripped).
fn table_rows(html: &str, class: &str) -> Vec<Vec<String>> {
    let start =
        html.find(&format!("<table class=\"{class}\">")).unwrap_or_else(|| panic!("no {class} table"));
    let body = &html[start..];
    let body = &body[body.find("<tbody>").unwrap()..body.find("</table>").unwrap()];
    body.split("<tr>")
        .skip(1)
        .map(|row| row.split("<td").skip(1).map(|c| strip_tags(&c[c.find('>').unwrap() + 1..])).collect())
        .collect()
}

fn strip_tags(s: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .trim()
        .to_string()
}

/// The figures of the page: their `data-series` attribute and, per polyline, its point count.
fn figures(html: &str) -> Vec<(String, Vec<usize>)> {
    html.split("<figure class=\"chart\" data-series=\"")
        .skip(1)
        .map(|f| {
            let series = strip_tags(&f[..f.find('"').unwrap()]);
            let svg = &f[..f.find("</figure>").unwrap()];
            let polylines = svg
                .split("<polyline")
                .skip(1)
                .map(|p| {
                    let pts = p.split("points=\"").nth(1).unwrap();
                    pts[..pts.find('"').unwrap()].split_whitespace().count()
                })
                .collect();
            (series, polylines)
        })
        .collect()
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn report_of_a_real_run_shows_its_curves_modules_evaluations_artifacts_and_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(
        dir.path(),
        "rep",
        REPORT_STAGES,
        "[export]\nformats = [\"gguf\", \"safetensors\"]\ndtype = \"bfloat16\"\n[gates]\nmax-ppl-increase = 10.0\n",
    );
    let o = slmc(dir.path(), &["run", r.to_str().unwrap(), "--set", "stage.1.lr=2e-3"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let run = dir.path().join("runs/rep");
    assert!(out.contains(&format!("report {}", Path::new("runs/rep/report.html").display())), "{out}");

    // Re-rendered from the run directory alone.
    std::fs::remove_file(run.join("report.html")).unwrap();
    let o = slmc(dir.path(), &["report", run.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("report {}", run.join("report.html").display())
    );
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    for external in ["<script", "<link", "src=", "url(", "@import"] {
        assert!(!html.contains(external), "the report must be self-contained: {external}");
    }

    // Evaluations: every eval stage's perplexity to 3 decimals, and its change against stage 0.
    let ppl =
        |stage: usize| json(&run.join(format!("stages/{stage}-eval/done.json")))["ppl"].as_f64().unwrap();
    let evals = table_rows(&html, "evaluations");
    let row =
        |source: &str| evals.iter().find(|r| r[0] == source).unwrap_or_else(|| panic!("{source}: {evals:?}"));
    assert_eq!(row("stage 0 (eval)")[1], "input model");
    assert_eq!(row("stage 0 (eval)")[5], "reference");
    assert_eq!(row("stage 0 (eval)")[4], format!("{:.3}", ppl(0)));
    assert_eq!(row("stage 2 (eval)")[1], "output of stage 1 (finetune)");
    for stage in [2, 4] {
        let (p, p0) = (ppl(stage), ppl(0));
        assert_eq!(row(&format!("stage {stage} (eval)"))[4], format!("{p:.3}"));
        let delta = format!("{:+.3} ({:+.2} %)", p - p0, (p / p0 - 1.0) * 100.0);
        assert_eq!(row(&format!("stage {stage} (eval)"))[5], delta);
    }
    assert_eq!(row("stage 4 (eval)")[1], "output of stage 3 (quantize)");
    assert_eq!(
        row("before the stages (baseline.json)")[4],
        format!("{:.3}", ppl(0)),
        "same stream as stage 0"
    );

    // Artifacts: size on disk and bits per weight from the files; the final perplexity.
    let artifacts = table_rows(&html, "artifacts");
    let gguf_path = run.join("artifacts/rep-q4_0.gguf");
    let gguf = artifacts.iter().find(|r| r[0] == "rep-q4_0.gguf").unwrap_or_else(|| panic!("{artifacts:?}"));
    let bytes = std::fs::metadata(&gguf_path).unwrap().len() as f64;
    let o = slmc(dir.path(), &["inspect", gguf_path.to_str().unwrap(), "--json"]);
    let info = serde_json::from_slice::<Value>(&o.stdout).unwrap();
    let params = info["parameters"].as_f64().unwrap();
    assert_eq!(gguf[1], "GGUF");
    let q4 = format!("q4_0: Q4_0 ×{}", info["types"]["Q4_0"]["tensors"]);
    assert!(gguf[2].starts_with(&q4) && gguf[2].contains("F32 ×"), "{gguf:?}");
    assert_eq!(gguf[3], format!("{:.2}", bytes / 1e6));
    assert_eq!(gguf[4], format!("{:.2}", 8.0 * bytes / params));
    assert_eq!(gguf[5], format!("{:.3}", ppl(4)));
    let st = artifacts.iter().find(|r| r[0] == "rep-safetensors").unwrap();
    let st_bytes =
        std::fs::metadata(run.join("artifacts/rep-safetensors/model.safetensors")).unwrap().len() as f64;
    assert_eq!((st[1].as_str(), st[2].as_str()), ("safetensors", "BF16"));
    // The same parameter count (from config.json) as the GGUF's tensors hold.
    assert_eq!(st[4], format!("{:.2}", 8.0 * st_bytes / params), "{st:?}");

    // Training: train loss per logged step and validation loss per evaluation, against tokens.
    let lines = metrics(&run);
    // Every line the stages wrote is one of the typed metric lines the report reads.
    let typed = slmc_pipeline::metrics::MetricsLog::new(&run.join("metrics.jsonl")).lines();
    assert_eq!(typed.len(), lines.len(), "{lines:?}");
    let steps = events(&lines, "step");
    assert_eq!(steps.len(), 8);
    let figs = figures(&html);
    let (loss_series, loss_polylines) = &figs[0];
    assert_eq!(loss_series, "stage 1 training loss: 8; stage 1 validation loss: 2");
    assert!(loss_polylines.contains(&8) && loss_polylines.contains(&2), "{loss_polylines:?}");
    assert_eq!(figs[1].0, "stage 1 learning rate: 8");
    assert_eq!(figs[2].0, "stage 1 tokens/s: 8");
    assert!(
        html.contains("training tokens")
            && html.contains("loss (nats/token)")
            && html.contains("stage 1 finetune")
    );
    let first = steps[0]["loss"].as_f64().unwrap();
    let last = steps[7]["loss"].as_f64().unwrap();
    assert!(
        html.contains(&format!("training loss {first:.3} → {last:.3} over 8 steps (1,024 tokens)")),
        "caption"
    );

    // Per-module errors: one series per module kind over the 2 layers; the worst module named.
    let (module_series, module_polylines) = &figs[3];
    let kinds = common::MODULES;
    let want: Vec<String> = kinds.iter().map(|k| format!("{k}: 2")).collect();
    assert_eq!(module_series, &want.join("; "));
    assert!(module_polylines.iter().filter(|&&n| n == 2).count() >= 7);
    let modules = events(&lines, "quantize");
    assert_eq!(modules.len(), 14);
    let worst = modules
        .iter()
        .max_by(|a, b| a["rel_error"].as_f64().unwrap().total_cmp(&b["rel_error"].as_f64().unwrap()))
        .unwrap();
    let table = table_rows(&html, "worst-modules");
    assert_eq!(table.len(), 5);
    assert_eq!(table[0][0], worst["module"].as_str().unwrap());
    assert_eq!(table[0][2], format!("{:.2e}", worst["rel_error"].as_f64().unwrap()));

    // Gates, stages with wall time, manifest.
    let gates = table_rows(&html, "gates");
    assert_eq!(gates.len(), 1);
    assert!(gates[0][0].contains("max-ppl-increase") && gates[0][1] == "pass", "{gates:?}");
    let stages = table_rows(&html, "stages");
    assert_eq!(
        stages.iter().map(|r| r[1].as_str()).collect::<Vec<_>>(),
        ["eval", "finetune", "eval", "quantize", "eval"]
    );
    for s in &stages {
        assert_eq!(s[4], "done");
        assert!(s[3].ends_with(" s") || s[3].contains("min"), "wall time {s:?}");
    }
    let manifest = table_rows(&html, "manifest");
    let field = |k: &str| manifest.iter().find(|r| r[0] == k).map(|r| r[1].clone()).unwrap();
    assert_eq!(field("backend"), "flex");
    assert_eq!(field("seed"), "3");
    assert_eq!(field("--set overrides"), "--set stage.1.lr=2e-3");
    assert_eq!(field("slmc version"), env!("CARGO_PKG_VERSION"));
    let inputs = table_rows(&html, "inputs");
    let m = json(&run.join("manifest.json"));
    assert_eq!(inputs.len(), m["inputs"].as_object().unwrap().len());
    assert!(inputs.iter().all(|r| m["inputs"][&r[0]] == r[1].as_str()), "{inputs:?}");
}

#[test]
fn report_of_a_directory_that_is_not_a_run_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let o = slmc(dir.path(), &["report", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err.trim(),
        format!("error: {} is not an slmc run directory (no manifest.json)", dir.path().display())
    );
}
