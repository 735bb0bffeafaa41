//! Diagnostics: a message anchored at a place in the recipe (a byte span of the file or a
//! `--set` argument), rendered like a compiler error with line, column, the source line and a
//! caret.

use crate::tree::Origin;
use std::fmt::Write;

/// One problem in a recipe.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    /// What is wrong.
    pub message: String,
    /// Where.
    pub origin: Origin,
    /// A note under the caret (e.g. "did you mean `lr`?").
    pub label: Option<String>,
}

impl Diagnostic {
    /// A problem at `origin`.
    pub fn new(message: impl Into<String>, origin: Origin) -> Self {
        Self { message: message.into(), origin, label: None }
    }

    /// A problem with no location.
    pub fn plain(message: impl Into<String>) -> Self {
        Self::new(message, Origin::Nowhere)
    }

    /// Adds a note under the caret.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }
}

/// All problems found in one recipe.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Records a problem.
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }
    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Orders problems as a reader meets them: file order, then `--set` arguments in order.
    pub fn sort_by_position(&mut self) {
        self.0.sort_by_key(|d| match &d.origin {
            Origin::File(r) => (0, r.start),
            Origin::Set { index } => (1, *index),
            Origin::Nowhere => (2, 0),
        });
    }

    /// Number of problems.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// The texts diagnostics point into.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The recipe's file name as given.
    pub file_name: String,
    /// The recipe text.
    pub text: String,
    /// The `--set` arguments, in order.
    pub sets: Vec<String>,
}

impl Sources {
    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, self.text[line_start..offset].chars().count() + 1)
    }

    /// Renders one diagnostic.
    pub fn render(&self, d: &Diagnostic) -> String {
        let mut out = format!("error: {}\n", d.message);
        match &d.origin {
            Origin::File(span) => {
                let (line, col) = self.line_col(span.start);
                let _ = writeln!(out, "  --> {}:{line}:{col}", self.file_name);
                let text = self.text.lines().nth(line - 1).unwrap_or("");
                let gutter = " ".repeat(line.to_string().len());
                let width = {
                    let end = span.end.min(self.text.len()).max(span.start);
                    let same_line = self.text[span.start..end].split('\n').next().unwrap_or("");
                    same_line.chars().count().max(1)
                };
                let _ = writeln!(out, "{gutter} |");
                let _ = writeln!(out, "{line} | {text}");
                let label = d.label.as_deref().map(|l| format!(" {l}")).unwrap_or_default();
                let _ = writeln!(out, "{gutter} | {}{}{label}", " ".repeat(col - 1), "^".repeat(width));
            }
            Origin::Set { index } => {
                let arg = self.sets.get(*index).map(String::as_str).unwrap_or("?");
                let _ = writeln!(out, "  --> --set {arg}");
                if let Some(l) = &d.label {
                    let _ = writeln!(out, "   = {l}");
                }
            }
            Origin::Nowhere => {
                if let Some(l) = &d.label {
                    let _ = writeln!(out, "   = {l}");
                }
            }
        }
        out
    }

    /// Renders every diagnostic and a summary line.
    pub fn render_all(&self, ds: &Diagnostics) -> String {
        let mut out: String = ds.0.iter().map(|d| self.render(d) + "\n").collect();
        let n = ds.len();
        let _ = write!(out, "error: {} has {n} problem{}", self.file_name, if n == 1 { "" } else { "s" });
        out
    }
}
