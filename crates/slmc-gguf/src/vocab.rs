//! Tokenizer metadata for GGUF (`tokenizer.ggml.*`, `tokenizer.chat_template`), built from a
//! Hugging Face tokenizer the way llama.cpp's converter does it (`TextModel._set_vocab_gpt2`,
//! `_create_vocab_sentencepiece` and `gguf.SpecialVocab`).
//!
//! * Byte-level BPE (`tokenizer.json` with a BPE model and no byte fallback; Llama-3, Qwen2,
//!   SmolLM, GPT-2 style) becomes `tokenizer.ggml.model = "gpt2"` with tokens, token types and
//!   merges.
//! * SentencePiece vocabularies (Llama-2, Mistral, Phi-3: a BPE model with `byte_fallback`)
//!   become `"llama"`, with pieces, scores and types read from `tokenizer.model`.
//!
//! `tokenizer.ggml.pre` is chosen by [`super::pretokenizer`].

pub use super::pretokenizer::{PreSource, chktxt_hash, choose_pre, sha256_hex};
use super::value::{Array, Value};
use super::writer::GgufWriter;
use crate::GgufError;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::Path;

/// GGUF token types (`TokenType` in gguf-py).
pub mod token_type {
    /// An ordinary token.
    pub const NORMAL: i32 = 1;
    /// The unknown token.
    pub const UNKNOWN: i32 = 2;
    /// A control (special) token.
    pub const CONTROL: i32 = 3;
    /// An added, non-special token.
    pub const USER_DEFINED: i32 = 4;
    /// A padding slot with no token.
    pub const UNUSED: i32 = 5;
    /// A byte-fallback token `<0xNN>`.
    pub const BYTE: i32 = 6;
}

/// Where the files of a tokenizer were read from, already parsed.
#[derive(Debug, Clone, Copy)]
pub struct VocabSources<'a> {
    /// Directory the files came from (for error messages).
    pub dir: &'a Path,
    /// `tokenizer.json`.
    pub tokenizer_json: &'a Json,
    /// `tokenizer_config.json`, if present.
    pub tokenizer_config: Option<&'a Json>,
    /// `config.json`, if present (its `*_token_id` integers fill special ids not found otherwise).
    pub config_json: Option<&'a Json>,
    /// `chat_template.jinja`, if present (used when `tokenizer_config.json` has no template).
    pub chat_template_jinja: Option<&'a str>,
    /// `tokenizer.model` bytes (SentencePiece), if present.
    pub spm_model: Option<&'a [u8]>,
    /// `added_tokens.json`, if present (SentencePiece vocabularies).
    pub added_tokens_json: Option<&'a Json>,
    /// Rows of the embedding matrix: the token list is padded to (and may not exceed) this.
    pub n_vocab: usize,
    /// sha256 hex of `str(tokenizer.encode(CHKTXT))`, computed by the caller with the real tokenizer.
    pub chktxt_hash: Option<&'a str>,
}

/// Tokenizer metadata ready to be added to a GGUF file.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufVocab {
    /// `tokenizer.ggml.model`: `gpt2` or `llama`.
    pub model: &'static str,
    /// `tokenizer.ggml.pre`.
    pub pre: String,
    /// How `pre` was chosen.
    pub pre_source: PreSource,
    /// Token strings, exactly `n_vocab` of them.
    pub tokens: Vec<String>,
    /// Token types ([`token_type`]).
    pub token_types: Vec<i32>,
    /// Scores (SentencePiece only).
    pub scores: Option<Vec<f32>>,
    /// BPE merges, `"left right"` (byte-level BPE only).
    pub merges: Vec<String>,
    /// Special token ids by kind (`bos`, `eos`, `unk`, `sep`, `pad`, `mask`, `eot`, `eom`).
    pub special_ids: BTreeMap<&'static str, u32>,
    /// `add_bos` / `add_eos` / `add_sep` flags.
    pub add_special: BTreeMap<&'static str, bool>,
    /// Chat templates: `(name, template)`, the unnamed default first with name `""`.
    pub chat_templates: Vec<(String, String)>,
    /// `tokenizer.ggml.add_space_prefix` (SentencePiece only): whether the tokenizer puts `▁` in
    /// front of the text (Llama 2: yes; Gemma: no). `None`: not written.
    pub add_space_prefix: Option<bool>,
    /// Things the user should know (unknown pre-tokenizer, ignored entries).
    pub warnings: Vec<String>,
}

pub(super) fn tok_err(dir: &Path, file: &str, reason: impl Into<String>) -> GgufError {
    GgufError::Tokenizer { path: dir.join(file), reason: reason.into() }
}

/// Whether a token's text looks special although it is not marked so (`does_token_look_special`).
pub(super) fn looks_special(t: &str) -> bool {
    matches!(t, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (t.starts_with("<|") && t.ends_with("|>"))
        || (t.starts_with("<｜") && t.ends_with("｜>"))
        || (t.starts_with("<unused") && t.ends_with('>'))
}

/// A special token given as `"<s>"` or `{"content": "<s>", ...}`.
fn token_content(v: Option<&Json>) -> Option<String> {
    match v? {
        Json::String(s) if !s.is_empty() => Some(s.clone()),
        Json::Object(o) => o.get("content").and_then(Json::as_str).map(str::to_string),
        _ => None,
    }
}

impl GgufVocab {
    /// Builds the vocabulary metadata from a tokenizer's files.
    pub fn from_sources(src: &VocabSources<'_>) -> Result<Self, GgufError> {
        let model = src
            .tokenizer_json
            .get("model")
            .ok_or_else(|| tok_err(src.dir, "tokenizer.json", "no `model`"))?;
        let kind = model.get("type").and_then(Json::as_str).unwrap_or("");
        let byte_fallback = model.get("byte_fallback").and_then(Json::as_bool).unwrap_or(false);
        let mut v = match (kind, byte_fallback) {
            ("BPE", false) => Self::byte_level_bpe(src, model)?,
            ("BPE", true) | ("Unigram", _) if src.spm_model.is_some() => Self::sentencepiece(src)?,
            // A SentencePiece BPE saved as tokenizer.json only (transformers 5 drops
            // tokenizer.model): pieces, scores from the merge ranks.
            ("BPE", true) => Self::sentencepiece_from_json(src, model)?,
            ("Unigram", _) => {
                return Err(tok_err(
                    src.dir,
                    "tokenizer.model",
                    "this SentencePiece Unigram tokenizer needs its tokenizer.model for GGUF export \
                     (llama.cpp scores pieces by the log-probabilities stored there)",
                ));
            }
            (other, _) => {
                return Err(tok_err(
                    src.dir,
                    "tokenizer.json",
                    format!(
                        "tokenizer model type `{other}` is not supported for GGUF export (BPE or SentencePiece only)"
                    ),
                ));
            }
        };
        v.resolve_special_tokens(src);
        if v.model == "llama"
            && !v.add_special.contains_key("bos")
            && template_adds_nothing(src.tokenizer_json)
        {
            // llama.cpp's SentencePiece default is to add BOS; this tokenizer adds none.
            v.add_special.insert("bos", false);
        }
        if v.model == "llama" {
            v.add_space_prefix = Some(super::vocab_spm_json::adds_space_prefix(src.tokenizer_json));
        }
        Ok(v)
    }

    pub(super) fn empty(model: &'static str, pre: String, pre_source: PreSource) -> Self {
        Self {
            model,
            pre,
            pre_source,
            tokens: Vec::new(),
            token_types: Vec::new(),
            scores: None,
            merges: Vec::new(),
            special_ids: BTreeMap::new(),
            add_special: BTreeMap::new(),
            chat_templates: Vec::new(),
            add_space_prefix: None,
            warnings: Vec::new(),
        }
    }

    fn byte_level_bpe(src: &VocabSources<'_>, model: &Json) -> Result<Self, GgufError> {
        let err = |r: String| tok_err(src.dir, "tokenizer.json", r);
        let vocab = model
            .get("vocab")
            .and_then(Json::as_object)
            .ok_or_else(|| err("BPE model has no vocab".into()))?;
        // id → (text, added-token entry)
        let mut by_id: BTreeMap<u64, (String, Option<&Json>)> = BTreeMap::new();
        for (text, id) in vocab {
            let id = id.as_u64().ok_or_else(|| err(format!("vocab id of `{text}` is not an integer")))?;
            by_id.insert(id, (text.clone(), None));
        }
        for a in src.tokenizer_json.get("added_tokens").and_then(Json::as_array).into_iter().flatten() {
            let (Some(id), Some(text)) =
                (a.get("id").and_then(Json::as_u64), a.get("content").and_then(Json::as_str))
            else {
                return Err(err("added_tokens entry without id/content".into()));
            };
            by_id.insert(id, (text.to_string(), Some(a)));
        }
        if let Some((&max, _)) = by_id.last_key_value()
            && max as usize >= src.n_vocab
        {
            return Err(err(format!(
                "token id {max} does not fit the model's {} embedding rows (config vocab_size)",
                src.n_vocab
            )));
        }
        let (pre, pre_source, warning) = choose_pre(src.chktxt_hash, src.tokenizer_json);
        let mut v = Self::empty("gpt2", pre, pre_source);
        v.warnings.extend(warning);
        let mut seen = std::collections::HashSet::new();
        for i in 0..src.n_vocab {
            let (text, ty) = match by_id.get(&(i as u64)) {
                None => (format!("[PAD{i}]"), token_type::UNUSED),
                Some((t, None)) => (t.clone(), token_type::NORMAL),
                Some((t, Some(a))) => {
                    if a.get("special").and_then(Json::as_bool).unwrap_or(false) || looks_special(t) {
                        (t.clone(), token_type::CONTROL)
                    } else {
                        (t.replace('\u{2581}', " "), token_type::USER_DEFINED)
                    }
                }
            };
            if !seen.insert(text.clone()) {
                return Err(err(format!("token `{text}` appears twice; llama.cpp rejects duplicate tokens")));
            }
            v.tokens.push(text);
            v.token_types.push(ty);
        }
        v.merges = read_merges(model).map_err(err)?;
        if v.merges.is_empty() {
            return Err(err("BPE tokenizer has no merges; llama.cpp's gpt2 tokenizer requires them".into()));
        }
        Ok(v)
    }

    fn sentencepiece(src: &VocabSources<'_>) -> Result<Self, GgufError> {
        let bytes = src.spm_model.expect("checked by caller");
        let pieces = super::spm::read_pieces(bytes).map_err(|r| tok_err(src.dir, "tokenizer.model", r))?;
        let n = src.n_vocab;
        let mut v = Self::empty("llama", "default".into(), PreSource::SentencePiece);
        v.tokens = (0..n).map(|i| format!("[PAD{i}]")).collect();
        v.token_types = vec![token_type::UNUSED; n];
        let mut scores = vec![-10000.0f32; n];
        if pieces.len() > n {
            v.warnings.push(format!("tokenizer.model has {} pieces; ids ≥ {n} are dropped", pieces.len()));
        }
        for (i, p) in pieces.iter().enumerate().take(n) {
            v.tokens[i] = p.piece.clone();
            scores[i] = p.score;
            // The converter keeps only these kinds; user-defined pieces become NORMAL.
            v.token_types[i] = match p.kind {
                2 => token_type::UNKNOWN,
                3 => token_type::CONTROL,
                5 => token_type::UNUSED,
                6 => token_type::BYTE,
                _ => token_type::NORMAL,
            };
        }
        if let Some(Json::Object(added)) = src.added_tokens_json {
            for (text, id) in added {
                if let Some(id) = id.as_u64().map(|x| x as usize).filter(|&x| x < n) {
                    v.tokens[id] = text.clone();
                    scores[id] = -1000.0;
                    v.token_types[id] = token_type::USER_DEFINED;
                }
            }
        }
        let decoder =
            src.tokenizer_config.and_then(|c| c.get("added_tokens_decoder")).and_then(Json::as_object);
        for (id, data) in decoder.into_iter().flatten() {
            let (Ok(id), Some(text)) = (id.parse::<usize>(), data.get("content").and_then(Json::as_str))
            else {
                continue;
            };
            if id >= n {
                continue;
            }
            scores[id] = -1000.0;
            if data.get("special").and_then(Json::as_bool).unwrap_or(false) || looks_special(text) {
                v.tokens[id] = text.to_string();
                v.token_types[id] = token_type::CONTROL;
            } else {
                v.tokens[id] = text.replace('\u{2581}', " ");
                v.token_types[id] = token_type::USER_DEFINED;
            }
        }
        v.scores = Some(scores);
        Ok(v)
    }

    /// `gguf.SpecialVocab`: special ids from `tokenizer_config.json` names matched against
    /// `added_tokens`, `add_bos`/`add_eos` from the config or the `TemplateProcessing`
    /// post-processor, the chat template, then `config.json` integer ids for kinds still unset.
    fn resolve_special_tokens(&mut self, src: &VocabSources<'_>) {
        let mut kinds: Vec<&'static str> = vec!["bos", "eos", "unk", "sep", "pad", "cls", "mask"];
        let mut names: BTreeMap<&'static str, String> = BTreeMap::new();
        let tc = src.tokenizer_config.filter(|c| c.is_object());
        for k in &kinds {
            if let Some(s) = token_content(tc.and_then(|c| c.get(format!("{k}_token")))) {
                names.insert(k, s);
            }
        }
        if !names.contains_key("bos")
            && let Some(c) = names.get("cls").cloned()
        {
            names.insert("bos", c);
        }
        if !names.contains_key("eos")
            && let Some(s) = names.get("sep").cloned()
        {
            names.insert("eos", s);
        }
        let post = src.tokenizer_json.get("post_processor").filter(|p| !p.is_null());
        let processors: Vec<&Json> = match post {
            Some(p) => match p.get("processors").and_then(Json::as_array) {
                Some(list) => list.iter().collect(),
                None => vec![p],
            },
            None => vec![],
        };
        for p in processors {
            match p.get("type").and_then(Json::as_str) {
                Some("RobertaProcessing") => {
                    for k in ["bos", "eos", "sep"] {
                        self.add_special.insert(k, true);
                    }
                }
                Some("TemplateProcessing") => {
                    let single = p.get("single").and_then(Json::as_array).cloned().unwrap_or_default();
                    let special = |e: &Json| {
                        e.get("SpecialToken")
                            .and_then(|s| s.get("id"))
                            .and_then(Json::as_str)
                            .map(str::to_string)
                    };
                    let (mut first_special, mut last_special) = (None, None);
                    if single.len() > 1 {
                        first_special = special(&single[0]);
                        last_special = special(&single[single.len() - 1]);
                        if let Some(first) = special(&single[0]) {
                            if tc.is_none() {
                                names.insert("bos", first.clone());
                            }
                            let is_bos = names.get("bos") == Some(&first) || names.get("cls") == Some(&first);
                            self.add_special.insert("bos", is_bos);
                        }
                        if let Some(last) = special(&single[single.len() - 1]) {
                            match names.get("eos").cloned() {
                                Some(eos) if tc.is_some() && eos != last => {
                                    // The converter keeps the old EOS as end-of-turn.
                                    kinds.push("eot");
                                    names.insert("eot", eos);
                                    names.insert("eos", last.clone());
                                }
                                _ if tc.is_none() => {
                                    names.insert("eos", last.clone());
                                }
                                _ => {}
                            }
                            self.add_special.insert("eos", names.get("eos") == Some(&last));
                        }
                    }
                    // add_sep from the pair template `[first] A [sep...] B [last]`, as gguf-py does.
                    let pair = p.get("pair").and_then(Json::as_array).cloned().unwrap_or_default();
                    let start = usize::from(
                        first_special.is_some() && pair.first().and_then(special) == first_special,
                    );
                    let stop = pair.len()
                        - usize::from(
                            last_special.is_some() && pair.last().and_then(special) == last_special,
                        );
                    let inner = if start < stop { &pair[start..stop] } else { &pair[..0] };
                    let seq = |e: &Json| {
                        e.get("Sequence").and_then(|s| s.get("id")).and_then(Json::as_str).map(str::to_string)
                    };
                    if inner.len() > 2
                        && seq(&inner[0]).as_deref() == Some("A")
                        && seq(&inner[inner.len() - 1]).as_deref() == Some("B")
                    {
                        let middle = &inner[1..inner.len() - 1];
                        let is_sep = |t: &str| {
                            names.get("sep").map(String::as_str) == Some(t)
                                || names.get("eos").map(String::as_str) == Some(t)
                        };
                        let mut add_sep = false;
                        if let Some(e) = special(&middle[0])
                            && is_sep(&e)
                            && last_special.is_none()
                        {
                            add_sep = true;
                        }
                        if middle.len() == 2
                            && let Some(e) = special(&middle[1])
                            && is_sep(&e)
                        {
                            add_sep = true;
                        }
                        self.add_special.insert("sep", add_sep);
                    }
                }
                _ => {}
            }
        }
        if let Some(tc) = tc {
            let template = tc.get("chat_template").filter(|t| !t.is_null());
            match template {
                Some(Json::String(s)) => self.chat_templates.push((String::new(), s.clone())),
                Some(Json::Array(list)) => {
                    for choice in list {
                        let name: String = choice
                            .get("name")
                            .and_then(Json::as_str)
                            .unwrap_or("")
                            .chars()
                            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                            .collect();
                        if let Some(t) = choice.get("template").and_then(Json::as_str)
                            && !name.is_empty()
                        {
                            let name = if name == "default" { String::new() } else { name };
                            self.chat_templates.push((name, t.to_string()));
                        }
                    }
                    self.chat_templates.sort_by(|a, b| a.0.cmp(&b.0));
                }
                Some(_) => {
                    self.warnings.push("ignoring a chat_template that is neither a string nor a list".into())
                }
                None => {
                    if let Some(j) = src.chat_template_jinja {
                        self.chat_templates.push((String::new(), j.to_string()));
                    }
                }
            }
            for k in &kinds {
                if let Some(b) = tc.get(format!("add_{k}_token")).and_then(Json::as_bool) {
                    self.add_special.insert(k, b);
                }
            }
        }
        let added = src.tokenizer_json.get("added_tokens").and_then(Json::as_array);
        for k in &kinds {
            let Some(name) = names.get(k) else { continue };
            let id = added.into_iter().flatten().find_map(|a| {
                (a.get("content").and_then(Json::as_str) == Some(name.as_str()))
                    .then(|| a.get("id").and_then(Json::as_u64))
                    .flatten()
            });
            self.set_special(k, id);
        }
        for k in &kinds {
            let id = src.config_json.and_then(|c| c.get(format!("{k}_token_id"))).and_then(Json::as_u64);
            self.set_special(k, id);
        }
        // Only these kinds have GGUF keys; gguf-py skips the rest (cls) with a warning.
        self.special_ids.retain(|k, _| *k != "cls");
        self.add_special.retain(|k, _| matches!(*k, "bos" | "eos" | "sep"));
    }

    fn set_special(&mut self, kind: &'static str, id: Option<u64>) {
        let Some(id) = id else { return };
        if self.special_ids.contains_key(kind) {
            return;
        }
        if (id as usize) < self.tokens.len() {
            self.special_ids.insert(kind, id as u32);
        } else {
            self.warnings.push(format!("{kind} token id {id} is outside the vocabulary; not written"));
        }
    }

    /// Adds the `tokenizer.*` keys to `w`.
    pub fn add_to(&self, w: &mut GgufWriter) -> Result<(), GgufError> {
        w.add("tokenizer.ggml.model", self.model)?;
        w.add("tokenizer.ggml.pre", self.pre.as_str())?;
        w.add("tokenizer.ggml.tokens", Array::String(self.tokens.clone()))?;
        if let Some(s) = &self.scores {
            w.add("tokenizer.ggml.scores", Array::F32(s.clone()))?;
        }
        w.add("tokenizer.ggml.token_type", Array::I32(self.token_types.clone()))?;
        if !self.merges.is_empty() {
            w.add("tokenizer.ggml.merges", Array::String(self.merges.clone()))?;
        }
        for (kind, id) in &self.special_ids {
            w.add(&special_id_key(kind), Value::U32(*id))?;
        }
        for (kind, b) in &self.add_special {
            w.add(&format!("tokenizer.ggml.add_{kind}_token"), Value::Bool(*b))?;
        }
        if let Some(b) = self.add_space_prefix {
            w.add("tokenizer.ggml.add_space_prefix", Value::Bool(b))?;
        }
        let named: Vec<String> =
            self.chat_templates.iter().filter(|(n, _)| !n.is_empty()).map(|(n, _)| n.clone()).collect();
        for (name, t) in &self.chat_templates {
            if !name.is_empty() {
                w.add(&format!("tokenizer.chat_template.{name}"), t.as_str())?;
            }
        }
        if !named.is_empty() {
            w.add("tokenizer.chat_templates", Array::String(named))?;
        }
        if let Some((_, t)) = self.chat_templates.iter().find(|(n, _)| n.is_empty()) {
            w.add("tokenizer.chat_template", t.as_str())?;
        }
        Ok(())
    }
}

/// Whether the tokenizer's post-processor is a `TemplateProcessing` whose single-sequence template
/// is the text alone (no special tokens around it).
fn template_adds_nothing(tokenizer_json: &Json) -> bool {
    let post = tokenizer_json.get("post_processor");
    post.and_then(|p| p.get("type")).and_then(Json::as_str) == Some("TemplateProcessing")
        && post
            .and_then(|p| p.get("single"))
            .and_then(Json::as_array)
            .is_some_and(|s| s.iter().all(|e| e.get("SpecialToken").is_none()))
}

/// The GGUF key of a special token id (note llama.cpp's spelling `seperator`).
fn special_id_key(kind: &str) -> String {
    let k = match kind {
        "unk" => "unknown",
        "sep" => "seperator",
        "pad" => "padding",
        other => other,
    };
    format!("tokenizer.ggml.{k}_token_id")
}

/// Merges as `"left right"` strings; the `[["a", "b"]]` form has spaces inside parts encoded
/// as `Ġ` (U+0120), as gguf-py does.
fn read_merges(model: &Json) -> Result<Vec<String>, String> {
    let Some(list) = model.get("merges").and_then(Json::as_array) else { return Ok(vec![]) };
    list.iter()
        .map(|m| match m {
            Json::String(s) => Ok(s.clone()),
            Json::Array(pair) if pair.len() == 2 => {
                let part = |p: &Json| p.as_str().map(|s| s.replace(' ', "\u{120}"));
                match (part(&pair[0]), part(&pair[1])) {
                    (Some(a), Some(b)) => Ok(format!("{a} {b}")),
                    _ => Err("merge pair is not two strings".to_string()),
                }
            }
            other => Err(format!("unknown merge format {other}")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bpe_tokenizer() -> Json {
        json!({
            "added_tokens": [
                {"id": 0, "content": "<s>", "special": true, "normalized": false},
                {"id": 1, "content": "</s>", "special": true, "normalized": false},
                {"id": 5, "content": "<|im_start|>", "special": false, "normalized": false},
                {"id": 6, "content": "▁hi", "special": false, "normalized": true}
            ],
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
            "post_processor": {"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}]},
            "model": {"type": "BPE", "byte_fallback": false,
                "vocab": {"<s>": 0, "</s>": 1, "a": 2, "b": 3, "a b": 4},
                "merges": [["a", "b"], ["a", "b c"]]}
        })
    }

    fn sources<'a>(tok: &'a Json, tc: Option<&'a Json>, cfg: Option<&'a Json>) -> VocabSources<'a> {
        VocabSources {
            dir: Path::new("tok"),
            tokenizer_json: tok,
            tokenizer_config: tc,
            config_json: cfg,
            chat_template_jinja: None,
            spm_model: None,
            added_tokens_json: None,
            n_vocab: 9,
            chktxt_hash: Some("0000"),
        }
    }

    #[test]
    fn byte_level_bpe_tokens_types_merges_and_specials() {
        let tok = bpe_tokenizer();
        let tc = json!({"bos_token": "<s>", "eos_token": {"content": "</s>"}, "chat_template": "{{ x }}"});
        let cfg = json!({"pad_token_id": 7, "eos_token_id": [1, 2]});
        let v = GgufVocab::from_sources(&sources(&tok, Some(&tc), Some(&cfg))).unwrap();
        assert_eq!(v.model, "gpt2");
        assert_eq!(v.tokens, ["<s>", "</s>", "a", "b", "a b", "<|im_start|>", " hi", "[PAD7]", "[PAD8]"]);
        use token_type::*;
        assert_eq!(
            v.token_types,
            [CONTROL, CONTROL, NORMAL, NORMAL, NORMAL, CONTROL, USER_DEFINED, UNUSED, UNUSED]
        );
        assert_eq!(v.merges, ["a b", "a b\u{120}c"]);
        assert_eq!(v.special_ids.get("bos"), Some(&0));
        assert_eq!(v.special_ids.get("eos"), Some(&1));
        assert_eq!(v.special_ids.get("pad"), Some(&7)); // from config.json
        assert_eq!(v.add_special.get("bos"), Some(&true)); // from TemplateProcessing
        assert_eq!(v.chat_templates, vec![(String::new(), "{{ x }}".to_string())]);
        assert_eq!(v.pre, "gpt-2");
        assert_eq!(v.pre_source, PreSource::Structure);
    }

    #[test]
    fn problems_are_errors() {
        let mut tok = bpe_tokenizer();
        let mut s = sources(&tok, None, None);
        s.n_vocab = 4;
        let e = GgufVocab::from_sources(&s).unwrap_err().to_string();
        assert!(e.contains("does not fit the model's 4 embedding rows"), "{e}");
        // A byte-fallback BPE without tokenizer.model is read from tokenizer.json (scores from
        // merge ranks; `a b` is no merge's result, so 0); a Unigram one needs tokenizer.model.
        tok["model"]["byte_fallback"] = json!(true);
        let v = GgufVocab::from_sources(&sources(&tok, None, None)).unwrap();
        assert_eq!((v.model, v.tokens[4].as_str(), v.scores.as_ref().unwrap()[4]), ("llama", "a b", 0.0));
        tok["model"]["type"] = json!("Unigram");
        let e = GgufVocab::from_sources(&sources(&tok, None, None)).unwrap_err().to_string();
        assert!(e.contains("needs its tokenizer.model"), "{e}");
        tok["model"]["type"] = json!("WordPiece");
        assert!(GgufVocab::from_sources(&sources(&tok, None, None)).is_err());
    }

    #[test]
    fn special_keys_use_llama_cpp_spelling() {
        assert_eq!(special_id_key("sep"), "tokenizer.ggml.seperator_token_id");
        assert_eq!(special_id_key("unk"), "tokenizer.ggml.unknown_token_id");
        assert_eq!(special_id_key("bos"), "tokenizer.ggml.bos_token_id");
    }
}
