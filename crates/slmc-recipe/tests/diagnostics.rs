//! Snapshot tests of recipe diagnostics: what a user sees for common mistakes. Set
//! SLMC_UPDATE_SNAPSHOTS=1 to rewrite the snapshots after a deliberate change.

use slmc_recipe::{MagnitudeScope, MaskAlgorithm, PruneMethod, PruneParams, StageKind, load_str};
use std::path::Path;

fn render(text: &str, sets: &[&str]) -> String {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    match load_str(text, "bad.toml", &sets) {
        Ok(_) => "ok".into(),
        Err((sources, diags)) => sources.render_all(&diags),
    }
}

fn snapshot(name: &str, got: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots").join(format!("{name}.txt"));
    if std::env::var_os("SLMC_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(got, want, "snapshot {name} changed; rerun with SLMC_UPDATE_SNAPSHOTS=1 if intended");
}

const MANY_MISTAKES: &str = r#"name = "demo"

[model]
path = "data/models/teacher"

[data]
train = { path = "data/corpus/train.parquet", text_colum = "text" }
seq-len = 128

[[stage]]
kind = "finetune"
lerning-rate = 3e-4
steps = "200"
schedule = "cosin"

[[stage]]
kind = "distil"

[gates]
max-ppl = 40
"#;

#[test]
fn every_problem_is_reported_at_once_with_line_col_and_suggestions() {
    let out = render(MANY_MISTAKES, &[]);
    assert!(out.contains("bad.toml:7:47"), "{out}");
    assert!(out.contains("did you mean `text-column`?"), "{out}");
    assert!(out.contains("did you mean `cosine`?"), "{out}");
    assert!(out.contains("error: bad.toml has 5 problems"), "{out}");
    snapshot("many_mistakes", &out);
}

#[test]
fn set_overrides_are_validated_like_the_file() {
    let ok =
        "name = \"demo\"\n[model]\npath = \"m\"\n[data]\ntrain = \"t.txt\"\n[[stage]]\nkind = \"finetune\"\n";
    let out = render(ok, &["stage.0.lr=fast", "stage.0.stepz=3", "data.seq-len=1"]);
    assert!(out.contains("--> --set stage.0.lr=fast"), "{out}");
    snapshot("set_overrides", &out);
    // A valid override takes effect.
    let r = load_str(ok, "ok.toml", &["stage.0.lr=2e-4".into(), "seed=7".into()]).unwrap();
    let StageKind::Finetune(t) = &r.stages[0].kind else { panic!() };
    assert_eq!((t.lr, r.seed), (2e-4, 7));
}

#[test]
fn toml_syntax_errors_point_at_the_spot() {
    let out = render("name = \"demo\"\n[model\npath = 1\n", &[]);
    assert!(out.contains("bad.toml:2:"), "{out}");
    snapshot("syntax_error", &out);
}

#[test]
fn model_needs_path_or_a_valid_config() {
    let text = "name = \"x\"\n[model]\ntokenizer = \"t.json\"\nconfig = { model_type = \"gpt2\", hidden_size = 8 }\n";
    let out = render(text, &[]);
    assert!(out.contains("unsupported model_type `gpt2`"), "{out}");
    let out = render("name = \"x\"\n[model]\n", &[]);
    assert!(out.contains("needs `path`"), "{out}");
}

const QUANTIZE_MISTAKES: &str = r#"name = "q"
[model]
path = "data/models/teacher"
[data]
eval = "val.txt"
[[stage]]
kind = "quantize"
method = "gptq"
bits = 5
group-size = 100
act-ordr = true
targets = ["re:(unclosed"]
[export]
formats = ["gguf", "gptqq"]
"#;

#[test]
fn quantize_stage_mistakes_are_reported_with_their_positions() {
    let out = render(QUANTIZE_MISTAKES, &[]);
    assert!(out.contains("`bits` in stage 0 ([[stage]] #1) must be 2, 3, 4 or 8, got 5"), "{out}");
    assert!(out.contains("must be -1 (per channel), 32, 64 or 128"), "{out}");
    assert!(out.contains("did you mean `act-order`?"), "{out}");
    assert!(out.contains("invalid regular expression `(unclosed`"), "{out}");
    assert!(out.contains("did you mean `gptq`?"), "{out}");
    assert!(out.contains("GPTQ draws its calibration windows from `train`"), "{out}");
    snapshot("quantize_mistakes", &out);
}

const PRUNE_MISTAKES: &str = r#"name = "p"
[model]
path = "data/models/teacher"
[teacher]
path = "data/models/teacher"
[data]
eval = "val.txt"
[[stage]]
kind = "prune"
method = "sparse-gpt"
[[stage]]
kind = "prune"
method = "wanda"
sparsity = 1.2
pattern = "2:5"
[[stage]]
kind = "prune"
method = "width"
keep = 0.5
hidden-size = 128
sparsity = 0.5
[[stage]]
kind = "distill"
init = "teacher-layers"
[[stage]]
kind = "prune"
method = "magnitude"
pattern = "2:4"
"#;

#[test]
fn prune_stage_mistakes_are_reported_with_their_positions() {
    let out = render(PRUNE_MISTAKES, &[]);
    assert!(out.contains("did you mean `sparsegpt`?"), "{out}");
    assert!(out.contains("sets both `sparsity` and `pattern`"), "{out}");
    assert!(out.contains("needs `keep` (a fraction of parameters) or target sizes"), "{out}");
    assert!(out.contains("unknown key `sparsity` in stage 2"), "{out}");
    assert!(out.contains("draws its calibration windows from `train`"), "{out}");
    assert!(out.contains("at most one unstructured prune stage"), "{out}");
    assert!(out.contains("builds a new student, dropping the pruned model of stage 1"), "{out}");
    snapshot("prune_mistakes", &out);
}

#[test]
fn prune_methods_take_their_keys() {
    let base =
        "name = \"p\"\n[model]\npath = \"m\"\n[data]\ntrain = \"t.txt\"\n[[stage]]\nkind = \"prune\"\n";
    let ok = |extra: &str| match load_str(&format!("{base}{extra}"), "r.toml", &[]) {
        Ok(r) => r.stages[0].kind.clone(),
        Err((s, d)) => panic!("{}", s.render_all(&d)),
    };
    let StageKind::Prune(p) = ok("method = \"sparsegpt\"\nsparsity = 0.6\nowl = { lambda = 0.05 }\n") else {
        panic!()
    };
    assert!(p.needs_data() && p.is_unstructured());
    // An N:M pattern and OWL's per-layer ratios cannot both hold.
    assert!(
        load_str(&format!("{base}method = \"wanda\"\npattern = \"2:4\"\nowl = {{}}\n"), "r.toml", &[])
            .is_err()
    );
    let StageKind::Prune(p) = ok("method = \"magnitude\"\nsparsity = 0.5\n") else { panic!() };
    assert!(!p.needs_data(), "magnitude pruning needs no calibration data");
    let algorithm = |p: &PruneParams| match p.method {
        PruneMethod::Unstructured { algorithm, .. } => algorithm,
        _ => panic!("{p:?}"),
    };
    assert_eq!(algorithm(&p), MaskAlgorithm::Magnitude(MagnitudeScope::Row), "per row unless told");
    let StageKind::Prune(p) = ok("method = \"magnitude\"\nsparsity = 0.5\nscope = \"layer\"\n") else {
        panic!()
    };
    assert_eq!(algorithm(&p), MaskAlgorithm::Magnitude(MagnitudeScope::Layer));
    let err = |extra: &str| match load_str(&format!("{base}{extra}"), "r.toml", &[]) {
        Ok(r) => panic!("accepted: {:?}", r.stages[0].kind),
        Err((s, d)) => s.render_all(&d),
    };
    let e = err("method = \"magnitude\"\npattern = \"2:4\"\nscope = \"layer\"\n");
    assert!(e.contains("a `pattern` is per row"), "{e}");
    assert!(
        err("method = \"magnitude\"\nsparsity = 0.5\nscope = \"tensor\"\n")
            .contains("must be one of `row`, `layer`")
    );
    assert!(err("method = \"wanda\"\nsparsity = 0.5\nscope = \"layer\"\n").contains("unknown key `scope`"));
    let StageKind::Prune(p) = ok("method = \"depth\"\nnum-hidden-layers = 4\nimportance = \"magnitude\"\n")
    else {
        panic!()
    };
    assert!(!p.needs_data() && !p.is_unstructured());
    assert_eq!(
        p.shape_targets(),
        Some(slmc_config::prune_shape::Targets::Sizes(slmc_config::prune_shape::TargetSizes {
            num_hidden_layers: Some(4),
            ..Default::default()
        }))
    );
    assert!(load_str(&format!("{base}method = \"depth\"\n"), "r.toml", &[]).is_err(), "depth needs a size");
}

#[test]
fn data_row_options_are_checked() {
    let bad = r#"name = "demo"
[model]
path = "m"
[data]
train = "chat.jsonl"
format = "chatml"
train-on = "completion"
[[stage]]
kind = "finetune"
"#;
    let out = render(bad, &[]);
    assert!(out.contains("did you mean `chat`?") && out.contains("did you mean `completions`?"), "{out}");
    let text = "name = \"demo\"\n[model]\npath = \"m\"\n[data]\ntrain = \"t.txt\"\nformat = \"text\"\noverlong = \"drop\"\n[[stage]]\nkind = \"finetune\"\n";
    let out = render(text, &[]);
    assert!(out.contains("bad.toml:7:12") && out.contains("not to `format = \"text\"`"), "{out}");
    let gptq = "name = \"demo\"\n[model]\npath = \"m\"\n[data]\ntrain = \"c.jsonl\"\nformat = \"chat\"\n[[stage]]\nkind = \"quantize\"\nmethod = \"gptq\"\n";
    let out = render(gptq, &[]);
    assert!(out.contains("draws calibration windows from packed text"), "{out}");
    let ok = "name = \"demo\"\n[model]\npath = \"m\"\n[data]\ntrain = \"c.jsonl\"\nformat = \"prompt-completion\"\ntrain-on = \"all\"\noverlong = \"drop\"\n[[stage]]\nkind = \"finetune\"\n";
    assert_eq!(render(ok, &[]), "ok");
    snapshot("data_mistakes", &format!("{}\n{}", render(bad, &[]), render(text, &[])));
}

#[test]
fn memory_options_apply_to_finetune_and_distill_stages() {
    let base = "name = \"demo\"\n[model]\npath = \"m\"\n[teacher]\npath = \"t\"\n[data]\ntrain = \"t.txt\"\n\
                [[stage]]\nkind = \"distill\"\n[[stage]]\nkind = \"finetune\"\n";
    let sets = ["stage.0.activation-checkpointing=true", "stage.0.loss-chunk=256", "stage.1.loss-chunk=0"];
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let r = load_str(base, "ok.toml", &sets).map_err(|(s, d)| s.render_all(&d)).unwrap();
    let StageKind::Distill(d) = &r.stages[0].kind else { panic!("distill") };
    assert!(d.train.activation_checkpointing);
    assert_eq!(d.train.loss_chunk, 256);
    let StageKind::Finetune(f) = &r.stages[1].kind else { panic!("finetune") };
    assert!(!f.activation_checkpointing);
    assert_eq!(f.loss_chunk, 0);
    // Defaults: no checkpointing, chunks of DEFAULT_LOSS_CHUNK positions.
    let r = load_str(base, "ok.toml", &[]).map_err(|(s, d)| s.render_all(&d)).unwrap();
    let StageKind::Distill(d) = &r.stages[0].kind else { panic!("distill") };
    assert!(!d.train.activation_checkpointing);
    assert_eq!(d.train.loss_chunk, slmc_recipe::schema::DEFAULT_LOSS_CHUNK);
    // A misspelt key gets a suggestion; a wrong type is an error at its position.
    let out = render(base, &["stage.0.loss-chunks=256"]);
    assert!(out.contains("did you mean `loss-chunk`?"), "{out}");
    let out = render(base, &["stage.1.loss-chunk=\"big\""]);
    assert!(out.contains("loss-chunk"), "{out}");
}
