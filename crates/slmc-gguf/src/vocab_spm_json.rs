//! A SentencePiece-style BPE vocabulary (`byte_fallback`, `▁` for spaces: Gemma, Llama 2) read
//! from `tokenizer.json` alone, as transformers 5 saves it (without `tokenizer.model`), written
//! as llama.cpp's `"llama"` tokenizer.
//!
//! llama.cpp's SentencePiece tokenizer merges the adjacent pair whose concatenation has the
//! highest score; Hugging Face's BPE applies merges in rank order. Scoring each piece `-rank` of
//! the merge that produces it makes the two agree (pieces no merge produces — single characters,
//! bytes — score 0 and are never the result of a merge).

use super::PreSource;
use super::vocab::{GgufVocab, VocabSources, looks_special, tok_err, token_type};
use crate::GgufError;
use serde_json::Value as Json;
use std::collections::{BTreeMap, HashMap};

impl GgufVocab {
    /// See the module docs. Errors name `tokenizer.json` and what is wrong with it.
    pub(super) fn sentencepiece_from_json(src: &VocabSources<'_>, model: &Json) -> Result<Self, GgufError> {
        let err = |r: String| tok_err(src.dir, "tokenizer.json", r);
        let vocab = model
            .get("vocab")
            .and_then(Json::as_object)
            .ok_or_else(|| err("BPE model has no vocab".into()))?;
        let n = src.n_vocab;
        let mut by_id: BTreeMap<usize, String> = BTreeMap::new();
        for (text, id) in vocab {
            let id =
                id.as_u64().ok_or_else(|| err(format!("vocab id of `{text}` is not an integer")))? as usize;
            by_id.insert(id, text.clone());
        }
        let mut rank: HashMap<String, usize> = HashMap::new();
        for (r, m) in model.get("merges").and_then(Json::as_array).into_iter().flatten().enumerate() {
            let merged = match m {
                Json::String(s) => s.replacen(' ', "", 1),
                Json::Array(pair) if pair.len() == 2 => {
                    pair.iter().filter_map(Json::as_str).collect::<Vec<_>>().concat()
                }
                other => return Err(err(format!("unknown merge format {other}"))),
            };
            rank.entry(merged).or_insert(r);
        }
        let unk = model.get("unk_token").and_then(Json::as_str);
        let mut v = Self::empty("llama", "default".into(), PreSource::SentencePiece);
        v.tokens = (0..n).map(|i| format!("[PAD{i}]")).collect();
        v.token_types = vec![token_type::UNUSED; n];
        let mut scores = vec![0.0f32; n];
        for (&id, text) in by_id.range(..n) {
            v.tokens[id] = text.clone();
            v.token_types[id] = if Some(text.as_str()) == unk {
                token_type::UNKNOWN
            } else if is_byte_piece(text) {
                token_type::BYTE
            } else {
                token_type::NORMAL
            };
            scores[id] = rank.get(text).map_or(0.0, |&r| -(r as f32) - 1.0);
        }
        if let Some((&max, _)) = by_id.last_key_value().filter(|(id, _)| **id >= n) {
            v.warnings.push(format!("tokenizer.json has ids up to {max}; ids ≥ {n} are dropped"));
        }
        for a in src.tokenizer_json.get("added_tokens").and_then(Json::as_array).into_iter().flatten() {
            let (Some(id), Some(text)) =
                (a.get("id").and_then(Json::as_u64), a.get("content").and_then(Json::as_str))
            else {
                return Err(err("added_tokens entry without id/content".into()));
            };
            let id = id as usize;
            if id >= n {
                v.warnings.push(format!(
                    "added token `{text}` (id {id}) is outside the {n} embedding rows; dropped"
                ));
                continue;
            }
            v.tokens[id] = text.to_string();
            scores[id] = -1000.0;
            v.token_types[id] = if Some(text) == unk {
                token_type::UNKNOWN
            } else if a.get("special").and_then(Json::as_bool).unwrap_or(false) || looks_special(text) {
                token_type::CONTROL
            } else {
                token_type::USER_DEFINED
            };
        }
        v.scores = Some(scores);
        Ok(v)
    }
}

/// `<0x41>`: a byte-fallback piece.
fn is_byte_piece(t: &str) -> bool {
    t.len() == 6 && t.starts_with("<0x") && t.ends_with('>') && u8::from_str_radix(&t[3..5], 16).is_ok()
}

/// Whether the tokenizer puts `▁` in front of the text: a `Prepend("▁")` normalizer or a
/// `Metaspace` pre-tokenizer that prepends (Llama 2 style); Gemma only replaces spaces.
pub(super) fn adds_space_prefix(tokenizer_json: &Json) -> bool {
    fn any(v: &Json, f: &dyn Fn(&Json) -> bool) -> bool {
        f(v) || ["normalizers", "pretokenizers"]
            .iter()
            .filter_map(|k| v.get(*k).and_then(Json::as_array))
            .flatten()
            .any(|x| any(x, f))
    }
    let prepend = |n: &Json| n.get("type").and_then(Json::as_str) == Some("Prepend");
    let metaspace = |p: &Json| {
        p.get("type").and_then(Json::as_str) == Some("Metaspace")
            && match p.get("prepend_scheme").and_then(Json::as_str) {
                Some(scheme) => scheme != "never",
                None => p.get("add_prefix_space").and_then(Json::as_bool).unwrap_or(true),
            }
    };
    tokenizer_json.get("normalizer").is_some_and(|n| any(n, &prepend))
        || tokenizer_json.get("pre_tokenizer").is_some_and(|p| any(p, &metaspace))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn space_prefix_follows_the_normalizer_and_metaspace() {
        let llama2 = json!({"normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}});
        let gemma = json!({"normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
            "pre_tokenizer": {"type": "Split", "pattern": {"String": " "}}});
        let meta =
            json!({"pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first"}});
        let never =
            json!({"pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "never"}});
        assert!(adds_space_prefix(&llama2) && adds_space_prefix(&meta));
        assert!(!adds_space_prefix(&gemma) && !adds_space_prefix(&never));
        assert!(is_byte_piece("<0x0A>") && !is_byte_piece("<0xZZ>") && !is_byte_piece("<s>"));
    }
}
