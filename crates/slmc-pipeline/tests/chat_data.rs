//! The shipped teacher's chat template as slmc renders it, against transformers' renderings
//! (tests/fixtures/chat, made by scripts/make_chat_fixture.py), and the loss mask it yields.

use slmc_data::masked::{Encoded, TrainOn, mask_row};
use slmc_data::{ChatRow, ChatTemplate};
use slmc_model::Tokenizer;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture() -> serde_json::Value {
    let text = std::fs::read_to_string(root().join("tests/fixtures/chat/teacher_chat.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn teacher() -> (ChatTemplate, Tokenizer) {
    let dir = root().join("data/models/teacher");
    (
        ChatTemplate::from_dir(&dir).unwrap().expect("the teacher ships a chat template"),
        Tokenizer::from_dir(&dir, None).unwrap(),
    )
}

fn messages(case: &serde_json::Value) -> Vec<serde_json::Value> {
    case["messages"].as_array().unwrap().clone()
}

fn ids_of(case: &serde_json::Value) -> Vec<u32> {
    case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect()
}

#[test]
fn template_renders_what_transformers_renders() {
    let (template, tok) = teacher();
    let f = fixture();
    let cases = f["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 6);
    for case in cases {
        let generation = case["add_generation_prompt"].as_bool().unwrap();
        let text = template.render(&messages(case), generation).unwrap();
        assert_eq!(text, case["text"].as_str().unwrap());
        assert_eq!(tok.encode(&text, false).unwrap(), ids_of(case), "{text:?}");
    }
    let e = template.render(&[serde_json::json!({"role": "tool", "content": "x"})], false).unwrap_err();
    assert_eq!(e, f["tool_role_error"].as_str().unwrap());
}

#[test]
fn loss_mask_counts_the_assistant_tokens() {
    let (template, tok) = teacher();
    let eos = tok.eos_ids[0];
    let mut encode = |text: &str, special: bool| -> Result<Encoded, String> {
        let (ids, offsets) = tok.encode_with_offsets(text, special).map_err(|e| e.to_string())?;
        Ok(Encoded { ids, offsets })
    };
    let mut checked = 0;
    for case in fixture()["cases"].as_array().unwrap() {
        if case["add_generation_prompt"].as_bool().unwrap() {
            continue;
        }
        let row = ChatRow::Messages(messages(case));
        let (ids, trained) = mask_row(&row, Some(&template), TrainOn::Completions, eos, &mut encode).unwrap();
        assert_eq!(ids, ids_of(case));
        // The number of trained tokens equals the assistant turns tokenized on their own
        // (transformers' count, in the fixture).
        let n = trained.iter().filter(|&&t| t).count();
        assert_eq!(n as u64, case["assistant_tokens"].as_u64().unwrap(), "{}", case["text"]);
        // And they are exactly those turns: each stripped content followed by </s>.
        let kept: Vec<u32> = ids.iter().zip(&trained).filter(|p| *p.1).map(|p| *p.0).collect();
        let want: String = messages(case)
            .iter()
            .filter(|m| m["role"] == "assistant")
            .map(|m| format!("{}</s>", m["content"].as_str().unwrap().trim()))
            .collect();
        assert_eq!(tok.decode(&kept, false).unwrap(), want);
        // train-on = "all" trains every token.
        let (_, all) = mask_row(&row, Some(&template), TrainOn::All, eos, &mut encode).unwrap();
        assert!(all.iter().all(|&t| t));
        checked += 1;
    }
    // Two conversations with assistant turns, one without (nothing trains: the row is dropped).
    assert_eq!(checked, 3);
    // The first case by hand: "Hamlet" is two tokens (1341 1160), then </s>.
    assert_eq!(fixture()["cases"][0]["assistant_tokens"], 3);
}
