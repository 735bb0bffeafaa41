//! The model's tokenizer: `tokenizer.json` through the `tokenizers` crate, with special tokens
//! resolved from `tokenizer_config.json`, `generation_config.json` and `config.json`.

use crate::ModelError;
use crate::config::ModelConfig;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A loaded tokenizer with its special-token ids.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    /// Beginning-of-sequence id.
    pub bos_id: Option<u32>,
    /// End-of-sequence ids (generation stops on any of them).
    pub eos_ids: Vec<u32>,
    /// Padding id.
    pub pad_id: Option<u32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer").field("path", &self.path).field("vocab", &self.vocab_size()).finish()
    }
}

/// Reads a special token given as a string or as `{"content": ...}`.
fn token_string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// Token ids and, for each, the byte range of the text it came from.
pub type IdsAndOffsets = (Vec<u32>, Vec<(usize, usize)>);

impl Tokenizer {
    /// Loads `dir/tokenizer.json`; special ids come from `tokenizer_config.json` when it names
    /// them, else from `generation_config.json`, else from `config`.
    pub fn from_dir(dir: &Path, config: Option<&ModelConfig>) -> Result<Self, ModelError> {
        let path = dir.join("tokenizer.json");
        let inner = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| ModelError::Tokenizer { path: path.clone(), reason: e.to_string() })?;
        let tok_cfg = read_json(&dir.join("tokenizer_config.json")).unwrap_or(Value::Null);
        let gen_cfg = read_json(&dir.join("generation_config.json")).unwrap_or(Value::Null);
        let by_name = |key: &str| token_string(tok_cfg.get(key)).and_then(|s| inner.token_to_id(&s));
        let ids = |v: Option<&Value>| -> Vec<u32> {
            match v {
                Some(Value::Array(a)) => a.iter().filter_map(|x| x.as_u64().map(|x| x as u32)).collect(),
                Some(x) => x.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
                None => vec![],
            }
        };
        let bos_id = by_name("bos_token")
            .or_else(|| ids(gen_cfg.get("bos_token_id")).first().copied())
            .or_else(|| config.and_then(|c| c.bos_token_id));
        let mut eos_ids = ids(gen_cfg.get("eos_token_id"));
        if let Some(e) = by_name("eos_token")
            && !eos_ids.contains(&e)
        {
            eos_ids.insert(0, e);
        }
        if eos_ids.is_empty() {
            eos_ids = config.map(|c| c.eos_token_ids.clone()).unwrap_or_default();
        }
        let pad_id = by_name("pad_token")
            .or_else(|| ids(gen_cfg.get("pad_token_id")).first().copied())
            .or_else(|| config.and_then(|c| c.pad_token_id));
        Ok(Self { inner, path, bos_id, eos_ids, pad_id })
    }

    /// Encodes text; with `add_special_tokens` the tokenizer's post-processor adds what
    /// transformers' `tokenizer(text)` adds (typically BOS).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, ModelError> {
        let enc = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| ModelError::Tokenizer { path: self.path.clone(), reason: e.to_string() })?;
        Ok(enc.get_ids().to_vec())
    }

    /// Encodes text and returns each token's `(start, end)` byte range in `text` (specials the
    /// post-processor adds, such as BOS, have an empty range).
    pub fn encode_with_offsets(
        &self,
        text: &str,
        add_special_tokens: bool,
    ) -> Result<IdsAndOffsets, ModelError> {
        let enc = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| ModelError::Tokenizer { path: self.path.clone(), reason: e.to_string() })?;
        Ok((enc.get_ids().to_vec(), enc.get_offsets().to_vec()))
    }

    /// Decodes ids to text, optionally dropping special tokens.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, ModelError> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| ModelError::Tokenizer { path: self.path.clone(), reason: e.to_string() })
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The underlying `tokenizers` object.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

/// Tokenizer and generation files copied verbatim when a model directory is saved.
pub const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "chat_template.jinja",
    "added_tokens.json",
];
