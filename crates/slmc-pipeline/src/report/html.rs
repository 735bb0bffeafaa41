//! HTML building blocks of the report: escaping, tables, figures, and the page around the
//! sections (inline CSS for screen and print; no scripts, fonts or other external resources).

use super::plots::Chart;
use crate::PipelineError;

/// Escapes text for HTML content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A table cell: its HTML (already escaped) and whether it holds a number (right-aligned).
pub(crate) struct Cell {
    html: String,
    numeric: bool,
}

impl Cell {
    /// Text (escaped here).
    pub fn text(s: impl AsRef<str>) -> Self {
        Self { html: esc(s.as_ref()), numeric: false }
    }

    /// A number, already formatted.
    pub fn num(s: impl AsRef<str>) -> Self {
        Self { html: esc(s.as_ref()), numeric: true }
    }

    /// Markup built by the caller from escaped parts.
    pub fn html(html: String) -> Self {
        Self { html, numeric: false }
    }
}

/// A table with a header row (none when `headers` is empty); `class` names it for styling and
/// tests.
pub(crate) fn table(class: &str, headers: &[&str], rows: Vec<Vec<Cell>>) -> String {
    let mut h = format!("<table class=\"{class}\">");
    if !headers.is_empty() {
        h.push_str("<thead><tr>");
        for head in headers {
            h.push_str(&format!("<th>{}</th>", esc(head)));
        }
        h.push_str("</tr></thead>");
    }
    h.push_str("<tbody>");
    for row in rows {
        h.push_str("<tr>");
        for c in row {
            let class = if c.numeric { " class=\"n\"" } else { "" };
            h.push_str(&format!("<td{class}>{}</td>", c.html));
        }
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table>");
    h
}

/// A chart drawn to inline SVG in a `<figure>` whose `data-series` attribute lists its series
/// and point counts, with a caption.
pub(crate) fn figure(chart: &Chart, caption: &str) -> Result<String, PipelineError> {
    let svg = chart.svg(1000, 360)?;
    Ok(format!(
        "<figure class=\"chart\" data-series=\"{}\">{svg}<figcaption>{}</figcaption></figure>",
        esc(&chart.series_summary()),
        esc(caption)
    ))
}

const CSS: &str = "\
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#222;margin:2em auto;max-width:70em;padding:0 1em}\
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}\
h3{margin-bottom:.3em}\
table{border-collapse:collapse;margin:.6em 0 1em}th,td{padding:3px 10px;text-align:left;vertical-align:top;border-bottom:1px solid #eee}\
th{background:#f6f6f6;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}\
code,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.92em}\
.pass{color:#1a7f37;font-weight:600}.fail{color:#c62828;font-weight:600}.muted{color:#777}\
figure{margin:.8em 0 1.4em}figure svg{width:100%;height:auto;max-width:1000px;display:block}\
figcaption{color:#555;font-size:.92em;max-width:1000px}\
ul.glance{list-style:none;padding:0;display:grid;grid-template-columns:repeat(auto-fill,minmax(16em,1fr));gap:.6em}\
ul.glance li{border:1px solid #e3e3e3;border-radius:6px;padding:.5em .8em}ul.glance b{display:block;font-size:1.15em}\
@media print{body{margin:0;max-width:none;font-size:11px}h2{break-after:avoid}figure,table{break-inside:avoid}}";

/// The whole page: title, then the sections in order.
pub(crate) fn page(title: &str, sections: &[String]) -> String {
    let mut h = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{CSS}</style></head><body>\n",
        esc(title)
    );
    for s in sections {
        h.push_str(s);
        h.push('\n');
    }
    h.push_str("</body></html>\n");
    h
}
