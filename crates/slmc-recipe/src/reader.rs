//! Typed access to a table node that records every problem and, at the end, reports keys the
//! schema does not know with the closest known one.

use crate::diag::{Diagnostic, Diagnostics};
use crate::suggest::did_you_mean;
use crate::tree::{Entry, Node, Origin, Value};

/// An enum whose recipe spellings are one table: parsing ([`TableReader::named`]), the spelling
/// written back and the did-you-mean of a misspelling all read it.
pub trait Named: Copy + PartialEq + 'static {
    /// Every value with its recipe spelling.
    const NAMES: &'static [(Self, &'static str)];

    /// The recipe spelling.
    fn spelling(self) -> &'static str {
        Self::NAMES.iter().find(|(v, _)| *v == self).map(|(_, n)| *n).expect("every value is named")
    }

    /// The value spelled `name`, if there is one.
    fn from_spelling(name: &str) -> Option<Self> {
        Self::NAMES.iter().find(|(_, n)| *n == name).map(|(v, _)| *v)
    }

    /// Every spelling, in order.
    fn spellings() -> Vec<&'static str> {
        Self::NAMES.iter().map(|(_, n)| *n).collect()
    }
}

/// Reads one table; `finish` reports unknown keys.
pub struct TableReader<'a> {
    node: &'a Node,
    what: String,
    known: Vec<&'static str>,
}

impl<'a> TableReader<'a> {
    /// Wraps a table node; `what` names it in messages (`[model]`, `stage 2`).
    pub fn new(node: &'a Node, what: impl Into<String>, diags: &mut Diagnostics) -> Option<Self> {
        let what = what.into();
        if node.entries().is_none() {
            diags.push(Diagnostic::new(
                format!("{what} must be a table, found {}", node.type_name()),
                node.origin.clone(),
            ));
            return None;
        }
        Some(Self { node, what, known: Vec::new() })
    }

    /// What this table is called in messages.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// Where the table was written.
    pub fn origin(&self) -> &Origin {
        &self.node.origin
    }

    fn entry(&mut self, key: &'static str) -> Option<&'a Entry> {
        if !self.known.contains(&key) {
            self.known.push(key);
        }
        self.node.entries().and_then(|e| e.iter().find(|en| en.key == key))
    }

    /// The raw node of `key`.
    pub fn node(&mut self, key: &'static str) -> Option<&'a Node> {
        self.entry(key).map(|e| &e.node)
    }

    /// Reports that a required key is missing.
    pub fn missing(&self, key: &str, diags: &mut Diagnostics) {
        diags.push(Diagnostic::new(format!("missing `{key}` in {}", self.what), self.node.origin.clone()));
    }

    fn wrong(&self, key: &str, want: &str, n: &Node, diags: &mut Diagnostics) {
        diags.push(Diagnostic::new(
            format!("`{key}` in {} must be {want}, found {}", self.what, n.type_name()),
            n.origin.clone(),
        ));
    }

    /// A string value.
    pub fn string(&mut self, key: &'static str, diags: &mut Diagnostics) -> Option<(String, Origin)> {
        let n = self.node(key)?;
        match &n.value {
            Value::Str(s) => Some((s.clone(), n.origin.clone())),
            _ => {
                self.wrong(key, "a string", n, diags);
                None
            }
        }
    }

    /// A number (integers are accepted).
    pub fn float(&mut self, key: &'static str, diags: &mut Diagnostics) -> Option<(f64, Origin)> {
        let n = self.node(key)?;
        match n.value {
            Value::Float(f) if f.is_finite() => Some((f, n.origin.clone())),
            Value::Int(i) => Some((i as f64, n.origin.clone())),
            _ => {
                self.wrong(key, "a finite number", n, diags);
                None
            }
        }
    }

    /// A boolean.
    pub fn boolean(&mut self, key: &'static str, diags: &mut Diagnostics) -> Option<(bool, Origin)> {
        let n = self.node(key)?;
        match n.value {
            Value::Bool(b) => Some((b, n.origin.clone())),
            _ => {
                self.wrong(key, "true or false", n, diags);
                None
            }
        }
    }

    /// A non-negative integer.
    pub fn uint(&mut self, key: &'static str, diags: &mut Diagnostics) -> Option<(usize, Origin)> {
        let n = self.node(key)?;
        match n.value {
            Value::Int(i) if i >= 0 => Some((i as usize, n.origin.clone())),
            _ => {
                self.wrong(key, "a non-negative integer", n, diags);
                None
            }
        }
    }

    /// A number checked against a predicate (`rule` describes it: "> 0"); `default` when the
    /// key is absent or wrong (the problem is recorded).
    pub fn float_where(
        &mut self,
        key: &'static str,
        default: f64,
        rule: &str,
        ok: impl Fn(f64) -> bool,
        diags: &mut Diagnostics,
    ) -> f64 {
        let value = self.float(key, diags);
        self.checked(key, value, default, rule, ok, diags)
    }

    /// An integer checked against a predicate (see [`float_where`](Self::float_where)).
    pub fn uint_where(
        &mut self,
        key: &'static str,
        default: usize,
        rule: &str,
        ok: impl Fn(usize) -> bool,
        diags: &mut Diagnostics,
    ) -> usize {
        let value = self.uint(key, diags);
        self.checked(key, value, default, rule, ok, diags)
    }

    fn checked<T: Copy + std::fmt::Display>(
        &self,
        key: &str,
        value: Option<(T, Origin)>,
        default: T,
        rule: &str,
        ok: impl Fn(T) -> bool,
        diags: &mut Diagnostics,
    ) -> T {
        match value {
            Some((v, _)) if ok(v) => v,
            Some((v, origin)) => {
                diags.push(Diagnostic::new(
                    format!("`{key}` in {} must be {rule}, got {v}", self.what),
                    origin,
                ));
                default
            }
            None => default,
        }
    }

    /// A string that must be one of `choices`.
    pub fn choice(
        &mut self,
        key: &'static str,
        choices: &[&'static str],
        diags: &mut Diagnostics,
    ) -> Option<(&'static str, Origin)> {
        let (s, origin) = self.string(key, diags)?;
        match choices.iter().find(|c| **c == s) {
            Some(c) => Some((c, origin)),
            None => {
                let mut d = Diagnostic::new(
                    format!("`{key}` in {} must be one of {}, got `{s}`", self.what, quoted(choices)),
                    origin,
                );
                if let Some(l) = did_you_mean(&s, choices.iter().copied()) {
                    d = d.with_label(l);
                }
                diags.push(d);
                None
            }
        }
    }

    /// `key` as one of `E`'s spellings, with where it was written; `None` when it is absent or
    /// not one of them (then a diagnostic lists them).
    pub fn named<E: Named>(&mut self, key: &'static str, diags: &mut Diagnostics) -> Option<(E, Origin)> {
        let names: Vec<&'static str> = E::NAMES.iter().map(|(_, n)| *n).collect();
        let (s, origin) = self.choice(key, &names, diags)?;
        E::NAMES.iter().find(|(_, n)| *n == s).map(|(v, _)| (*v, origin))
    }

    /// Reports every key that was never asked for.
    pub fn finish(self, diags: &mut Diagnostics) {
        for e in self.node.entries().unwrap_or(&[]) {
            if !self.known.contains(&e.key.as_str()) {
                let mut d = Diagnostic::new(
                    format!("unknown key `{}` in {}", e.key, self.what),
                    e.key_origin.clone(),
                );
                match did_you_mean(&e.key, self.known.iter().copied()) {
                    Some(l) => d = d.with_label(l),
                    None => d = d.with_label(format!("expected one of {}", quoted(&self.known))),
                }
                diags.push(d);
            }
        }
    }
}

/// `a`, `b`, `c`.
pub fn quoted(items: &[&str]) -> String {
    items.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
}
