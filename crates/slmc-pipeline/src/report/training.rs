//! Training stages: training and validation loss, learning rate and throughput against training
//! tokens (one axis across the run's training stages, with their boundaries marked), and one
//! summary row per stage.

use super::data::{RunData, StageInfo};
use super::fmt;
use super::html::{Cell, figure, table};
use super::plots::{Chart, Marker, Series, YScale};
use super::stats::median;
use crate::PipelineError;
use crate::metrics::MetricLine;
use slmc_recipe::Kind;

/// One logged optimizer step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct StepPoint {
    /// Steps done.
    pub step: u64,
    /// Training tokens consumed by the stage so far.
    pub tokens: f64,
    /// Loss of the step (the stage's objective).
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Throughput since the previous logged step.
    pub tokens_per_s: f64,
}

/// A held-out evaluation during training.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ValPoint {
    /// Steps done.
    pub step: u64,
    /// Training tokens consumed by the stage at that step.
    pub tokens: f64,
    /// Mean next-token NLL.
    pub loss: f64,
}

/// The metrics of one training stage.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TrainingStage<'a> {
    /// The stage.
    pub stage: &'a StageInfo,
    /// Training tokens of the run's earlier training stages (where this stage starts on the
    /// shared axis).
    pub offset: f64,
    /// Logged steps, in order.
    pub steps: Vec<StepPoint>,
    /// Validation points, in order.
    pub evals: Vec<ValPoint>,
}

impl TrainingStage<'_> {
    /// What the stage's step loss is.
    fn objective(&self) -> &'static str {
        if self.stage.kind == Kind::Distill { "distillation objective" } else { "training loss" }
    }
}

/// The run's training stages (those that logged steps), in order.
pub(crate) fn training_stages(run: &RunData) -> Vec<TrainingStage<'_>> {
    let mut out = Vec::new();
    let mut offset = 0.0;
    for stage in &run.stages {
        let lines: Vec<&MetricLine> = run.stage_metrics(stage.index).collect();
        let steps: Vec<StepPoint> = lines
            .iter()
            .filter_map(|l| match l {
                MetricLine::Step { step, loss, lr, tokens_seen, tokens_per_s, .. } => Some(StepPoint {
                    step: *step,
                    tokens: *tokens_seen as f64,
                    loss: *loss,
                    lr: *lr,
                    tokens_per_s: *tokens_per_s,
                }),
                _ => None,
            })
            .collect();
        let Some(last) = steps.last().copied() else { continue };
        let tokens_per_step = last.tokens / last.step.max(1) as f64;
        let evals = lines
            .iter()
            .filter_map(|l| match l {
                MetricLine::Eval { step: Some(step), loss, .. } => {
                    Some(ValPoint { step: *step, tokens: *step as f64 * tokens_per_step, loss: *loss })
                }
                _ => None,
            })
            .collect();
        out.push(TrainingStage { stage, offset, steps, evals });
        offset += last.tokens;
    }
    out
}

/// The charts over the shared token axis, each with its caption: training and validation loss
/// together when both are cross-entropy, else the training objective and the validation loss
/// apart (a distillation objective is on another scale); learning rate; throughput.
pub(crate) fn charts(stages: &[TrainingStage<'_>]) -> Vec<(Chart, String)> {
    let total = stages.last().map_or(0.0, |s| s.offset + s.steps.last().map_or(0.0, |p| p.tokens));
    let (scale, unit) = fmt::token_scale(total);
    let x_desc =
        if unit.is_empty() { "training tokens".to_string() } else { format!("training tokens ({unit})") };
    let markers: Vec<Marker> = stages
        .iter()
        .map(|s| Marker { x: s.offset / scale, label: format!("stage {} {}", s.stage.index, s.stage.kind) })
        .collect();
    let chart = |title: &str, y_desc: &str, series: Vec<Series>| Chart {
        title: title.into(),
        x_desc: x_desc.clone(),
        y_desc: y_desc.into(),
        series,
        markers: markers.clone(),
        y_scale: YScale::Linear,
        integer_x: false,
    };
    // One series per stage of `what` (steps, or validation points with dots), coloured by stage.
    let steps = |what: &dyn Fn(&TrainingStage<'_>) -> String, y: &dyn Fn(&StepPoint) -> f64| -> Vec<Series> {
        let line = |(i, s): (usize, &TrainingStage<'_>)| Series {
            label: what(s),
            points: s.steps.iter().map(|p| ((s.offset + p.tokens) / scale, y(p))).collect(),
            color: 2 * i,
            dots: false,
        };
        stages.iter().enumerate().map(line).collect()
    };
    let validation: Vec<Series> = stages
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.evals.is_empty())
        .map(|(i, s)| Series {
            label: format!("stage {} validation loss", s.stage.index),
            points: s.evals.iter().map(|p| ((s.offset + p.tokens) / scale, p.loss)).collect(),
            color: 2 * i + 1,
            dots: true,
        })
        .collect();
    let train = steps(&|s| format!("stage {} {}", s.stage.index, s.objective()), &|p| p.loss);
    let mut out = Vec::new();
    if stages.iter().all(|s| s.stage.kind != Kind::Distill) {
        let series = train.into_iter().chain(validation).collect();
        out.push((chart("Loss", "loss (nats/token)", series), caption(stages)));
    } else {
        out.push((chart("Training objective", "objective (nats/token)", train), caption(stages)));
        if !validation.is_empty() {
            let note = "Validation loss: mean next-token cross-entropy of held-out sequences \
                        (eval-sequences of them, every eval-every steps and at the end).";
            out.push((chart("Validation loss", "loss (nats/token)", validation), note.into()));
        }
    }
    let lr = steps(&|s| format!("stage {} learning rate", s.stage.index), &|p| p.lr);
    out.push((
        chart("Learning rate", "learning rate", lr),
        "Learning rate of each logged step (warm-up, then the schedule's decay).".into(),
    ));
    let speed = steps(&|s| format!("stage {} tokens/s", s.stage.index), &|p| p.tokens_per_s);
    out.push((
        chart("Throughput", "throughput (tokens/s)", speed),
        "Training throughput between logged steps (tokens per second of wall time).".into(),
    ));
    out
}

/// `a → b`, or `a` when there is one value.
fn from_to(values: &[f64], show: impl Fn(f64) -> String) -> String {
    match (values.first(), values.last()) {
        (Some(a), Some(b)) if values.len() > 1 => format!("{} → {}", show(*a), show(*b)),
        (Some(a), _) => show(*a),
        _ => "–".into(),
    }
}

/// One sentence per stage: how the losses moved.
fn caption(stages: &[TrainingStage<'_>]) -> String {
    let mut parts = Vec::new();
    for s in stages {
        let last = s.steps.last().expect("training stages have steps");
        let train: Vec<f64> = s.steps.iter().map(|p| p.loss).collect();
        let val: Vec<f64> = s.evals.iter().map(|p| p.loss).collect();
        let mut t = format!(
            "{}: {} {} over {} steps ({} tokens)",
            s.stage.label(),
            s.objective(),
            from_to(&train, fmt::loss),
            last.step,
            fmt::count(last.tokens as u64)
        );
        if !val.is_empty() {
            t.push_str(&format!(
                "; validation loss {} (perplexity {}) in {} evaluation(s)",
                from_to(&val, fmt::loss),
                from_to(&val, |l| fmt::ppl(l.exp())),
                val.len()
            ));
        }
        if s.stage.kind == Kind::Distill {
            t.push_str(" (the distillation objective mixes the KD divergence × τ² with cross-entropy: it is not on the validation loss's scale)");
        }
        parts.push(t);
    }
    parts.join(". ") + "."
}

/// The training section, or nothing when no stage trained.
pub(crate) fn section(run: &RunData) -> Result<String, PipelineError> {
    let stages = training_stages(run);
    if stages.is_empty() {
        return Ok(String::new());
    }
    let mut h = String::from("<section id=\"training\"><h2>Training</h2>");
    let rows = stages
        .iter()
        .map(|s| {
            let last = s.steps.last().expect("training stages have steps");
            let val: Vec<f64> = s.evals.iter().map(|p| p.loss).collect();
            vec![
                Cell::text(s.stage.label()),
                Cell::num(fmt::count(last.step)),
                Cell::num(fmt::count(last.tokens as u64)),
                Cell::num(from_to(&s.steps.iter().map(|p| p.loss).collect::<Vec<_>>(), fmt::loss)),
                Cell::num(from_to(&val, fmt::loss)),
                Cell::num(val.last().map_or("–".into(), |l| fmt::ppl(l.exp()))),
                Cell::num(
                    median(&s.steps.iter().map(|p| p.tokens_per_s).collect::<Vec<_>>())
                        .map_or("–".into(), |v| format!("{v:.0}")),
                ),
                Cell::num(s.stage.wall_seconds().map_or("–".into(), fmt::seconds)),
            ]
        })
        .collect();
    h.push_str(&table(
        "training",
        &[
            "stage",
            "steps",
            "tokens",
            "training loss or objective (first → last)",
            "validation loss",
            "validation perplexity",
            "median tokens/s",
            "wall time",
        ],
        rows,
    ));
    for (chart, caption) in charts(&stages) {
        h.push_str(&figure(&chart, &caption)?);
    }
    h.push_str("</section>");
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::data::test_run;
    use serde_json::{Value, json};

    fn step(stage: usize, step: u64, tokens: u64, loss: f64) -> Value {
        json!({"event": "step", "stage": stage, "step": step, "loss": loss, "lr": 1e-3, "grad_norm": 1.0,
               "tokens_seen": tokens, "tokens_per_s": 1000.0})
    }

    #[test]
    fn stages_share_one_token_axis_with_boundaries_and_validation_at_its_step() {
        // Stage 0 trains 2 steps of 1000 tokens (validation at step 2); stage 2 trains 3 steps of 500.
        let mut metrics = vec![step(0, 1, 1000, 5.0), step(0, 2, 2000, 4.0)];
        metrics.push(json!({"event": "eval", "stage": 0, "step": 2, "loss": 4.5, "ppl": 4.5f64.exp()}));
        metrics.push(json!({"event": "eval", "stage": 1, "loss": 4.4, "ppl": 81.0, "tokens": 100}));
        metrics.extend((1..=3).map(|s| step(2, s, 500 * s, 4.0 - s as f64 * 0.1)));
        let run = test_run(
            vec![(0, "finetune", None, true), (1, "eval", None, false), (2, "distill", None, true)],
            metrics,
        );
        let stages = training_stages(&run);
        assert_eq!(stages.len(), 2, "the eval stage logged no steps");
        assert_eq!((stages[0].offset, stages[1].offset), (0.0, 2000.0));
        assert_eq!(stages[0].evals, vec![ValPoint { step: 2, tokens: 2000.0, loss: 4.5 }]);
        let charts = charts(&stages);
        let titles: Vec<&str> = charts.iter().map(|c| c.0.title.as_str()).collect();
        assert_eq!(titles, ["Training objective", "Validation loss", "Learning rate", "Throughput"]);
        let (train, val) = (&charts[0].0, &charts[1].0);
        assert_eq!(train.x_desc, "training tokens (thousands)");
        assert_eq!(train.series_summary(), "stage 0 training loss: 2; stage 2 distillation objective: 3");
        assert_eq!(train.series[1].points, vec![(2.5, 3.9), (3.0, 3.8), (3.5, 3.7)]);
        assert_eq!(val.series_summary(), "stage 0 validation loss: 1");
        assert_eq!(val.series[0].points, vec![(2.0, 4.5)]);
        assert_eq!(train.markers.iter().map(|m| m.x).collect::<Vec<_>>(), vec![0.0, 2.0]);
        assert_eq!(train.markers[1].label, "stage 2 distill");
        assert_eq!(charts[2].0.series.len(), 2);
        assert_eq!(charts[3].0.series[1].points.len(), 3);
        // Without a distill stage, training and validation loss share one chart.
        let finetune_only: Vec<TrainingStage<'_>> = stages.iter().take(1).cloned().collect();
        let charts = super::charts(&finetune_only);
        assert_eq!(charts[0].0.series_summary(), "stage 0 training loss: 2; stage 0 validation loss: 1");
        assert_eq!(charts.len(), 3);
        let c = caption(&stages);
        assert!(c.contains("stage 0 (finetune): training loss 5.000 → 4.000 over 2 steps (2,000 tokens); validation loss 4.500 (perplexity 90.017) in 1 evaluation(s)"), "{c}");
        assert!(
            c.contains("stage 2 (distill): distillation objective 3.900 → 3.700 over 3 steps (1,500 tokens)"),
            "{c}"
        );
    }
}
