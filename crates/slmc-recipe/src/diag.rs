//! Diagnostics: a message anchored at a place in the recipe (a byte span of the file or a
//! `--set` argument), rendered like a compiler error with line, column, the source line and a
//! caret.

use crate::tree::Origin;
use std::fmt::Write;

/// At most this many diagnostics are rendered; the rest are counted.
pub const MAX_SHOWN: usize = 20;
/// A quoted source line is cut to a window of about this many characters around the caret.
pub const QUOTE_CHARS: usize = 100;

/// The part of `line` to quote for a caret at 1-based character column `col`, `width`
/// characters wide: the whole line when it is short, else a window around the caret with `…`
/// where it was cut. Returns the quote and the caret's column and width within it.
fn quote_window(line: &str, col: usize, width: usize) -> (String, usize, usize) {
    let chars = line.chars().count();
    let width = width.clamp(1, QUOTE_CHARS / 2);
    if chars <= QUOTE_CHARS {
        return (line.to_string(), col, width.min(chars.saturating_sub(col - 1)).max(1));
    }
    let start = (col - 1).saturating_sub(QUOTE_CHARS / 4);
    let end = (start + QUOTE_CHARS).min(chars);
    let window: String = line.chars().skip(start).take(end - start).collect();
    let (lead, tail) = (if start > 0 { "…" } else { "" }, if end < chars { "…" } else { "" });
    (format!("{lead}{window}{tail}"), col - start + lead.chars().count(), width)
}

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
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, self.text[line_start..offset].chars().count() + 1)
    }

    /// Renders one diagnostic: the message, `--> file:line:col`, the source line (a window of at
    /// most [`QUOTE_CHARS`] characters around the caret when it is longer) and the caret.
    pub fn render(&self, d: &Diagnostic) -> String {
        let mut out = format!("error: {}\n", d.message);
        match &d.origin {
            Origin::File(span) => {
                let (line, col) = self.line_col(span.start);
                let _ = writeln!(out, "  --> {}:{line}:{col}", self.file_name);
                let text = self.text.lines().nth(line - 1).unwrap_or("");
                let gutter = " ".repeat(line.to_string().len());
                let width = {
                    let start = span.start.min(self.text.len());
                    let end = span.end.min(self.text.len()).max(start);
                    let same_line =
                        self.text.get(start..end).and_then(|t| t.split('\n').next()).unwrap_or("");
                    same_line.chars().count().max(1)
                };
                let (quoted, caret_col, width) = quote_window(text, col, width);
                let _ = writeln!(out, "{gutter} |");
                let _ = writeln!(out, "{line} | {quoted}");
                let label = d.label.as_deref().map(|l| format!(" {l}")).unwrap_or_default();
                let _ = writeln!(out, "{gutter} | {}{}{label}", " ".repeat(caret_col - 1), "^".repeat(width));
            }
            Origin::Set { index } => {
                let arg = self.sets.get(*index).map(String::as_str).unwrap_or("?");
                let _ = writeln!(out, "  --> --set {}", quote_window(arg, 1, 1).0);
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

    /// Renders the first [`MAX_SHOWN`] diagnostics, then how many more there are.
    pub fn render_some(&self, ds: &[Diagnostic]) -> String {
        let mut out: String = ds.iter().take(MAX_SHOWN).map(|d| self.render(d) + "\n").collect();
        if ds.len() > MAX_SHOWN {
            let _ = writeln!(out, "error: … and {} more problems\n", ds.len() - MAX_SHOWN);
        }
        out
    }

    /// Renders every diagnostic and a summary line.
    pub fn render_all(&self, ds: &Diagnostics) -> String {
        let mut out = self.render_some(&ds.0);
        let n = ds.len();
        let _ = write!(out, "error: {} has {n} problem{}", self.file_name, if n == 1 { "" } else { "s" });
        out
    }
}
