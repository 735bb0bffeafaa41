//! The distill stage: build the student, check the shared vocabulary, optionally precompute the
//! teacher's top-K cache, and train the student against the frozen teacher.

use super::StageOutcome;
use super::training::{options, train_logged};
use crate::PipelineError;
use crate::context::StageContext;
use crate::events::Event;
use crate::state::State;
use serde_json::json;
use slmc_model::model::Init;
use slmc_model::{CausalLm, HfModel, Tokenizer, weights};
use slmc_recipe::plan::{student_config, student_layers};
use slmc_recipe::{DistillParams, KdLoss, StudentInit};
use slmc_train::TrainData;
use slmc_train::distill::{DistillObjective, Distilled, TeacherSignal};
use slmc_train::kd::{Divergence, HiddenLoss};
use slmc_train::teacher_cache::{TopKCache, TopKSpec, sequences_drawn};

/// Runs one distill stage on the pipeline's model and returns the trained student.
pub(crate) fn run(
    state: State,
    dp: &DistillParams,
    ctx: &mut StageContext<'_>,
) -> Result<StageOutcome, PipelineError> {
    let current = state.model;
    let device = current.device();
    let tokenizer = ctx.tokenizer;
    let Some(slmc_recipe::ModelSource::Path { path: teacher_dir, .. }) = ctx.recipe.teacher.as_ref() else {
        return Err(PipelineError::Recipe("[teacher] must be a `path` to a trained model".into()));
    };
    let mut teacher = HfModel::load(teacher_dir, &device)?;
    let student_cfg =
        student_config(&dp.init, &current.config, &teacher.config).map_err(PipelineError::Recipe)?;
    let vocab = shared_vocab(
        tokenizer,
        teacher.tokenizer.as_ref(),
        student_cfg.vocab_size,
        teacher.config.vocab_size,
    )?;
    let (student, init_layers) = match &dp.init {
        StudentInit::Current => (current, None),
        StudentInit::Config(_) => {
            drop(current);
            (CausalLm::new(&student_cfg, Init::Normal { std: 0.02, seed: ctx.seed() }, &device), None)
        }
        StudentInit::TeacherLayers(l) => {
            drop(current); // the student replaces it: not resident while training
            let layers = student_layers(l, teacher.config.num_layers);
            let (cfg, tensors) = weights::select_layers(&teacher.model, &layers)?;
            (weights::load(&cfg, tensors.as_slice(), "teacher layers", &device)?.0, Some(layers))
        }
        StudentInit::Path(p) => {
            drop(current);
            (HfModel::load(p, &device)?.model, None)
        }
    };
    drop(teacher.tokenizer);
    let (ls, lt) = (student.config.num_layers, teacher.config.num_layers);
    let hidden = match &dp.hidden {
        None => None,
        Some(h) => {
            let map = match (&h.layer_map, &init_layers) {
                (Some(m), _) => m.clone(),
                (None, Some(layers)) => layers.iter().copied().enumerate().collect(),
                (None, None) => (0..ls)
                    .map(|s| (s, if ls == 1 { lt - 1 } else { (s * (lt - 1) + (ls - 1) / 2) / (ls - 1) }))
                    .collect(),
            };
            if let Some((s, t)) = map.iter().find(|(s, t)| *s >= ls || *t >= lt) {
                return Err(PipelineError::Recipe(format!(
                    "layer-map pair [{s}, {t}] is out of range (student has {ls} layers, teacher {lt}; 0-based)"
                )));
            }
            Some((if h.cosine { HiddenLoss::Cosine } else { HiddenLoss::Mse }, h.weight, map))
        }
    };
    let pairs = hidden.as_ref().map_or(0, |h| h.2.len());
    let student = match &dp.train.adapter {
        None => super::adapters::merge_for(student, ctx, "full distillation"),
        Some(a) => super::adapters::prepare(student, a, ctx)?,
    };
    let student = super::training::for_training(student, dp.train.precision);
    teacher.model = super::training::teacher_for(teacher.model, dp.train.precision);
    let distilled = Distilled::new(student, pairs, student_cfg.hidden_size, teacher.config.hidden_size);
    let train_seqs = ctx.train("distill")?;
    let data = TrainData { train: train_seqs.view()?, eval: Some(ctx.data()?.eval.view()?) };
    let divergence = match dp.loss {
        KdLoss::ForwardKl => Divergence::ForwardKl,
        KdLoss::ReverseKl => Divergence::ReverseKl,
        KdLoss::Jsd { beta } => Divergence::Jsd { beta },
    };
    let t = &dp.train;
    // The stage's own peak (teacher and student resident, the cache pass, the training loop),
    // apart from loading.
    crate::memory::reset_peak_rss();
    let cache = match dp.teacher_cache_topk {
        None => None,
        Some(k) => {
            let k = k.min(vocab);
            let draws = (t.steps * t.batch_size * t.grad_accum) as u64;
            let fingerprint = format!(
                "topk={k} tau={} vocab={vocab} seq_len={} seed={} draws={draws}",
                dp.temperature,
                train_seqs.seq_len(),
                ctx.seed()
            );
            let path = ctx.sdir.join(format!("teacher-top{k}.cache"));
            let seqs = sequences_drawn(train_seqs.len(), ctx.seed(), draws);
            match TopKCache::load(&path, &fingerprint, &seqs)? {
                Some(c) => Some(c),
                None => {
                    ctx.observer.event(&Event::Info(format!(
                        "caching the teacher's top-{k} log-probabilities for {} sequences",
                        seqs.len()
                    )));
                    let c = TopKCache::build(
                        &teacher.model,
                        train_seqs,
                        &seqs,
                        TopKSpec { k, tau: dp.temperature, vocab, batch_size: t.batch_size },
                        &mut |done, total| ctx.observer.event(&Event::Evaluating { done, total }),
                    );
                    c.save(&path, &fingerprint)?;
                    ctx.observer.event(&Event::Info(format!(
                        "teacher cache: {:.1} MB at {}",
                        c.bytes() as f64 / 1e6,
                        path.display()
                    )));
                    Some(c)
                }
            }
        }
    };
    // Training from the cache does not need the teacher: it leaves memory first.
    let teacher_model = if cache.is_some() {
        drop(teacher.model);
        None
    } else {
        Some(teacher.model)
    };
    let signal = match (&cache, &teacher_model) {
        (Some(c), _) => TeacherSignal::Cached(c),
        (None, Some(t)) => TeacherSignal::Online(t),
        (None, None) => unreachable!("the teacher is kept when there is no cache"),
    };
    let mut objective = DistillObjective {
        teacher: signal,
        divergence,
        temperature: dp.temperature,
        alpha: dp.alpha,
        vocab,
        hidden,
    };
    let keep = state.records.keep_masks();
    let opts = options(t, &keep, ctx)?;
    let trained = train_logged(distilled, &data, &opts, &mut objective, ctx)?;
    let train_peak_rss = crate::memory::peak_rss_bytes();
    let model = super::adapters::finish(super::training::after_training(trained.student));
    let summary = format!(
        "stage {}: distill{}, {} steps, student {} layers ({:.2}M parameters)",
        ctx.index,
        dp.train.adapter.as_ref().map_or(String::new(), |a| format!(" ({} student)", a.kind.name())),
        t.steps,
        model.config.num_layers,
        model.config.num_params() as f64 / 1e6
    );
    Ok(StageOutcome {
        state: State { model, records: state.records },
        changed: true,
        summary,
        record: json!({ "train_peak_rss_bytes": train_peak_rss }),
        eval: None,
    })
}

/// The vocabulary entries teacher and student logits are compared over. Identical vocabularies
/// pass; output layers that differ only by padding rows beyond the shared tokenizer are sliced to
/// the common part; anything else is refused before any compute.
fn shared_vocab(
    student_tok: Option<&Tokenizer>,
    teacher_tok: Option<&Tokenizer>,
    vs: usize,
    vt: usize,
) -> Result<usize, PipelineError> {
    if let (Some(s), Some(t)) = (student_tok, teacher_tok)
        && s.inner().get_vocab(true) != t.inner().get_vocab(true)
    {
        return Err(PipelineError::Recipe(
            "the teacher's tokenizer differs from the student's; token-level distillation needs a shared vocabulary".into(),
        ));
    }
    if vs == vt {
        return Ok(vs);
    }
    let tokens = student_tok.or(teacher_tok).map(Tokenizer::vocab_size);
    match tokens {
        Some(n) if n <= vs.min(vt) => Ok(vs.min(vt)),
        _ => Err(PipelineError::Recipe(format!(
            "teacher has {vt} output rows and the student {vs}; they differ beyond tokenizer padding{}, so logits cannot be compared token by token",
            tokens.map_or(String::new(), |n| format!(" (tokenizer: {n} tokens)"))
        ))),
    }
}
