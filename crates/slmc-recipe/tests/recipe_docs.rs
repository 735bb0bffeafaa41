//! docs/recipes.md documents every key a recipe table accepts. The keys are not listed by hand:
//! for each table (and each stage kind / method, whose keys differ) a small recipe gets an unknown
//! key, and validation's "expected one of `a`, `b`, …" label names every key that table read
//! (`TableReader::finish`). Each of them must appear in docs/recipes.md as `` `key` ``.

use slmc_recipe::load_str;
use std::collections::BTreeSet;
use std::path::Path;

/// The key every case adds to the table under test.
const UNKNOWN: &str = "zzz_unknown = 1";

/// The tables every case starts from: a model, a teacher (distill stages need one) and text data
/// with `train` (training and calibration stages need it) and `eval`.
const HEAD: &str = r#"name = "r"
seed = 0

[model]
path = "m"

[teacher]
path = "t"

[data]
train = "train.txt"
eval = "val.txt"
seq-len = 64
"#;

/// A recipe of [`HEAD`] and one stage table holding `body` and the unknown key.
fn stage(body: &str) -> String {
    format!("{HEAD}\n[[stage]]\n{body}\n{UNKNOWN}\n")
}

/// Every combination whose keys are harvested: a name and a recipe with the unknown key in the
/// table under test.
fn cases() -> Vec<(&'static str, String)> {
    let mut cases = vec![
        ("top level", format!("{UNKNOWN}\n{HEAD}")),
        ("[model]", HEAD.replacen("path = \"m\"", &format!("path = \"m\"\n{UNKNOWN}"), 1)),
        ("[teacher]", HEAD.replacen("path = \"t\"", &format!("path = \"t\"\n{UNKNOWN}"), 1)),
        ("[data]", format!("{HEAD}{UNKNOWN}\n")),
        (
            "[data] source table",
            HEAD.replacen(
                "train = \"train.txt\"",
                &format!("train = {{ path = \"train.txt\", {UNKNOWN} }}"),
                1,
            ),
        ),
        ("[export]", format!("{HEAD}\n[export]\nformats = [\"safetensors\"]\n{UNKNOWN}\n")),
        ("[gates]", format!("{HEAD}\n[[stage]]\nkind = \"eval\"\n\n[gates]\nmax-ppl = 100\n{UNKNOWN}\n")),
        ("eval", stage("kind = \"eval\"")),
        ("quantize gptq", stage("kind = \"quantize\"\nmethod = \"gptq\"")),
        ("quantize rtn", stage("kind = \"quantize\"\nmethod = \"rtn\"")),
        ("prune magnitude", stage("kind = \"prune\"\nmethod = \"magnitude\"\nsparsity = 0.5")),
        ("prune wanda", stage("kind = \"prune\"\nmethod = \"wanda\"\nsparsity = 0.5")),
        ("prune sparsegpt", stage("kind = \"prune\"\nmethod = \"sparsegpt\"\npattern = \"2:4\"")),
        ("prune width", stage("kind = \"prune\"\nmethod = \"width\"\nkeep = 0.5")),
        ("prune depth", stage("kind = \"prune\"\nmethod = \"depth\"\nnum-hidden-layers = 1")),
        (
            "prune owl table",
            format!(
                "{HEAD}\n[[stage]]\nkind = \"prune\"\nmethod = \"wanda\"\nsparsity = 0.5\nowl = {{ lambda = 0.08, m = 5, {UNKNOWN} }}\n"
            ),
        ),
    ];
    for method in ["full", "lora", "dora", "qlora"] {
        let name = match method {
            "full" => "finetune full",
            "lora" => "finetune lora",
            "dora" => "finetune dora",
            _ => "finetune qlora",
        };
        cases.push((name, stage(&format!("kind = \"finetune\"\nmethod = \"{method}\""))));
    }
    let inits = [
        ("distill init current", "init = \"current\""),
        ("distill init config", "init = \"config\"\nstudent-config = { num_hidden_layers = 1 }"),
        ("distill init teacher-layers", "init = \"teacher-layers\"\nlayers = [0]"),
        ("distill init path", "init = \"path\"\nstudent-path = \"s\""),
        ("distill lora", "init = \"teacher-layers\"\nmethod = \"lora\""),
    ];
    for (name, body) in inits {
        cases.push((name, stage(&format!("kind = \"distill\"\n{body}"))));
    }
    cases
}

/// The keys the table under test accepts, from the unknown-key diagnostic's label.
fn accepted_keys(name: &str, text: &str) -> Vec<String> {
    let diags = match load_str(text, "r.toml", &[]) {
        Ok(_) => panic!("{name}: the recipe with `zzz_unknown` validated:\n{text}"),
        Err((_, diags)) => diags,
    };
    let unknown: Vec<_> =
        diags.0.iter().filter(|d| d.message.starts_with("unknown key `zzz_unknown`")).collect();
    let [d] = unknown.as_slice() else {
        let all: Vec<&str> = diags.0.iter().map(|d| d.message.as_str()).collect();
        panic!("{name}: expected one unknown-key diagnostic for `zzz_unknown`, got {all:?}\n{text}");
    };
    let label = d.label.as_deref().unwrap_or("");
    let Some(list) = label.strip_prefix("expected one of ") else {
        panic!("{name}: the label is not a key list: {label:?} ({})", d.message);
    };
    // `a`, `b`, `c`: the keys are the odd pieces between backticks.
    list.split('`').skip(1).step_by(2).map(str::to_string).collect()
}

#[test]
fn every_key_a_recipe_table_accepts_is_documented_in_docs_recipes_md() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/recipes.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut all = BTreeSet::new();
    let mut counts = Vec::new();
    let mut missing = Vec::new();
    for (name, text) in cases() {
        let keys = accepted_keys(name, &text);
        assert!(!keys.is_empty(), "{name}: no keys harvested");
        for k in &keys {
            if !doc.contains(&format!("`{k}`")) {
                missing.push(format!("{name}: `{k}`"));
            }
        }
        counts.push(format!("{name}: {}", keys.len()));
        all.extend(keys);
    }
    assert!(
        missing.is_empty(),
        "keys missing from docs/recipes.md:\n{}\n(harvested: {counts:#?})",
        missing.join("\n")
    );
    // Not vacuous: the harvest reached every table and the keys that tell the methods apart.
    assert_eq!(counts.len(), 25, "{counts:#?}");
    assert!(all.len() >= 90, "only {} distinct keys harvested: {all:?}", all.len());
    for key in [
        "name",
        "memory-budget",
        "run-dir",
        "adapter",
        "text-column",
        "eval-fraction",
        "train-on",
        "gguf-type",
        "requantize",
        "max-ppl-increase",
        "max-tokens",
        "act-order",
        "true-sequential",
        "calibration-len",
        "scope",
        "owl",
        "lambda",
        "num-key-value-heads",
        "num-hidden-layers",
        "importance",
        "warmup-steps",
        "loss-chunk",
        "precision",
        "modules-to-save",
        "rslora",
        "student-config",
        "layer-map",
        "teacher-cache",
        "lora-alpha",
        "lora-init",
    ] {
        assert!(all.contains(key), "`{key}` was not harvested: {all:?}");
    }
}

#[test]
fn keys_differ_by_kind_and_method() {
    let of = |name: &str| {
        let (_, text) = cases().into_iter().find(|(n, _)| *n == name).unwrap();
        accepted_keys(name, &text)
    };
    let has = |name: &str, key: &str| of(name).iter().any(|k| k == key);
    assert!(has("prune magnitude", "scope") && !has("prune wanda", "scope"));
    assert!(has("prune width", "hidden-size") && !has("prune depth", "hidden-size"));
    assert!(has("prune depth", "num-hidden-layers") && !has("prune width", "num-hidden-layers"));
    assert!(has("finetune lora", "alpha") && !has("finetune lora", "lora-alpha"));
    assert!(has("distill lora", "lora-alpha") && has("distill lora", "alpha"));
    assert!(has("prune owl table", "lambda") && of("prune owl table").len() == 2);
    assert!(!has("eval", "steps") && has("eval", "ctx"));
}
