//! An instruction-tuning recipe end to end on the shipped teacher: chat rows rendered with its
//! template, overlong rows dropped, counts in `metrics.jsonl`, training on assistant tokens only,
//! eval over the assistant tokens of the held-out rows.

mod common;

use common::{root, slmc, text};
use slmc_data::ChatTemplate;
use slmc_model::Tokenizer;

#[test]
fn chat_recipe_masks_drops_and_reports_counts() {
    let r = root();
    let dir = tempfile::tempdir().unwrap();
    let train: String = std::fs::read_to_string(r.join("data/chat/train.jsonl"))
        .unwrap()
        .lines()
        .take(24)
        .map(|l| format!("{l}\n"))
        .collect();
    let eval: String = std::fs::read_to_string(r.join("data/chat/val.jsonl"))
        .unwrap()
        .lines()
        .take(6)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.path().join("train.jsonl"), &train).unwrap();
    std::fs::write(dir.path().join("val.jsonl"), &eval).unwrap();
    let seq_len = 80;
    let recipe = dir.path().join("chat.toml");
    std::fs::write(
        &recipe,
        format!(
            r#"name = "chat"
run-dir = "{run}"
[model]
path = "{model}"
[data]
train = "{train}"
eval = "{eval}"
overlong = "drop"
seq-len = {seq_len}
[[stage]]
kind = "eval"
[[stage]]
kind = "finetune"
steps = 3
batch-size = 2
lr = 1e-3
log-every = 1
[[stage]]
kind = "eval"
"#,
            run = dir.path().join("run").display(),
            model = r.join("data/models/teacher").display(),
            train = dir.path().join("train.jsonl").display(),
            eval = dir.path().join("val.jsonl").display(),
        ),
    )
    .unwrap();
    let o = slmc(dir.path(), &["run", recipe.to_str().unwrap()]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");

    // Independent count of the rows that do not fit: the whole conversation's tokens.
    let teacher = r.join("data/models/teacher");
    let template = ChatTemplate::from_dir(&teacher).unwrap().unwrap();
    let tok = Tokenizer::from_dir(&teacher, None).unwrap();
    let lengths: Vec<usize> = train
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let text = template.render(v["messages"].as_array().unwrap(), false).unwrap();
            tok.encode(&text, false).unwrap().len()
        })
        .collect();
    let too_long = lengths.iter().filter(|&&n| n > seq_len + 1).count();
    assert!(too_long > 0 && too_long < lengths.len(), "{lengths:?}");
    let metrics = std::fs::read_to_string(dir.path().join("run/metrics.jsonl")).unwrap();
    let data: serde_json::Value = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["event"] == "data" && v["split"] == "train")
        .expect("a data line for the train split");
    assert_eq!(data["format"], "chat");
    assert_eq!(data["rows"], 24);
    assert_eq!(data["dropped_overlong"], too_long);
    assert_eq!(data["kept"], 24 - too_long);
    assert_eq!(data["truncated"], 0);
    let kept_tokens: usize = lengths.iter().filter(|&&n| n <= seq_len + 1).sum();
    assert_eq!(data["tokens"], kept_tokens);
    assert!(out.contains(&format!("train: 24 rows → {} sequences", 24 - too_long)), "{out}");
    // Eval stages score the trained (assistant) tokens of the held-out rows, before and after.
    let eval_line = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["event"] == "data" && v["split"] == "eval")
        .unwrap();
    let want = format!("over {} tokens", eval_line["trained_tokens"]);
    assert_eq!(out.matches(&want).count(), 2, "{out}");
}
