//! The recipe document as a tree of values, each remembering where it came from (a span of the
//! file, or a `--set` argument), so that validation errors can point at it.

use crate::diag::{Diagnostic, Diagnostics};
use std::ops::Range;
use toml::de::{DeTable, DeValue};

/// Where a value was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A byte span of the recipe file.
    File(Range<usize>),
    /// The `index`-th `--set` argument.
    Set {
        /// Position among the `--set` arguments.
        index: usize,
    },
    /// Nowhere in particular.
    Nowhere,
}

/// A value of the document.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A table (key order preserved as written).
    Table(Vec<Entry>),
    /// An array (`[[stage]]` is an array of tables).
    Array(Vec<Node>),
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A date/time, kept as text.
    Datetime(String),
}

/// A key-value pair of a table.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// Where the key was written.
    pub key_origin: Origin,
    /// The value.
    pub node: Node,
}

/// A value and its origin.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where it was written.
    pub origin: Origin,
}

impl Node {
    /// A short description of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Table(_) => "a table",
            Value::Array(_) => "an array",
            Value::Str(_) => "a string",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Bool(_) => "a boolean",
            Value::Datetime(_) => "a date",
        }
    }

    /// The entries of a table node.
    pub fn entries(&self) -> Option<&[Entry]> {
        match &self.value {
            Value::Table(e) => Some(e),
            _ => None,
        }
    }

    /// Converts the node to JSON (used to pass inline model configs to the HF config parser).
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Table(e) => serde_json::Value::Object(
                e.iter().map(|en| (en.key.replace('-', "_"), en.node.to_json())).collect(),
            ),
            Value::Array(a) => serde_json::Value::Array(a.iter().map(Node::to_json).collect()),
            Value::Str(s) | Value::Datetime(s) => serde_json::Value::String(s.clone()),
            Value::Int(i) => serde_json::json!(i),
            Value::Float(f) => serde_json::json!(f),
            Value::Bool(b) => serde_json::json!(b),
        }
    }
}

/// Parses TOML text; syntax errors become diagnostics.
pub fn parse(text: &str, diags: &mut Diagnostics) -> Option<Node> {
    match DeTable::parse(text) {
        Ok(t) => {
            let span = t.span();
            Some(Node { value: Value::Table(table_entries(t.get_ref())), origin: Origin::File(span) })
        }
        Err(e) => {
            let origin = e.span().map_or(Origin::Nowhere, Origin::File);
            diags.push(Diagnostic::new(format!("invalid TOML: {}", e.message().trim()), origin));
            None
        }
    }
}

fn table_entries(t: &DeTable<'_>) -> Vec<Entry> {
    let mut entries: Vec<Entry> = t
        .iter()
        .map(|(k, v)| Entry {
            key: k.get_ref().to_string(),
            key_origin: Origin::File(k.span()),
            node: Node { value: convert(v.get_ref()), origin: Origin::File(v.span()) },
        })
        .collect();
    entries.sort_by_key(|e| match &e.key_origin {
        Origin::File(r) => r.start,
        _ => usize::MAX,
    });
    entries
}

fn convert(v: &DeValue<'_>) -> Value {
    match v {
        DeValue::String(s) => Value::Str(s.to_string()),
        DeValue::Integer(i) => {
            let digits = i.as_str().replace('_', "");
            let digits = digits.trim_start_matches("0x").trim_start_matches("0o").trim_start_matches("0b");
            match i64::from_str_radix(digits, i.radix()) {
                Ok(n) => Value::Int(n),
                Err(_) => Value::Float(i.as_str().replace('_', "").parse().unwrap_or(f64::NAN)),
            }
        }
        DeValue::Float(f) => {
            let s = f.as_str().replace('_', "");
            Value::Float(match s.as_str() {
                "inf" | "+inf" => f64::INFINITY,
                "-inf" => f64::NEG_INFINITY,
                "nan" | "+nan" | "-nan" => f64::NAN,
                other => other.parse().unwrap_or(f64::NAN),
            })
        }
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(d) => Value::Datetime(d.to_string()),
        DeValue::Array(a) => Value::Array(
            a.iter().map(|x| Node { value: convert(x.get_ref()), origin: Origin::File(x.span()) }).collect(),
        ),
        DeValue::Table(t) => Value::Table(table_entries(t)),
    }
}

/// Applies one `key.path=value` override. Path segments are table keys or array indices
/// (`stage.0.lr=1e-4`); the value is read as TOML (`1e-4`, `true`, `"text"`, `[1, 2]`), and as a
/// plain string when it is not valid TOML (`model.path=models/x`). Missing tables are created.
pub fn apply_set(root: &mut Node, arg: &str, index: usize) -> Result<(), Diagnostic> {
    let origin = Origin::Set { index };
    let err = |m: String| Diagnostic::new(m, Origin::Set { index });
    let (path, raw) =
        arg.split_once('=').ok_or_else(|| err(format!("`{arg}` is not of the form key.path=value")))?;
    let segments: Vec<&str> = path.trim().split('.').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err(err(format!("`{path}` has an empty path segment")));
    }
    let value = match DeTable::parse(&format!("v = {raw}")) {
        Ok(t) => t
            .get_ref()
            .iter()
            .next()
            .map(|(_, v)| convert(v.get_ref()))
            .unwrap_or(Value::Str(raw.to_string())),
        Err(_) => Value::Str(raw.trim().to_string()),
    };
    let value = relabel(value, &origin);
    let mut node = root;
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        let here = segments[..=i].join(".");
        node = match &mut node.value {
            Value::Table(entries) => {
                let pos = match entries.iter().position(|e| e.key == *seg) {
                    Some(p) => p,
                    None => {
                        entries.push(Entry {
                            key: seg.to_string(),
                            key_origin: origin.clone(),
                            node: Node { value: Value::Table(vec![]), origin: origin.clone() },
                        });
                        entries.len() - 1
                    }
                };
                &mut entries[pos].node
            }
            Value::Array(items) => {
                let idx: usize =
                    seg.parse().map_err(|_| err(format!("`{here}`: `{seg}` must be an array index")))?;
                let n = items.len();
                items
                    .get_mut(idx)
                    .ok_or_else(|| err(format!("`{here}`: index {idx} is out of range ({n} entries)")))?
            }
            _ => {
                return Err(err(format!(
                    "`{here}`: cannot descend into a value that is not a table or array"
                )));
            }
        };
        if last {
            *node = Node { value: value.clone(), origin: origin.clone() };
        }
    }
    Ok(())
}

fn relabel(v: Value, origin: &Origin) -> Value {
    match v {
        Value::Array(a) => Value::Array(
            a.into_iter().map(|n| Node { value: relabel(n.value, origin), origin: origin.clone() }).collect(),
        ),
        Value::Table(e) => Value::Table(
            e.into_iter()
                .map(|en| Entry {
                    key: en.key,
                    key_origin: origin.clone(),
                    node: Node { value: relabel(en.node.value, origin), origin: origin.clone() },
                })
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(n: &'a Node, k: &str) -> &'a Node {
        &n.entries().unwrap().iter().find(|e| e.key == k).unwrap().node
    }

    #[test]
    fn spans_point_at_values() {
        let text = "name = \"x\"\n[[stage]]\nlr = 3e-4\n";
        let mut d = Diagnostics::default();
        let root = parse(text, &mut d).unwrap();
        let Value::Array(stages) = &get(&root, "stage").value else { panic!() };
        let lr = get(&stages[0], "lr");
        assert_eq!(lr.value, Value::Float(3e-4));
        let Origin::File(r) = &lr.origin else { panic!() };
        assert_eq!(&text[r.clone()], "3e-4");
    }

    #[test]
    fn set_overrides_values_creates_tables_and_indexes_arrays() {
        let mut d = Diagnostics::default();
        let mut root = parse("[[stage]]\nlr = 1.0\n", &mut d).unwrap();
        apply_set(&mut root, "stage.0.lr=2e-4", 0).unwrap();
        apply_set(&mut root, "model.path=models/a b", 1).unwrap();
        let Value::Array(stages) = &get(&root, "stage").value else { panic!() };
        assert_eq!(get(&stages[0], "lr").value, Value::Float(2e-4));
        assert_eq!(get(&stages[0], "lr").origin, Origin::Set { index: 0 });
        assert_eq!(get(get(&root, "model"), "path").value, Value::Str("models/a b".into()));
        assert!(apply_set(&mut root, "stage.3.lr=1", 2).unwrap_err().message.contains("out of range"));
        assert!(apply_set(&mut root, "nonsense", 3).is_err());
    }
}
