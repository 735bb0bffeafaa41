//! `report.html`: a self-contained summary of a run (stages, evaluations, gates, loss curve).

use serde_json::Value;
use std::fmt::Write;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Renders the report from the recipe name, per-stage result lines, gate lines and the metric
/// records.
pub fn render(name: &str, stages: &[String], gates: &[(String, bool)], metrics: &[Value]) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><meta charset=utf-8><title>slmc run {0}</title>\
         <style>body{{font:14px system-ui;margin:2em;max-width:60em}}td,th{{padding:2px 8px;text-align:left}}\
         .fail{{color:#b00}}.pass{{color:#070}}</style><h1>slmc run <code>{0}</code></h1><h2>Stages</h2><ol start=0>",
        esc(name)
    );
    for s in stages {
        let _ = write!(h, "<li>{}</li>", esc(s));
    }
    h.push_str("</ol>");
    if !gates.is_empty() {
        h.push_str("<h2>Gates</h2><ul>");
        for (g, ok) in gates {
            let _ = write!(
                h,
                "<li class={}>{} — {}</li>",
                if *ok { "pass" } else { "fail" },
                esc(g),
                if *ok { "pass" } else { "FAIL" }
            );
        }
        h.push_str("</ul>");
    }
    let steps: Vec<(f64, f64)> = metrics
        .iter()
        .filter(|m| m.get("event").and_then(Value::as_str) == Some("step"))
        .filter_map(|m| Some((m.get("tokens_seen")?.as_f64()?, m.get("loss")?.as_f64()?)))
        .collect();
    if steps.len() > 1 {
        let (x0, x1) = (steps[0].0, steps.last().unwrap().0.max(steps[0].0 + 1.0));
        let ymax = steps.iter().map(|s| s.1).fold(f64::MIN, f64::max);
        let ymin = steps.iter().map(|s| s.1).fold(f64::MAX, f64::min);
        let pts: Vec<String> = steps
            .iter()
            .map(|(x, y)| {
                format!(
                    "{:.1},{:.1}",
                    (x - x0) / (x1 - x0) * 600.0,
                    200.0 - (y - ymin) / (ymax - ymin).max(1e-9) * 190.0
                )
            })
            .collect();
        let _ = write!(
            h,
            "<h2>Training loss</h2><p>{ymax:.3} → {:.3} over {:.0} tokens</p>\
             <svg width=610 height=205 style='border:1px solid #ccc'><polyline fill=none stroke='#36c' points='{}'/></svg>",
            steps.last().unwrap().1,
            x1 - x0,
            pts.join(" ")
        );
    }
    let evals: Vec<&Value> =
        metrics.iter().filter(|m| m.get("event").and_then(Value::as_str) == Some("eval")).collect();
    if !evals.is_empty() {
        h.push_str("<h2>Evaluations</h2><table><tr><th>stage<th>step<th>loss<th>perplexity</tr>");
        for e in evals {
            let f = |k: &str| e.get(k).map_or(String::new(), |v| v.to_string());
            let _ =
                write!(h, "<tr><td>{}<td>{}<td>{}<td>{}</tr>", f("stage"), f("step"), f("loss"), f("ppl"));
        }
        h.push_str("</table>");
    }
    h
}
