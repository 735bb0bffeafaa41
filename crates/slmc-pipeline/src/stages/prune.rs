//! The prune stage. Unstructured methods (magnitude, Wanda, SparseGPT; N:M; OWL layer ratios) run
//! the calibration walk of `slmc-prune` with block files for resume, log per-module sparsity and
//! output error, and leave the masks as records that every later stage keeps. Structured methods
//! (width, depth) rank heads, channels and layers and hand on a physically smaller model.

use super::StageOutcome;
use super::calibration::{WalkLog, interrupted, peak_rss_bytes, solve_warnings, windows};
use crate::PipelineError;
use crate::context::StageContext;
use crate::evaluation::read_json;
use crate::state::State;
use serde_json::json;
use slmc_prune::{Algorithm, PruneConfig, SparseGptOptions, Sparsity};
use slmc_recipe::{MaskAlgorithm, Owl, PruneMethod, PruneParams, SparsityTarget};

/// Runs a prune stage on the state's model.
pub(crate) fn run(
    state: State,
    p: &PruneParams,
    ctx: &mut StageContext<'_>,
) -> Result<StageOutcome, PipelineError> {
    match &p.method {
        PruneMethod::Unstructured { algorithm, sparsity, owl, damp, block_size, .. } => {
            let algorithm = match algorithm {
                MaskAlgorithm::Magnitude(scope) => Algorithm::Magnitude(*scope),
                MaskAlgorithm::Wanda => Algorithm::Wanda,
                MaskAlgorithm::SparseGpt => {
                    Algorithm::SparseGpt(SparseGptOptions { block_size: *block_size, damp: *damp })
                }
            };
            unstructured(state, p, algorithm, *sparsity, *owl, ctx)
        }
        PruneMethod::Width { .. } | PruneMethod::Depth { .. } => super::prune_structured::run(state, p, ctx),
    }
}

fn unstructured(
    state: State,
    p: &PruneParams,
    algorithm: Algorithm,
    target: SparsityTarget,
    owl: Option<Owl>,
    ctx: &mut StageContext<'_>,
) -> Result<StageOutcome, PipelineError> {
    let mut model = state.model;
    let targets = ctx.modules().into_iter().collect();
    let calib = if p.needs_data() {
        windows(ctx, &p.calibration, model.config.max_position_embeddings, "this prune stage")?
    } else {
        Vec::new()
    };
    let sparsity = match target {
        SparsityTarget::Ratio(r) => Sparsity::Unstructured(r),
        SparsityTarget::NofM { n, m } => Sparsity::NofM { n, m },
    };
    let started = std::time::Instant::now();
    // OWL: per-layer ratios from one dense pass, kept so a resumed run prunes with the same ones.
    let layer_ratios = match owl {
        None => None,
        Some(o) => {
            let path = ctx.sdir.join("owl.json");
            let saved = if path.is_file() { read_json(&path)?.get("ratios").cloned() } else { None };
            let ratios: Vec<f64> = match saved.and_then(|v| serde_json::from_value(v).ok()) {
                Some(r) => r,
                None => {
                    ctx.observer
                        .event(&crate::Event::Info("OWL: scoring outliers on the unpruned model".into()));
                    let (m, r) = slmc_prune::owl_ratios(
                        model,
                        &targets,
                        &calib,
                        p.calibration.batch_size,
                        target.ratio(),
                        o.lambda,
                        o.m,
                    )?;
                    model = m;
                    let text = json!({"lambda": o.lambda, "m": o.m, "ratios": r}).to_string() + "\n";
                    slmc_formats::fsutil::atomic_write(&path, text.as_bytes())?;
                    r
                }
            };
            let shown: Vec<String> = ratios.iter().map(|r| format!("{:.3}", r)).collect();
            ctx.observer.event(&crate::Event::Info(format!("OWL layer sparsities: {}", shown.join(" "))));
            Some(ratios)
        }
    };
    let cfg = PruneConfig {
        algorithm,
        sparsity,
        layer_ratios: layer_ratios.clone(),
        targets,
        batch_size: p.calibration.batch_size,
    };
    let blocks = ctx.sdir.join("blocks");
    std::fs::create_dir_all(&blocks).map_err(|e| PipelineError::io(&blocks, e))?;
    let ctl = slmc_calib::Control {
        checkpoint_dir: Some(&blocks),
        interrupt: ctx.interrupt,
        stop_after_block: None,
    };
    let mut log = WalkLog::new(slmc_recipe::Kind::Prune);
    let details = |m: &slmc_prune::sequential::ModuleReport| {
        let warnings = m
            .detail
            .stats
            .map_or_else(Vec::new, |s| solve_warnings(&m.name, s.damp, s.retries, s.dead_columns));
        (json!({"sparsity": m.detail.sparsity, "damp": m.detail.stats.map(|s| s.damp)}), warnings)
    };
    let result = slmc_prune::prune(model, &cfg, &calib, ctl, &mut |e| log.event(ctx, e, &details));
    let (model, masks) = result.map_err(|e| match e {
        slmc_prune::PruneError::Interrupted { block } => interrupted(block, &blocks),
        other => other.into(),
    })?;
    let log = log.finish()?;
    let seconds = started.elapsed().as_secs_f64();
    let (zeros, total) = masks.values().fold((0, 0), |(z, t), m| (z + m.count(), t + m.rows() * m.cols()));
    let overall = zeros as f64 / total.max(1) as f64;
    let pattern = match sparsity {
        Sparsity::NofM { n, m } => {
            masks.values().all(|mask| mask.satisfies_n_m(n, m)).then(|| format!("{}:{m}", m - n))
        }
        Sparsity::Unstructured(_) => None,
    };
    let mean_err = log.mean_error();
    let scope = match algorithm {
        Algorithm::Magnitude(scope) => Some(scope),
        _ => None,
    };
    let summary = format!(
        "stage {}: prune, {} {} on {} modules in {seconds:.1} s, {:.2} % of their weights zero{}{}",
        ctx.index,
        match algorithm {
            Algorithm::Magnitude(scope) => format!("magnitude (per {})", scope.name()),
            Algorithm::Wanda => "Wanda".into(),
            Algorithm::SparseGpt(_) => "SparseGPT".into(),
        },
        target.describe(),
        masks.len(),
        overall * 100.0,
        pattern.as_ref().map_or(String::new(), |p| format!(" (every row {p})")),
        mean_err.map_or(String::new(), |e| format!(", mean relative output error {e:.2e}"))
    );
    let record = json!({
        "seconds": seconds, "modules": masks.len(), "sparsity": overall, "pattern": pattern,
        "mean_rel_error": mean_err, "owl_ratios": layer_ratios,
        "magnitude_scope": scope.map(slmc_recipe::MagnitudeScope::name),
        "calibration_windows": calib.len(), "calibration_len": calib.first().map_or(0, Vec::len),
        "peak_rss_bytes": peak_rss_bytes(),
    });
    let mut records = state.records;
    records.masks = Some(masks);
    Ok(StageOutcome { state: State { model, records }, changed: true, summary, record, eval: None })
}
