//! What the end-to-end tests share: the repository root, running the built `slmc` in a
//! directory, and its combined output.

#![allow(dead_code)] // each test binary uses a part of it

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root (recipes and fixture paths are relative to it).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Runs the built `slmc` with `args` in `dir`.
pub fn slmc(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slmc"))
        .current_dir(dir)
        .args(args)
        .env("COLUMNS", "100")
        .output()
        .unwrap()
}

/// stdout and stderr, concatenated.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Writes `dir/<name>.toml`: a recipe on the llama_gqa fixture (train and eval on the fixture
/// text, seq-len 32) with `seed`; `body` (stages, `[export]`, `[gates]`) follows `[data]`.
pub fn fixture_recipe(dir: &Path, name: &str, seed: u64, body: &str) -> PathBuf {
    let r = root();
    let text = format!(
        r#"name = "{name}"
seed = {seed}
[model]
path = "{model}"
[data]
train = "{data}"
eval = "{data}"
seq-len = 32
{body}"#,
        model = r.join("tests/fixtures/models/llama_gqa").display(),
        data = r.join("tests/fixtures/eval.txt").display()
    );
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

/// The lines of a run directory's `metrics.jsonl` that parse.
pub fn metric_lines(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The linear modules of every decoder layer of the llama fixtures.
pub const MODULES: [&str; 7] = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];
