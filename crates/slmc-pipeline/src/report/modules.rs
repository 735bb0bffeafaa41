//! Stages that change modules one by one (quantize; prune logs the same shape of line with a
//! `sparsity` field): relative output error, and sparsity when logged, by decoder layer with one
//! series per module kind, and the worst modules named.

use super::data::RunData;
use super::fmt;
use super::html::{Cell, esc, figure, table};
use super::plots::{Chart, Series, YScale};
use super::stats::median;
use crate::PipelineError;
use crate::metrics::MetricLine;
use serde_json::Value;

/// How many of the worst modules a stage lists.
const WORST: usize = 5;

/// One module's line in `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ModuleRow {
    /// Full name (`model.layers.3.mlp.down_proj`).
    pub name: String,
    /// Decoder layer, when the name has one.
    pub layer: Option<usize>,
    /// The name after the layer (`mlp.down_proj`), or the full name.
    pub kind: String,
    /// `[out, in]`.
    pub shape: Option<[u64; 2]>,
    /// ‖ΔW X‖² / ‖W X‖² on the calibration inputs.
    pub rel_error: Option<f64>,
    /// Fraction of zero weights.
    pub sparsity: Option<f64>,
    /// Wall time.
    pub seconds: Option<f64>,
}

impl ModuleRow {
    fn from_line(line: &MetricLine) -> Option<Self> {
        let (MetricLine::Quantize(m) | MetricLine::Prune(m)) = line else { return None };
        let (layer, kind) = split_layer(&m.module);
        Some(Self {
            layer,
            kind,
            shape: Some([m.shape[0] as u64, m.shape[1] as u64]),
            rel_error: m.rel_error,
            sparsity: m.details.get("sparsity").and_then(Value::as_f64),
            seconds: Some(m.seconds),
            name: m.module.clone(),
        })
    }
}

/// `model.layers.3.mlp.down_proj` → `(Some(3), "mlp.down_proj")`.
fn split_layer(name: &str) -> (Option<usize>, String) {
    match slmc_config::hf_config::split_layer_name(name) {
        Some((layer, kind)) => (Some(layer), kind.to_string()),
        None => (None, name.to_string()),
    }
}

/// The module lines of stage `index`, in the order logged.
pub(crate) fn module_rows(run: &RunData, index: usize) -> Vec<ModuleRow> {
    run.stage_metrics(index).filter_map(ModuleRow::from_line).collect()
}

/// A by-layer chart of `value`, one series per module kind (in the order first logged).
fn by_layer(
    rows: &[ModuleRow],
    title: &str,
    y_desc: &str,
    y_scale: YScale,
    value: impl Fn(&ModuleRow) -> Option<f64>,
) -> Chart {
    let mut kinds: Vec<&str> = Vec::new();
    for r in rows {
        if !kinds.contains(&r.kind.as_str()) {
            kinds.push(&r.kind);
        }
    }
    let series = kinds
        .iter()
        .enumerate()
        .map(|(i, kind)| Series {
            label: kind.to_string(),
            points: rows
                .iter()
                .filter(|r| r.kind == *kind)
                .filter_map(|r| Some((r.layer? as f64, value(r)?)))
                .collect(),
            color: i,
            dots: true,
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    Chart {
        title: title.into(),
        x_desc: "decoder layer".into(),
        y_desc: y_desc.into(),
        series,
        markers: Vec::new(),
        y_scale,
        integer_x: true,
    }
}

/// The `n` rows with the largest `key`, largest first.
fn worst(rows: &[ModuleRow], n: usize, key: impl Fn(&ModuleRow) -> Option<f64>) -> Vec<&ModuleRow> {
    let mut ranked: Vec<(&ModuleRow, f64)> = rows.iter().filter_map(|r| Some((r, key(r)?))).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked.into_iter().take(n).map(|(r, _)| r).collect()
}

fn stage_section(
    run: &RunData,
    index: usize,
    label: &str,
    rows: &[ModuleRow],
) -> Result<String, PipelineError> {
    let errors: Vec<f64> = rows.iter().filter_map(|r| r.rel_error).collect();
    let has_sparsity = rows.iter().any(|r| r.sparsity.is_some());
    let mut h = format!("<h3>{}: {} modules</h3>", esc(label), rows.len());
    if let Some(s) = run.stages.iter().find(|s| s.index == index).and_then(|s| s.summary()) {
        h.push_str(&format!("<p>{}</p>", esc(s)));
    }
    if errors.is_empty() {
        h.push_str("<p class=\"muted\">No output error was measured (round-to-nearest uses no calibration inputs).</p>");
    } else {
        let chart = by_layer(
            rows,
            "Relative output error by layer",
            "‖ΔW·X‖² / ‖W·X‖² (log scale)",
            YScale::Log,
            |r| r.rel_error,
        );
        let top = worst(rows, 1, |r| r.rel_error);
        let caption = format!(
            "Relative output error of each module on the calibration inputs (lower is better): median {}, largest {} ({}).",
            fmt::sci(median(&errors).unwrap_or_default()),
            fmt::sci(top[0].rel_error.unwrap_or_default()),
            top[0].name
        );
        h.push_str(&figure(&chart, &caption)?);
    }
    if has_sparsity {
        let chart = by_layer(rows, "Sparsity by layer", "zero weights (%)", YScale::Linear, |r| {
            r.sparsity.map(|s| s * 100.0)
        });
        h.push_str(&figure(&chart, "Fraction of each module's weights that are zero.")?);
    }
    let ranked = if errors.is_empty() {
        worst(rows, WORST, |r| r.sparsity)
    } else {
        worst(rows, WORST, |r| r.rel_error)
    };
    if !ranked.is_empty() {
        let mut headers = vec!["module", "shape", "relative output error"];
        if has_sparsity {
            headers.push("sparsity");
        }
        headers.push("seconds");
        let body = ranked
            .iter()
            .map(|r| {
                let mut row = vec![
                    Cell::html(format!("<code>{}</code>", esc(&r.name))),
                    Cell::num(r.shape.map_or(String::new(), |[o, i]| format!("{o} × {i}"))),
                    Cell::num(r.rel_error.map_or("–".into(), fmt::sci)),
                ];
                if has_sparsity {
                    row.push(Cell::num(r.sparsity.map_or("–".into(), |s| format!("{:.1} %", s * 100.0))));
                }
                row.push(Cell::num(r.seconds.map_or("–".into(), |s| format!("{s:.2}"))));
                row
            })
            .collect();
        h.push_str(&format!("<p>The {} worst modules:</p>", ranked.len()));
        h.push_str(&table("worst-modules", &headers, body));
    }
    Ok(h)
}

/// One subsection per stage that logged modules, or nothing.
pub(crate) fn section(run: &RunData) -> Result<String, PipelineError> {
    let mut parts = Vec::new();
    for stage in &run.stages {
        let rows = module_rows(run, stage.index);
        if !rows.is_empty() {
            parts.push(stage_section(run, stage.index, &stage.label(), &rows)?);
        }
    }
    if parts.is_empty() {
        return Ok(String::new());
    }
    Ok(format!("<section id=\"modules\"><h2>Per-module results</h2>{}</section>", parts.concat()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::data::test_run;
    use serde_json::json;

    #[test]
    fn layer_and_kind_come_from_the_module_name() {
        assert_eq!(split_layer("model.layers.12.mlp.down_proj"), (Some(12), "mlp.down_proj".to_string()));
        assert_eq!(split_layer("lm_head"), (None, "lm_head".to_string()));
    }

    #[test]
    fn a_stage_with_sparsity_gets_a_sparsity_chart_and_column() {
        let line = |layer: usize, kind: &str, err: f64, sparsity: f64| {
            json!({"event": "prune", "stage": 0, "block": layer, "module": format!("model.layers.{layer}.{kind}"),
                   "shape": [8, 4], "rel_error": err, "sparsity": sparsity, "seconds": 0.5})
        };
        let metrics = vec![
            line(0, "mlp.up_proj", 1e-3, 0.5),
            line(0, "mlp.down_proj", 4e-3, 0.5),
            line(1, "mlp.up_proj", 2e-3, 0.25),
            line(1, "mlp.down_proj", 3e-3, 0.75),
        ];
        let run = test_run(vec![(0, "prune", None, true)], metrics);
        let rows = module_rows(&run, 0);
        let errors = by_layer(&rows, "e", "e", YScale::Log, |r| r.rel_error);
        assert_eq!(errors.series_summary(), "mlp.up_proj: 2; mlp.down_proj: 2");
        assert_eq!(errors.series[1].points, vec![(0.0, 4e-3), (1.0, 3e-3)]);
        let names: Vec<&str> = worst(&rows, 2, |r| r.rel_error).iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"]);
        let html = section(&run).unwrap();
        assert!(
            html.contains("data-series=\"mlp.up_proj: 2; mlp.down_proj: 2\"")
                && html.contains("Sparsity by layer")
        );
        assert!(html.contains("<th>sparsity</th>") && html.contains("75.0 %"));
        assert!(html.contains("largest 4.00e-3 (model.layers.0.mlp.down_proj)"));
    }
}
