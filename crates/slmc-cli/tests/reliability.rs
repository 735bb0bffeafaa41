//! What slmc promises about a user's files and runs (docs/reliability.md), with real processes:
//! `--fresh` deletes only an slmc run directory's own files, one run at a time holds a run
//! directory, a pipeline resumed at any stage boundary writes the same bytes as one that never
//! stopped, a missing or changed stage output is redone, gates compare the same tokens, a damaged
//! training checkpoint is passed over, and neither Ctrl-C nor a kill loses an evaluation or the
//! stage's wall time.

mod common;

use common::{root, slmc, text};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A finetune recipe on the llama_gqa fixture; `body` follows `[data]`.
fn recipe(dir: &Path, name: &str, body: &str) -> PathBuf {
    common::fixture_recipe(dir, name, 5, body)
}

const SHORT_FINETUNE: &str = r#"[[stage]]
kind = "finetune"
steps = 2
batch-size = 2
warmup-steps = 0
"#;

fn run(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let o = slmc(dir, args);
    (o.status.code(), text(&o))
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    v.sort();
    v
}

#[test]
fn fresh_deletes_only_an_slmc_run_directorys_own_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // run-dir = "." in a directory holding the recipe and a user's file: never used, never emptied.
    let r = recipe(dir, "here", SHORT_FINETUNE);
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    for fresh in [false, true] {
        let mut args = vec!["run", r.to_str().unwrap(), "--set", "run-dir=."];
        if fresh {
            args.push("--fresh");
        }
        let (code, out) = run(dir, &args);
        assert_eq!(code, Some(1), "{out}");
        assert!(out.contains("not an slmc run directory") && out.contains("not even with --fresh"), "{out}");
        assert_eq!(names(dir), ["here.toml", "notes.txt"], "nothing added or deleted");
    }
    // --set run-dir=<a user's directory> --fresh: refused, the user's file stays.
    let user = dir.join("user");
    std::fs::create_dir(&user).unwrap();
    std::fs::write(user.join("precious.txt"), "mine").unwrap();
    let r = recipe(dir, "tiny", SHORT_FINETUNE);
    let set = format!("run-dir={}", user.display());
    let (code, out) = run(dir, &["run", r.to_str().unwrap(), "--set", &set, "--fresh"]);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(names(&user), ["precious.txt"]);

    // A real run directory with a user's file in it: a changed recipe is refused with what
    // --fresh would delete; --fresh deletes the run files and keeps the user's file.
    let (code, out) = run(dir, &["run", r.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    let run_dir = dir.join("runs/tiny");
    std::fs::write(run_dir.join("notes.txt"), "mine").unwrap();
    let (code, out) = run(dir, &["run", r.to_str().unwrap(), "--set", "stage.0.lr=2e-3"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("pass --fresh to delete its run files") && out.contains("manifest.json, "), "{out}");
    assert!(out.contains("stages/"), "{out}");
    let (code, out) = run(dir, &["run", r.to_str().unwrap(), "--set", "stage.0.lr=2e-3", "--fresh"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(std::fs::read_to_string(run_dir.join("notes.txt")).unwrap(), "mine");

    // --fresh on the working directory, or on a directory that holds an input, is refused.
    let (code, out) = run(&run_dir, &["run", r.to_str().unwrap(), "--set", "run-dir=.", "--fresh"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("it is the working directory"), "{out}");
    let chained = recipe(dir, "chained", SHORT_FINETUNE);
    let model = run_dir.join("stages/0-finetune/model");
    let sets = [format!("model.path={}", model.display()), format!("run-dir={}", run_dir.display())];
    let (code, out) =
        run(dir, &["run", chained.to_str().unwrap(), "--set", &sets[0], "--set", &sets[1], "--fresh"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("it holds the input"), "{out}");
    assert!(model.join("model.safetensors").is_file(), "the input is still there");
}

/// Starts `slmc run recipe` in `dir`.
fn spawn(dir: &Path, recipe: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_slmc"))
        .current_dir(dir)
        .args(["run", recipe.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits (at most 300 s) until `ready` holds; false when the child exits first.
fn wait_for(child: &mut Child, ready: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if ready() {
            return true;
        }
        assert!(start.elapsed() < Duration::from_secs(300), "never got there");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn lines(run: &Path) -> Vec<Value> {
    common::metric_lines(run)
}

const LONG_FINETUNE: &str = r#"[[stage]]
kind = "finetune"
steps = 3000
batch-size = 2
lr = 1e-3
warmup-steps = 2
log-every = 1
eval-every = 40
eval-sequences = 2
checkpoint-every = 100
"#;

#[test]
fn a_second_run_into_a_locked_directory_is_refused_and_a_killed_holder_does_not_block() {
    let tmp = tempfile::tempdir().unwrap();
    let r = recipe(tmp.path(), "long", LONG_FINETUNE);
    let run_dir = tmp.path().join("runs/long");
    let mut first = spawn(tmp.path(), &r);
    assert!(wait_for(&mut first, || !lines(&run_dir).is_empty()), "the first run ended early");
    // The same recipe, and another recipe into the same directory: both refused, naming the pid.
    for sets in [vec![], vec!["--set", "stage.0.lr=2e-3"]] {
        let mut args = vec!["run", r.to_str().unwrap()];
        args.extend(sets);
        let (code, out) = run(tmp.path(), &args);
        assert_eq!(code, Some(1), "{out}");
        assert!(out.contains(&format!("in use by another slmc run (pid {})", first.id())), "{out}");
    }
    first.kill().unwrap();
    first.wait().unwrap();
    // The killed run's lock does not block: the next run gets as far as the fingerprint check.
    let (code, out) = run(tmp.path(), &["run", r.to_str().unwrap(), "--set", "stage.0.lr=2e-3"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("different recipe or inputs"), "{out}");
}

/// eval → distill → eval → quantize → eval, exporting GGUF and safetensors: the shipped
/// quickstart recipe on a bf16 fixture (as the shipped teacher is: a stage's output saved in the
/// model's dtype would round what the next stage received).
fn quickstart_args() -> Vec<String> {
    let r = root();
    let model = r.join("tests/fixtures/models/llama_tied_bf16").display().to_string();
    let data = r.join("tests/fixtures/eval.txt").display().to_string();
    let mut args = vec!["run".to_string(), r.join("recipes/quickstart.toml").display().to_string()];
    for (k, v) in [
        ("model.path", model.as_str()),
        ("teacher.path", model.as_str()),
        ("data.train", data.as_str()),
        ("data.eval", data.as_str()),
        ("data.seq-len", "32"),
        ("stage.1.steps", "6"),
        ("stage.1.batch-size", "2"),
        ("stage.1.checkpoint-every", "2"),
        ("stage.1.eval-every", "3"),
        ("stage.3.calibration-samples", "8"),
    ] {
        args.extend(["--set".to_string(), format!("{k}={v}")]);
    }
    args
}

/// sha256 of every artifact file, by relative path.
fn artifact_hashes(run_dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut todo = vec![run_dir.join("artifacts")];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().map(Result::unwrap) {
            if e.path().is_dir() {
                todo.push(e.path());
            } else {
                let rel = e.path().strip_prefix(run_dir).unwrap().display().to_string();
                out.push((rel, format!("{:x}", Sha256::digest(std::fs::read(e.path()).unwrap()))));
            }
        }
    }
    out.sort();
    out
}

fn final_ppl(out: &str) -> String {
    out.lines().find(|l| l.starts_with("final perplexity")).unwrap_or_else(|| panic!("{out}")).to_string()
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().map(Result::unwrap) {
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
fn a_pipeline_resumed_at_any_stage_boundary_writes_the_same_bytes() {
    let args = quickstart_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let whole = tempfile::tempdir().unwrap();
    let (code, out) = run(whole.path(), &args);
    assert_eq!(code, Some(0), "{out}");
    let run_dir = whole.path().join("runs/quickstart");
    let (want, want_ppl) = (artifact_hashes(&run_dir), final_ppl(&out));
    assert_eq!(want.iter().filter(|(p, _)| p.ends_with(".gguf")).count(), 1, "{want:?}");

    // Running a finished run again rewrites the same bytes.
    let (code, out) = run(whole.path(), &args);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(artifact_hashes(&run_dir), want);

    // The state a SIGKILL right after stage k-1 leaves: stages k.. and the outputs gone.
    let stages = ["0-eval", "1-distill", "2-eval", "3-quantize", "4-eval"];
    for k in 1..stages.len() {
        let again = tempfile::tempdir().unwrap();
        let copy = again.path().join("runs/quickstart");
        copy_tree(&run_dir, &copy);
        for s in &stages[k..] {
            std::fs::remove_dir_all(copy.join("stages").join(s)).unwrap();
        }
        std::fs::remove_dir_all(copy.join("artifacts")).unwrap();
        std::fs::remove_file(copy.join("outcome.json")).unwrap();
        let (code, out) = run(again.path(), &args);
        assert_eq!(code, Some(0), "{out}");
        assert_eq!(artifact_hashes(&copy), want, "resumed after stage {}", k - 1);
        assert_eq!(final_ppl(&out), want_ppl, "resumed after stage {}", k - 1);
    }

    // A missing stage output is redone (not replaced by the input model): same bytes again.
    let again = tempfile::tempdir().unwrap();
    let copy = again.path().join("runs/quickstart");
    copy_tree(&run_dir, &copy);
    std::fs::remove_dir_all(copy.join("stages/1-distill/model")).unwrap();
    let (code, out) = run(again.path(), &args);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("stage 1 runs again") && out.contains("is missing"), "{out}");
    assert_eq!(artifact_hashes(&copy), want);
    // A changed one too.
    let weights = copy.join("stages/3-quantize/model/model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&weights, bytes).unwrap();
    let (code, out) = run(again.path(), &args);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("stage 3 runs again") && out.contains("changed since the stage finished"), "{out}");
    assert_eq!(artifact_hashes(&copy), want);

    // A real SIGKILL right after the distill stage finished.
    let killed = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_slmc"))
        .current_dir(killed.path())
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let done = killed.path().join("runs/quickstart/stages/1-distill/done.json");
    if wait_for(&mut child, || done.is_file()) {
        child.kill().unwrap();
    }
    child.wait().unwrap();
    let (code, out) = run(killed.path(), &args);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(artifact_hashes(&killed.path().join("runs/quickstart")), want);
}

#[test]
fn a_gate_compares_the_input_and_the_result_over_the_same_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let body = format!(
        "[[stage]]\nkind = \"eval\"\nmax-tokens = 200\n{SHORT_FINETUNE}[[stage]]\nkind = \"eval\"\nmax-tokens = 200\n\
         [gates]\nmax-ppl-increase = 0.5\n"
    );
    let r = recipe(tmp.path(), "gated", &body);
    let (code, out) = run(tmp.path(), &["run", r.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    let tokens = |prefix: &str| -> String {
        let l = out.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("{out}"));
        l.rsplit('(').next().unwrap().to_string()
    };
    assert_eq!(tokens("input model perplexity"), "199 tokens)", "{out}");
    assert_eq!(tokens("final perplexity"), "199 tokens)", "{out}");
    // The baseline is the first eval stage's measurement (same model, same tokens).
    let stage0 = out.lines().find(|l| l.starts_with("stage 0: eval, perplexity")).unwrap();
    let input = out.lines().find(|l| l.starts_with("input model perplexity")).unwrap();
    assert_eq!(stage0.split_whitespace().nth(4), input.split_whitespace().nth(3), "{out}");
}

#[test]
fn a_damaged_checkpoint_is_passed_over_for_the_one_before_it() {
    let tmp = tempfile::tempdir().unwrap();
    let body = "[[stage]]\nkind = \"finetune\"\nsteps = 6\nbatch-size = 2\nwarmup-steps = 0\ncheckpoint-every = 2\n\
                [[stage]]\nkind = \"eval\"\n";
    let r = recipe(tmp.path(), "ckpt", body);
    let (code, out) = run(tmp.path(), &["run", r.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    let want = final_ppl(&out);
    let stage = tmp.path().join("runs/ckpt/stages/0-finetune");
    // Interrupted after step 6's checkpoint was written, which then got damaged.
    for gone in ["done.json", "clock.json"] {
        let _ = std::fs::remove_file(stage.join(gone));
    }
    std::fs::remove_dir_all(stage.join("model")).unwrap();
    std::fs::remove_dir_all(tmp.path().join("runs/ckpt/stages/1-eval")).unwrap();
    let weights = stage.join("checkpoints/step-000006/model.safetensors");
    let len = std::fs::metadata(&weights).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&weights).unwrap().set_len(len - 100).unwrap();
    let (code, out) = run(tmp.path(), &["run", r.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("step-000006 is damaged (model.safetensors does not match its checksum)"), "{out}");
    assert!(out.contains("resuming from the checkpoint at step 4"), "{out}");
    assert_eq!(final_ppl(&out), want, "steps 5-6 redone from step 4 give the same model");
}

#[test]
fn ctrl_c_and_kills_lose_no_evaluation_and_no_wall_time() {
    let tmp = tempfile::tempdir().unwrap();
    let body = LONG_FINETUNE.replace("eval-every = 40", "eval-every = 5");
    let r = recipe(tmp.path(), "stop", &body);
    let run_dir = tmp.path().join("runs/stop");
    let evals = |run: &Path| lines(run).iter().filter(|v| v["event"] == "eval").count();
    let started = Instant::now();
    // Ctrl-C (SIGINT) right after an evaluation's line: the run checkpoints and stops.
    let mut child = spawn(tmp.path(), &r);
    assert!(wait_for(&mut child, || evals(&run_dir) >= 3), "ended early");
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    child.wait().unwrap();
    // Then a SIGKILL late in the stage (after its step-2500 checkpoint).
    let ckpt = run_dir.join("stages/0-finetune/checkpoints/step-002500");
    let mut child = spawn(tmp.path(), &r);
    assert!(wait_for(&mut child, || ckpt.is_dir()), "the run ended before the kill");
    child.kill().unwrap();
    child.wait().unwrap();
    let before_kill = started.elapsed().as_secs_f64();
    let (code, out) = run(tmp.path(), &["run", r.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    let steps: Vec<u64> = lines(&run_dir)
        .iter()
        .filter(|v| v["event"] == "step")
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=3000).collect::<Vec<u64>>(), "every step once");
    let eval_steps: Vec<u64> = lines(&run_dir)
        .iter()
        .filter(|v| v["event"] == "eval")
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    assert_eq!(eval_steps, (1..=600).map(|i| i * 5).collect::<Vec<u64>>(), "every evaluation once");
    let done: Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("stages/0-finetune/done.json")).unwrap())
            .unwrap();
    // The interrupted runs' time counts: the clock is saved every second, so each interruption
    // loses at most that (and process start-up is not stage time); the resumed run alone did
    // the last sixth of the steps.
    let wall = done["wall_seconds"].as_f64().unwrap();
    assert!(wall > before_kill - 2.5, "wall {wall} s, {before_kill} s before the resumed run");
}
