//! SentencePiece vocabularies: slmc's `tokenizer.model` reader against the tokens, scores and
//! types llama.cpp's converter derives with sentencepiece itself (tests/fixtures/gguf/spm/, from
//! scripts/make_gguf_fixtures.py), and the same model read from a `tokenizer.json` alone.

use serde_json::{Value, json};
use slmc_gguf::vocab::token_type;
use slmc_gguf::{GgufVocab, PreSource, VocabSources};
use std::path::Path;

fn spm_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/gguf/spm")
}

#[test]
fn sentencepiece_vocab_matches_the_converter() {
    let model = std::fs::read(spm_dir().join("tokenizer.model")).unwrap();
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(spm_dir().join("spm_vocab.json")).unwrap()).unwrap();
    let n = reference["tokens"].as_array().unwrap().len();
    // A Llama-2 style tokenizer.json: BPE with byte fallback (its vocab is not used for SPM).
    let tok = json!({"added_tokens": [], "model": {"type": "BPE", "byte_fallback": true, "vocab": {}, "merges": []}});
    let tc = json!({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                    "added_tokens_decoder": {"402": {"content": "<|im_end|>", "special": true}}});
    let src = VocabSources {
        dir: &spm_dir(),
        tokenizer_json: &tok,
        tokenizer_config: Some(&tc),
        config_json: None,
        chat_template_jinja: Some("{{ messages }}"),
        spm_model: Some(&model),
        added_tokens_json: Some(&json!({"<extra>": 401})),
        n_vocab: n + 3,
        chktxt_hash: None,
    };
    let v = GgufVocab::from_sources(&src).unwrap();
    assert_eq!((v.model, v.pre.as_str(), &v.pre_source), ("llama", "default", &PreSource::SentencePiece));
    let scores = v.scores.as_ref().unwrap();
    for i in 0..n {
        assert_eq!(v.tokens[i], reference["tokens"][i].as_str().unwrap(), "token {i}");
        assert_eq!(scores[i], reference["scores"][i].as_f64().unwrap() as f32, "score {i}");
        assert_eq!(i64::from(v.token_types[i]), reference["types"][i].as_i64().unwrap(), "type {i}");
    }
    // Padding, added_tokens.json and added_tokens_decoder entries, as the converter fills them.
    assert_eq!(
        (v.tokens[n].as_str(), scores[n], v.token_types[n]),
        ("[PAD400]", -10000.0, token_type::UNUSED)
    );
    assert_eq!(
        (v.tokens[n + 1].as_str(), scores[n + 1], v.token_types[n + 1]),
        ("<extra>", -1000.0, token_type::USER_DEFINED)
    );
    assert_eq!(
        (v.tokens[n + 2].as_str(), scores[n + 2], v.token_types[n + 2]),
        ("<|im_end|>", -1000.0, token_type::CONTROL)
    );
    // Special ids resolved by name (sentencepiece's defaults: <unk> 0, <s> 1, </s> 2 are pieces, not
    // added tokens, so they are not found in tokenizer.json's added_tokens).
    assert!(v.special_ids.is_empty(), "{:?}", v.special_ids);
    assert_eq!(v.chat_templates, vec![(String::new(), "{{ messages }}".to_string())]);
    assert!(v.token_types.contains(&token_type::BYTE));
    assert!(v.token_types.contains(&token_type::CONTROL));
}

#[test]
fn sentencepiece_bpe_from_tokenizer_json_alone_keeps_the_pieces_and_their_priority() {
    // gemma_geglu's tokenizer.json is the same SentencePiece model converted by transformers 5
    // (which saves no tokenizer.model). Pieces and types must be the converter's; scores come from
    // merge ranks, and must order every merged piece as sentencepiece's own scores do.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models/gemma_geglu");
    let read =
        |f: &str| -> Value { serde_json::from_str(&std::fs::read_to_string(dir.join(f)).unwrap()).unwrap() };
    let (tok, tc) = (read("tokenizer.json"), read("tokenizer_config.json"));
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(spm_dir().join("spm_vocab.json")).unwrap()).unwrap();
    let n = reference["tokens"].as_array().unwrap().len();
    let n_vocab = read("config.json")["vocab_size"].as_u64().unwrap() as usize;
    let src = VocabSources {
        dir: &dir,
        tokenizer_json: &tok,
        tokenizer_config: Some(&tc),
        config_json: None,
        chat_template_jinja: None,
        spm_model: None,
        added_tokens_json: None,
        n_vocab,
        chktxt_hash: None,
    };
    let v = GgufVocab::from_sources(&src).unwrap();
    assert_eq!((v.model, v.add_space_prefix), ("llama", Some(false)));
    let scores = v.scores.as_ref().unwrap();
    let merged: Vec<usize> =
        (0..n).filter(|&i| scores[i] < 0.0 && v.token_types[i] == token_type::NORMAL).collect();
    assert!(merged.len() > 50, "{} merged pieces", merged.len());
    for i in 0..n {
        assert_eq!(v.tokens[i], reference["tokens"][i].as_str().unwrap(), "token {i}");
        let want = reference["types"][i].as_i64().unwrap();
        // The converter keeps user-defined pieces NORMAL; transformers lists them as added tokens,
        // which become USER_DEFINED, or CONTROL when they look special (`<|user|>`), as gguf-py does.
        let got = i64::from(v.token_types[i]);
        let added = want == 1 && (got == 4 || (got == 3 && v.tokens[i].starts_with("<|")));
        assert!(got == want || added, "type {i} ({}): {got} vs {want}", v.tokens[i]);
    }
    let spm = |i: usize| reference["scores"][i].as_f64().unwrap();
    for &a in &merged {
        for &b in &merged {
            if spm(a) > spm(b) {
                assert!(scores[a] > scores[b], "{} / {}", v.tokens[a], v.tokens[b]);
            }
        }
    }
    // The added <bos> is special; the tokenizer adds it, as recorded for llama.cpp.
    assert_eq!(v.add_special.get("bos"), Some(&true));
}

#[test]
fn sentencepiece_unigram_without_tokenizer_model_is_refused() {
    let tok = json!({"added_tokens": [], "model": {"type": "Unigram", "vocab": [["a", -1.0]]}});
    let src = VocabSources {
        dir: Path::new("m"),
        tokenizer_json: &tok,
        tokenizer_config: None,
        config_json: None,
        chat_template_jinja: None,
        spm_model: None,
        added_tokens_json: None,
        n_vocab: 1,
        chktxt_hash: None,
    };
    let e = GgufVocab::from_sources(&src).unwrap_err().to_string();
    assert!(e.starts_with("m/tokenizer.model: ") && e.contains("needs its tokenizer.model"), "{e}");
}
