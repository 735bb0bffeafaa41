//! The model's own chat template (`chat_template` of `tokenizer_config.json`, or
//! `chat_template.jinja`), rendered with minijinja the way transformers' `apply_chat_template`
//! renders it with jinja2: `trim_blocks` and `lstrip_blocks` on, loop controls, the variables
//! `messages`, `bos_token`, `eos_token`, `add_generation_prompt`, the function
//! `raise_exception(msg)`, a `tojson` filter that writes what Python's `json.dumps` writes, and
//! Python's string / dict / list methods (`.strip()`, `.startswith()`, `.items()`, …) through
//! minijinja's pycompat callback.

use crate::DataError;
use minijinja::value::Kwargs;
use minijinja::{Environment, Error, ErrorKind, Value};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A chat template and the special-token strings it is rendered with.
pub struct ChatTemplate {
    env: Environment<'static>,
    /// Where the template came from (for messages).
    pub origin: PathBuf,
    /// `bos_token` as the template sees it (empty when the tokenizer has none).
    pub bos_token: String,
    /// `eos_token` as the template sees it.
    pub eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").field("origin", &self.origin).finish()
    }
}

/// One chat message.
pub type Message = serde_json::Value;

/// Reads a special token written as a string or as `{"content": …}`.
fn token_string(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content").and_then(|c| c.as_str()).map(str::to_string),
        _ => None,
    }
}

impl ChatTemplate {
    /// The template of a model directory: `chat_template.jinja` when present (transformers 5
    /// saves it there), else `chat_template` in `tokenizer_config.json` (a string, or a list of
    /// `{name, template}` of which `default` is used). `Ok(None)` when the model has none.
    pub fn from_dir(dir: &Path) -> Result<Option<Self>, DataError> {
        let config_path = dir.join("tokenizer_config.json");
        let config: serde_json::Value = match std::fs::read_to_string(&config_path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| DataError::Invalid {
                path: config_path.clone(),
                line: None,
                reason: format!("invalid JSON: {e}"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::Value::Null,
            Err(e) => return Err(DataError::Io { path: config_path, source: e }),
        };
        let jinja = dir.join("chat_template.jinja");
        let (source, origin) = if jinja.is_file() {
            let s = std::fs::read_to_string(&jinja)
                .map_err(|e| DataError::Io { path: jinja.clone(), source: e })?;
            (s, jinja)
        } else {
            match config.get("chat_template") {
                None | Some(serde_json::Value::Null) => return Ok(None),
                Some(serde_json::Value::String(s)) => (s.clone(), config_path),
                Some(serde_json::Value::Array(named)) => {
                    let default = named
                        .iter()
                        .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                        .and_then(|t| t.get("template")?.as_str());
                    match default {
                        Some(s) => (s.to_string(), config_path),
                        None => {
                            return Err(DataError::Invalid {
                                path: config_path,
                                line: None,
                                reason: "`chat_template` is a list without a `default` entry".into(),
                            });
                        }
                    }
                }
                Some(_) => {
                    return Err(DataError::Invalid {
                        path: config_path,
                        line: None,
                        reason: "`chat_template` must be a string or a list of {name, template}".into(),
                    });
                }
            }
        };
        let bos = token_string(config.get("bos_token")).unwrap_or_default();
        let eos = token_string(config.get("eos_token")).unwrap_or_default();
        Self::new(source, origin, bos, eos).map(Some)
    }

    /// Compiles `source` (from `origin`) with the special-token strings it is rendered with.
    pub fn new(
        source: String,
        origin: PathBuf,
        bos_token: String,
        eos_token: String,
    ) -> Result<Self, DataError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_filter("tojson", tojson);
        env.add_template_owned("chat_template", source).map_err(|e| DataError::Invalid {
            path: origin.clone(),
            line: None,
            reason: format!("chat template: {}", describe(&e)),
        })?;
        Ok(Self { env, origin, bos_token, eos_token })
    }

    /// The text of `messages` (each `{"role", "content", …}`); with `add_generation_prompt` the
    /// template appends what opens an assistant turn.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String, String> {
        let template = self.env.get_template("chat_template").map_err(|e| describe(&e))?;
        template
            .render(minijinja::context! {
                messages => Value::from_serialize(messages),
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
                add_generation_prompt => add_generation_prompt,
            })
            .map_err(|e| describe(&e))
    }

    /// The text of a whole conversation and the byte ranges of its assistant turns.
    ///
    /// Rendered incrementally: for the assistant message `i`, the turn is what rendering
    /// `messages[..=i]` adds to rendering `messages[..i]` with `add_generation_prompt = true`
    /// (the content and whatever closes the turn, e.g. the end-of-sequence token), and each of
    /// those renderings must be a prefix of the next and of the whole conversation. Templates
    /// that rewrite earlier turns depending on what follows (e.g. ones dropping the reasoning of
    /// past turns) break that and are reported.
    pub fn assistant_spans(&self, messages: &[Message]) -> Result<(String, Vec<Range<usize>>), String> {
        let full = self.render(messages, false)?;
        let mut spans = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            if m.get("role").and_then(|r| r.as_str()) != Some("assistant") {
                continue;
            }
            let before = self.render(&messages[..i], true)?;
            let through = self.render(&messages[..=i], false)?;
            if !through.starts_with(&before) || !full.starts_with(&through) {
                return Err(format!(
                    "the chat template does not render message {} as an append-only turn (the text before it changes with what follows), so its assistant tokens cannot be located; use train-on = \"all\"",
                    i + 1
                ));
            }
            if through.len() > before.len() {
                spans.push(before.len()..through.len());
            }
        }
        Ok((full, spans))
    }
}

/// One line for a template error, with its line in the template when known.
fn describe(e: &Error) -> String {
    let detail = e.detail().map_or_else(|| e.kind().to_string(), str::to_string);
    match e.line() {
        Some(l) if e.kind() != ErrorKind::InvalidOperation => format!("{detail} (template line {l})"),
        _ => detail,
    }
}

/// `tojson` as transformers defines it for chat templates: Python's
/// `json.dumps(x, ensure_ascii=False, indent=indent)` (`", "` / `": "` separators, no HTML
/// escaping).
fn tojson(value: &Value, indent: Option<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let indent = match indent {
        Some(v) => Some(v),
        None => kwargs.get::<Option<Value>>("indent")?,
    };
    let _: Option<Value> = kwargs.get("separators")?;
    let _: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => Some(usize::try_from(v)?),
    };
    let json = serde_json::to_value(value)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, "cannot serialize to JSON").with_source(e))?;
    let mut out = String::new();
    python_json(&json, indent, 0, &mut out);
    Ok(Value::from_safe_string(out))
}

/// Writes `v` as Python's `json.dumps(v, ensure_ascii=False, indent=indent)` does.
fn python_json(v: &serde_json::Value, indent: Option<usize>, depth: usize, out: &mut String) {
    use serde_json::Value as J;
    let newline = |out: &mut String, depth: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * depth));
        }
    };
    let sep = if indent.is_some() { "," } else { ", " };
    match v {
        J::Array(items) if !items.is_empty() => {
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                newline(out, depth + 1);
                python_json(x, indent, depth + 1, out);
            }
            newline(out, depth);
            out.push(']');
        }
        J::Object(map) if !map.is_empty() => {
            out.push('{');
            for (i, (k, x)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                newline(out, depth + 1);
                out.push_str(&serde_json::to_string(k).expect("string"));
                out.push_str(": ");
                python_json(x, indent, depth + 1, out);
            }
            newline(out, depth);
            out.push('}');
        }
        other => out.push_str(&serde_json::to_string(other).expect("JSON value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template(source: &str) -> ChatTemplate {
        ChatTemplate::new(source.into(), "t".into(), "<s>".into(), "</s>".into()).unwrap()
    }

    #[test]
    fn jinja2_whitespace_rules_and_python_methods() {
        // trim_blocks drops the newline after a block tag; lstrip_blocks the indentation before it.
        let t = template(
            "{{ bos_token }}\n{% for m in messages %}\n    {% if m.content.startswith('x') %}X{% endif %}\n[{{ m['role'] }}:{{ m.content.strip() }}]\n{% endfor %}\n{% if add_generation_prompt %}A:{% endif %}",
        );
        let msgs =
            vec![json!({"role": "user", "content": "  hi "}), json!({"role": "assistant", "content": "xo"})];
        assert_eq!(t.render(&msgs, true).unwrap(), "<s>\n[user:hi]\nX[assistant:xo]\nA:");
    }

    #[test]
    fn raise_exception_and_tojson_follow_transformers() {
        let t = template(
            "{% if messages|length > 1 %}{{ raise_exception('only one message') }}{% endif %}{{ messages[0]|tojson }}",
        );
        let e = t.render(&[json!({"role": "user"}), json!({"role": "user"})], false).unwrap_err();
        assert_eq!(e, "only one message");
        let out = t.render(&[json!({"content": "<é>", "n": [1, 2]})], false).unwrap();
        assert_eq!(out, r#"{"content": "<é>", "n": [1, 2]}"#);
        let t = template("{{ messages[0]|tojson(indent=2) }}");
        assert_eq!(
            t.render(&[json!({"a": [1], "b": {}})], false).unwrap(),
            "{\n  \"a\": [\n    1\n  ],\n  \"b\": {}\n}"
        );
    }

    #[test]
    fn spans_cover_assistant_turns_and_what_closes_them() {
        let t = template(
            "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% if m.role == 'assistant' %}{{ eos_token }}{% endif %}\n{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}",
        );
        let msgs = vec![
            json!({"role": "user", "content": "a"}),
            json!({"role": "assistant", "content": "bc"}),
            json!({"role": "user", "content": "d"}),
            json!({"role": "assistant", "content": "e"}),
        ];
        let (text, spans) = t.assistant_spans(&msgs).unwrap();
        let parts: Vec<&str> = spans.iter().map(|r| &text[r.clone()]).collect();
        // (trim_blocks removes the newline after `{% endif %}`, as jinja2 does for transformers.)
        assert_eq!(parts, vec!["bc</s>", "e</s>"]);
        assert_eq!(text, "<user>a<assistant>bc</s><user>d<assistant>e</s>");
        // A template that changes earlier turns depending on the last one is refused.
        let t = template("{% for m in messages %}{% if loop.last %}!{% endif %}{{ m.content }}{% endfor %}");
        assert!(t.assistant_spans(&msgs).unwrap_err().contains("append-only"));
    }
}
