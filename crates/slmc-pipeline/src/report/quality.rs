//! Quality and size: every perplexity measured in the run with its change against the input
//! model, and every artifact with its format, storage type, size and bits per weight.

use super::artifacts::{self, Artifact};
use super::data::{EvalResult, RunData};
use super::fmt;
use super::html::{Cell, esc, table};
use crate::PipelineError;
use std::path::Path;

/// One perplexity measurement and what it measured.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EvalRow {
    /// Where it was measured (`stage 2 (eval)`, `baseline.json`).
    pub source: String,
    /// Which model (`input model`, `output of stage 1 (distill)`).
    pub model: String,
    /// The measurement.
    pub measured: EvalResult,
    /// Whether it measured the input model.
    pub is_input: bool,
}

/// Every perplexity of the run: the baseline, each eval stage, and the final model's when it was
/// measured only for the gates.
pub(crate) fn evaluations(run: &RunData) -> Vec<EvalRow> {
    let mut rows = Vec::new();
    if let Some(b) = run.baseline {
        rows.push(EvalRow {
            source: "before the stages (baseline.json)".into(),
            model: "input model".into(),
            measured: b,
            is_input: true,
        });
    }
    for s in &run.stages {
        let Some(m) = s.eval() else { continue };
        let before = run.model_before(s.index);
        rows.push(EvalRow {
            source: s.label(),
            model: before.map_or("input model".into(), |b| format!("output of {}", b.label())),
            measured: m,
            is_input: before.is_none(),
        });
    }
    let final_eval = run.outcome.as_ref().and_then(|o| o.final_eval);
    if let Some(f) = final_eval
        && !rows.iter().any(|r| r.measured == f)
    {
        let last = run.stages.iter().rev().find(|s| s.changed_model);
        rows.push(EvalRow {
            source: "end of the run (for the gates)".into(),
            model: last.map_or("input model".into(), |b| format!("output of {}", b.label())),
            measured: f,
            is_input: last.is_none(),
        });
    }
    rows
}

/// The input model's measurement over the same number of tokens as `row` (a perplexity is only
/// comparable on the same tokens).
pub(crate) fn reference<'a>(rows: &'a [EvalRow], row: &EvalRow) -> Option<&'a EvalResult> {
    rows.iter().find(|r| r.is_input && r.measured.tokens == row.measured.tokens).map(|r| &r.measured)
}

fn evaluations_table(rows: &[EvalRow]) -> String {
    let body = rows
        .iter()
        .map(|r| {
            let delta = if r.is_input {
                "reference".to_string()
            } else {
                reference(rows, r).map_or("–".into(), |b| {
                    format!("{:+.3} ({})", r.measured.ppl - b.ppl, fmt::percent_change(r.measured.ppl, b.ppl))
                })
            };
            vec![
                Cell::text(&r.source),
                Cell::text(&r.model),
                Cell::num(fmt::count(r.measured.tokens as u64)),
                Cell::num(fmt::loss(r.measured.mean_nll)),
                Cell::num(fmt::ppl(r.measured.ppl)),
                Cell::num(delta),
            ]
        })
        .collect();
    table(
        "evaluations",
        &["measured at", "model", "tokens", "mean NLL (nats)", "perplexity", "Δ vs input model"],
        body,
    )
}

/// The input model, described from its directory (when the manifest's paths reach it from
/// here); its size counts the model's files the manifest lists, not others beside them.
fn input_model(run: &RunData) -> Option<Artifact> {
    let inputs: Vec<&Path> = run.manifest.inputs.keys().map(Path::new).collect();
    let dir = inputs.iter().find(|p| p.ends_with("config.json"))?.parent()?;
    let mut a = artifacts::describe_model_dir(dir, format!("input model ({})", dir.display())).ok()?;
    a.disk_bytes =
        inputs.iter().filter(|p| p.parent() == Some(dir)).filter_map(|p| artifacts::file_len(p).ok()).sum();
    Some(a)
}

fn artifacts_table(run: &RunData) -> String {
    let final_ppl = run.outcome.as_ref().and_then(|o| o.final_eval).map(|m| m.ppl);
    let row = |a: &Artifact, ppl: Option<f64>| {
        vec![
            Cell::html(format!("<code>{}</code>", esc(&a.name))),
            Cell::text(a.format),
            Cell::text(&a.kind),
            Cell::num(fmt::mb(a.disk_bytes)),
            Cell::num(a.bits_per_weight().map_or("–".into(), |b| format!("{b:.2}"))),
            Cell::num(ppl.map_or("–".into(), fmt::ppl)),
        ]
    };
    let input = input_model(run);
    let input_ppl = evaluations(run).iter().find(|r| r.is_input).map(|r| r.measured.ppl);
    let body: Vec<Vec<Cell>> = input
        .iter()
        .map(|a| row(a, input_ppl))
        .chain(run.artifacts.iter().map(|a| row(a, final_ppl)))
        .collect();
    table("artifacts", &["artifact", "format", "stored as", "MB on disk", "bits/weight", "perplexity"], body)
}

/// The quality and size section.
pub(crate) fn section(run: &RunData) -> Result<String, PipelineError> {
    let rows = evaluations(run);
    let mut h = String::from("<section id=\"quality\"><h2>Quality and size</h2><h3>Evaluations</h3>");
    if rows.is_empty() {
        h.push_str("<p class=\"muted\">No perplexity was measured (add an <code>eval</code> stage).</p>");
    } else {
        h.push_str(&evaluations_table(&rows));
        h.push_str(
            "<p class=\"muted\">Perplexity over the held-out stream (sliding window). Δ compares with the \
             input model measured over the same number of tokens.</p>",
        );
    }
    h.push_str("<h3>Artifacts</h3>");
    if run.artifacts.is_empty() {
        let why =
            if run.finished() { "the recipe exports nothing" } else { "the run has not reached its exports" };
        h.push_str(&format!("<p class=\"muted\">No artifacts ({why}).</p>"));
    } else {
        h.push_str(&artifacts_table(run));
        h.push_str(
            "<p class=\"muted\">MB on disk: every file of the artifact (10⁶ bytes). Bits/weight: 8 × bytes of \
             the weight files (a whole .gguf, a directory's *.safetensors) ÷ parameters. Perplexity: the \
             final model as measured in the run, which the artifacts were exported from (a GGUF holds a \
             quantize stage's codes exactly; a narrower dtype rounds the other weights).</p>",
        );
    }
    h.push_str("</section>");
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::data::{Gate, Outcome, test_run};
    use serde_json::json;

    #[test]
    fn each_evaluation_is_compared_with_the_input_model_on_the_same_tokens() {
        let eval = |ppl: f64, tokens: u64| Some(json!({"mean_nll": ppl.ln(), "ppl": ppl, "tokens": tokens}));
        let mut run = test_run(
            vec![
                (0, "eval", eval(100.0, 8192), false),
                (1, "distill", Some(json!({})), true),
                (2, "eval", eval(110.0, 8192), false),
                (3, "quantize", Some(json!({})), true),
            ],
            Vec::new(),
        );
        run.baseline = Some(EvalResult { mean_nll: 4.0, ppl: 90.0, tokens: 20000 });
        // EvalResult for the gates over the whole stream (as the baseline).
        let last = EvalResult { mean_nll: 4.7, ppl: 99.0, tokens: 20000 };
        run.outcome =
            Some(Outcome { gates: vec![Gate { gate: "g".into(), passed: true }], final_eval: Some(last) });
        let rows = evaluations(&run);
        let models: Vec<&str> = rows.iter().map(|r| r.model.as_str()).collect();
        assert_eq!(
            models,
            ["input model", "input model", "output of stage 1 (distill)", "output of stage 3 (quantize)"]
        );
        assert_eq!(reference(&rows, &rows[2]).map(|m| m.ppl), Some(100.0), "8192 tokens: stage 0");
        assert_eq!(reference(&rows, &rows[3]).map(|m| m.ppl), Some(90.0), "whole stream: the baseline");
        let html = evaluations_table(&rows);
        assert!(html.contains("+10.000 (+10.00 %)") && html.contains("+9.000 (+10.00 %)"), "{html}");
    }
}
