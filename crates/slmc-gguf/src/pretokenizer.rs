//! Choosing `tokenizer.ggml.pre`, the BPE pre-tokenizer name llama.cpp needs.
//!
//! llama.cpp fails to load a BPE model whose `pre` it does not know, and silently degrades one
//! with none. The name is chosen like the converter
//! does: the caller encodes [`CHKTXT`](super::pre_table::CHKTXT) with the tokenizer (special
//! tokens included) and passes the sha256 of the Python-style list `"[1, 2, 3]"`; a hash in
//! llama.cpp's table gives the name. For a tokenizer the table does not know (the converter
//! refuses those), slmc falls back to reading the pre-tokenizer's structure in `tokenizer.json`:
//! a plain GPT-2 `ByteLevel` split is `gpt-2`, digits-then-ByteLevel is `smollm`, the Llama-3
//! and Qwen2 split regexes are `llama-bpe` and `qwen2`; anything else gets `default` and a
//! warning (llama.cpp loads it but may split text differently from Hugging Face).

use super::pre_table::{ACCEPTED, KNOWN_HASHES};
use serde_json::Value as Json;

/// The Llama-3 split regex of `tokenizer.json`.
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// The Qwen2 split regex of `tokenizer.json`.
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How `tokenizer.ggml.pre` was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreSource {
    /// The check-text hash is in llama.cpp's table (what the converter does).
    Hash,
    /// The hash is unknown; the name was read off the pre-tokenizer's structure.
    Structure,
    /// Nothing matched; `default` was written.
    Fallback,
    /// A SentencePiece vocabulary (the converter always writes `default`).
    SentencePiece,
}

/// Chooses `tokenizer.ggml.pre` for a byte-level BPE tokenizer: hash table first, then the
/// pre-tokenizer's structure, then `default` (see the module docs). Returns a warning for the
/// last two.
pub fn choose_pre(hash: Option<&str>, tokenizer_json: &Json) -> (String, PreSource, Option<String>) {
    if let Some(h) = hash
        && let Some((_, name)) = KNOWN_HASHES.iter().find(|(k, _)| *k == h)
        && ACCEPTED.contains(name)
    {
        return (name.to_string(), PreSource::Hash, None);
    }
    let pre = tokenizer_json.get("pre_tokenizer").unwrap_or(&Json::Null);
    if let Some(name) = pre_from_structure(pre) {
        let note = format!(
            "pre-tokenizer not in llama.cpp's table (hash {}); chose `{name}` from tokenizer.json's pre_tokenizer structure",
            hash.unwrap_or("not computed")
        );
        return (name.to_string(), PreSource::Structure, Some(note));
    }
    let note = format!(
        "unknown pre-tokenizer (hash {}); wrote `default`: llama.cpp will load the model but may split text differently from Hugging Face",
        hash.unwrap_or("not computed")
    );
    ("default".into(), PreSource::Fallback, Some(note))
}

fn pre_from_structure(pre: &Json) -> Option<&'static str> {
    let ty = |v: &Json| v.get("type").and_then(Json::as_str).map(str::to_string);
    let steps: Vec<&Json> = match ty(pre).as_deref() {
        Some("Sequence") => pre.get("pretokenizers").and_then(Json::as_array)?.iter().collect(),
        Some(_) => vec![pre],
        None => return None,
    };
    let byte_level = |v: &Json, regex: bool| {
        ty(v).as_deref() == Some("ByteLevel")
            && v.get("use_regex").and_then(Json::as_bool).unwrap_or(true) == regex
            && !v.get("add_prefix_space").and_then(Json::as_bool).unwrap_or(false)
    };
    let split_regex = |v: &Json| -> Option<String> {
        (ty(v).as_deref() == Some("Split"))
            .then(|| v.get("pattern")?.get("Regex")?.as_str().map(str::to_string))
            .flatten()
    };
    match steps.as_slice() {
        [b] if byte_level(b, true) => Some("gpt-2"),
        [d, b]
            if ty(d).as_deref() == Some("Digits")
                && d.get("individual_digits").and_then(Json::as_bool) == Some(true)
                && byte_level(b, true) =>
        {
            Some("smollm")
        }
        [s, b] if byte_level(b, false) => match split_regex(s).as_deref() {
            Some(LLAMA3_REGEX) => Some("llama-bpe"),
            Some(QWEN2_REGEX) => Some("qwen2"),
            _ => None,
        },
        _ => None,
    }
}

/// The sha256 hex digest of the Python `str()` of a token-id list (`"[1, 2, 3]"`), which is what
/// the converter hashes. The caller provides the ids of `CHKTXT` encoded with special tokens.
pub fn chktxt_hash(ids: &[u32]) -> String {
    let s = format!("[{}]", ids.iter().map(u32::to_string).collect::<Vec<_>>().join(", "));
    sha256_hex(s.as_bytes())
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bpe_tokenizer() -> Json {
        json!({"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}})
    }

    #[test]
    fn known_hash_wins_and_unknown_structure_falls_back() {
        let tok = bpe_tokenizer();
        let llama3 = "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5";
        assert_eq!(choose_pre(Some(llama3), &tok).0, "llama-bpe");
        assert_eq!(choose_pre(Some(llama3), &tok).1, PreSource::Hash);
        let weird = json!({"pre_tokenizer": {"type": "Whitespace"}});
        let (name, source, warn) = choose_pre(Some("ff"), &weird);
        assert_eq!((name.as_str(), source), ("default", PreSource::Fallback));
        assert!(warn.unwrap().contains("may split text differently"));
        let l3 = json!({"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_REGEX}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]}});
        assert_eq!(choose_pre(None, &l3).0, "llama-bpe");
        let q2 = l3.to_string().replace(r"\\p{N}{1,3}", r"\\p{N}");
        assert_eq!(choose_pre(None, &serde_json::from_str(&q2).unwrap()).0, "qwen2");
    }

    #[test]
    fn python_list_hash_format() {
        // Python: hashlib.sha256(str([1, 22, 333]).encode()).hexdigest()
        assert_eq!(
            chktxt_hash(&[1, 22, 333]),
            "276d8737d9d5a80805e0731e8d5ae18972a8e3ba721f4988f67151c6e9159068"
        );
        assert_eq!(
            sha256_hex(super::super::pre_table::CHKTXT.as_bytes()),
            super::super::pre_table::CHKTXT_SHA256
        );
    }
}
