//! Structured prune stages (`method = "width" | "depth"`): rank attention heads, KV groups, MLP
//! channels, hidden channels and layers (Minitron activation importance and block influence on
//! calibration windows, or weight magnitude), keep the best to the recipe's target shape, and hand
//! on the smaller model.

use super::StageOutcome;
use super::calibration::{peak_rss_bytes, windows};
use crate::PipelineError;
use crate::context::StageContext;
use crate::events::Event;
use crate::state::State;
use serde_json::json;
use slmc_prune::structured::{self, Importance};
use slmc_recipe::{ImportanceSource, PruneMethod, PruneParams};

/// Runs a width or depth prune stage on the state's model.
pub(crate) fn run(
    state: State,
    p: &PruneParams,
    ctx: &mut StageContext<'_>,
) -> Result<StageOutcome, PipelineError> {
    let (PruneMethod::Width { importance: source, .. } | PruneMethod::Depth { importance: source, .. }) =
        &p.method
    else {
        return Err(PipelineError::Recipe(
            "an unstructured prune stage reached the structured pruner".into(),
        ));
    };
    let targets = p.shape_targets().ok_or_else(|| PipelineError::Recipe("no target shape".into()))?;
    if !state.records.is_empty() {
        return Err(PipelineError::Recipe(
            "structured pruning changes shapes, so it must come before quantize and unstructured prune stages".into(),
        ));
    }
    let model = state.model;
    let started = std::time::Instant::now();
    let importance: Importance = match source {
        ImportanceSource::Magnitude => structured::magnitude(&model),
        ImportanceSource::Activation => {
            let calib =
                windows(ctx, &p.calibration, model.config.max_position_embeddings, "activation importance")?;
            let observer = &mut *ctx.observer;
            structured::collect(&model, &calib, p.calibration.batch_size, &mut |done, total| {
                observer.event(&Event::CalibBlock { kind: slmc_recipe::Kind::Prune, index: done, total })
            })?
        }
    };
    let (pruned, report) = structured::prune(&model, &targets, &importance)?;
    drop(model);
    let seconds = started.elapsed().as_secs_f64();
    let (b, a) = (report.before, report.after);
    let summary = format!(
        "stage {}: prune, {} to heads {}→{}, KV heads {}→{}, intermediate {}→{}, hidden {}→{}, layers {}→{}{}: {:.2}M → {:.2}M parameters in {seconds:.1} s",
        ctx.index,
        if matches!(p.method, PruneMethod::Width { .. }) { "width" } else { "depth" },
        b.num_attention_heads,
        a.num_attention_heads,
        b.num_key_value_heads,
        a.num_key_value_heads,
        b.intermediate_size,
        a.intermediate_size,
        b.hidden_size,
        a.hidden_size,
        b.num_hidden_layers,
        a.num_hidden_layers,
        if report.dropped_layers.is_empty() {
            String::new()
        } else {
            format!(" (dropped {:?})", report.dropped_layers)
        },
        report.params_before as f64 / 1e6,
        report.params_after as f64 / 1e6,
    );
    let details = json!({
        "before": b, "after": a, "params_before": report.params_before, "params_after": report.params_after,
        "dropped_layers": report.dropped_layers, "importance": importance.method,
    });
    let details = match details {
        serde_json::Value::Object(m) => m,
        _ => Default::default(),
    };
    ctx.metrics.log(&crate::metrics::MetricLine::PruneStructured { stage: ctx.index, details })?;
    let record = json!({
        "seconds": seconds, "before": b, "after": a, "params_before": report.params_before,
        "params_after": report.params_after, "dropped_layers": report.dropped_layers,
        "peak_rss_bytes": peak_rss_bytes(),
    });
    Ok(StageOutcome {
        state: State { model: pruned, records: state.records },
        changed: true,
        summary,
        record,
        eval: None,
    })
}
