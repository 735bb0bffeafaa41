//! Runs a recipe's stages in order.

use crate::events::{Event, Observer};
use crate::fingerprint::{hash_files, model_files, sha256_hex};
use crate::metrics::MetricsLog;
use crate::run_dir::{Manifest, RunDir};
use crate::{PipelineError, report};
use burn::prelude::*;
use serde_json::{Value, json};
use slmc_data::{Packed, SourceOptions, TokenFile, build_token_file, expand};
use slmc_formats::fsutil::atomic_write;
use slmc_model::hf_dir::{SaveOptions, save};
use slmc_model::model::Init;
use slmc_model::perplexity::{WindowSpec, evaluate};
use slmc_model::{CausalLm, HfModel, ModelConfig, Tokenizer};
use slmc_recipe::{
    DataSpec, EvalParams, ExportFormat, ModelSource, Recipe, SourceSpec, StageKind, TrainParams,
};
use slmc_train::{CrossEntropy, TrainData, TrainOptions, train};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// How to run.
pub struct RunOptions<'a> {
    /// The recipe file as given (for the manifest).
    pub recipe_file: String,
    /// The recipe text.
    pub recipe_text: String,
    /// `--set` overrides.
    pub sets: Vec<String>,
    /// Run only the stages of this kind (`slmc finetune`, `slmc distill`, ...).
    pub only_kind: Option<&'static str>,
    /// Empty the run directory first.
    pub fresh: bool,
    /// Compute device.
    pub device: Device,
    /// Backend name for the manifest.
    pub backend: String,
    /// Set by Ctrl-C: stop after the current step with a checkpoint.
    pub interrupt: Option<&'a AtomicBool>,
}

/// A perplexity measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalResult {
    /// Mean NLL per token.
    pub mean_nll: f64,
    /// Perplexity.
    pub ppl: f64,
    /// Tokens scored.
    pub tokens: usize,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Whether an earlier run was resumed.
    pub resumed: bool,
    /// Perplexity of the input model (when a gate needs it).
    pub baseline: Option<EvalResult>,
    /// Perplexity after the last stage (when measured).
    pub final_eval: Option<EvalResult>,
    /// Gate descriptions and whether each passed.
    pub gates: Vec<(String, bool)>,
    /// Files and directories written to `artifacts/`.
    pub artifacts: Vec<PathBuf>,
}

impl RunSummary {
    /// Whether every gate passed.
    pub fn gates_passed(&self) -> bool {
        self.gates.iter().all(|g| g.1)
    }
}

/// Runs `recipe`.
pub fn run(
    recipe: &Recipe,
    options: &RunOptions<'_>,
    observer: &mut dyn Observer,
) -> Result<RunSummary, PipelineError> {
    let stages: Vec<&slmc_recipe::Stage> =
        recipe.stages.iter().filter(|s| options.only_kind.is_none_or(|k| k == s.kind.name())).collect();
    if let Some(kind) = options.only_kind
        && stages.is_empty()
    {
        return Err(PipelineError::Recipe(format!(
            "{} has no `{kind}` stage; `slmc {kind}` runs only those (use `slmc run` for all stages)",
            options.recipe_file
        )));
    }
    let root = match (options.only_kind, &recipe.run_dir) {
        (Some(kind), None) => PathBuf::from("runs").join(format!("{}-{kind}", recipe.name)),
        _ => recipe.run_dir(),
    };

    // Fingerprint: recipe text + overrides + stage selection, and every input file's hash.
    let mut inputs = Vec::new();
    match &recipe.model {
        ModelSource::Path { path, .. } => inputs.extend(model_files(path)),
        ModelSource::Config { tokenizer, .. } => inputs.push(tokenizer_file(tokenizer)),
    }
    let data = recipe.data.as_ref();
    let train_files = data.map(|d| files_of(&d.train)).transpose()?.unwrap_or_default();
    let eval_files = data.map(|d| files_of(&d.eval)).transpose()?.unwrap_or_default();
    inputs.extend(train_files.iter().chain(&eval_files).map(|(p, _)| p.clone()));
    let selection = options.only_kind.unwrap_or("all").to_string();
    let manifest = Manifest {
        slmc_version: env!("CARGO_PKG_VERSION").into(),
        recipe_file: options.recipe_file.clone(),
        recipe_text: options.recipe_text.clone(),
        sets: options.sets.clone(),
        stages: selection.clone(),
        recipe_hash: sha256_hex(
            format!("{}\0{}\0{}", options.recipe_text, options.sets.join("\0"), selection).as_bytes(),
        ),
        inputs: hash_files(&inputs)?,
        seed: recipe.seed,
        backend: options.backend.clone(),
    };
    let dir = RunDir::prepare(&root, &manifest, options.fresh)?;
    if dir.resumed {
        observer.event(&Event::Info(format!("resuming {}", root.display())));
    }
    let metrics = MetricsLog::new(&dir.metrics_path());
    let device = &options.device;

    // The model the stages act on, and its tokenizer.
    let (mut model, tokenizer, tokenizer_dir, stored_dtype) = match &recipe.model {
        ModelSource::Path { path, .. } => {
            let hf = HfModel::load(path, device)?;
            let dtype = hf.stored_dtype;
            (hf.model, hf.tokenizer, Some(path.clone()), dtype)
        }
        ModelSource::Config { config, tokenizer, .. } => {
            let cfg = ModelConfig::from_json_str(&config.to_string(), "[model] config")?;
            let tok_dir = tokenizer_dir_of(tokenizer);
            let tok = Tokenizer::from_dir(&tok_dir, Some(&cfg))?;
            if tok.vocab_size() > cfg.vocab_size {
                return Err(PipelineError::Recipe(format!(
                    "the tokenizer has {} tokens but [model] config vocab_size is {}",
                    tok.vocab_size(),
                    cfg.vocab_size
                )));
            }
            let dtype = cfg.dtype;
            (
                CausalLm::new(&cfg, Init::Normal { std: 0.02, seed: recipe.seed }, device),
                Some(tok),
                Some(tok_dir),
                dtype,
            )
        }
    };

    // Bind the recipe to the model (selectors, export shapes) before any work.
    let teacher_cfg = match &recipe.teacher {
        Some(t) => Some(
            slmc_recipe::plan::model_config(t)
                .map_err(|d| PipelineError::Recipe(format!("[teacher]: {}", d.message)))?,
        ),
        None => None,
    };
    let plan = slmc_recipe::plan(recipe, model.config.clone(), teacher_cfg.as_ref());
    if !plan.problems.is_empty() {
        let sources = slmc_recipe::Sources {
            file_name: options.recipe_file.clone(),
            text: options.recipe_text.clone(),
            sets: options.sets.clone(),
        };
        let text: Vec<String> = plan.problems.iter().map(|d| sources.render(d)).collect();
        return Err(PipelineError::Recipe(format!(
            "{}{} cannot run on this model",
            text.concat(),
            options.recipe_file
        )));
    }
    let mut records: Option<slmc_quant::Records> = None;

    // Tokenized data, cached in the run directory.
    let prepared = match data {
        Some(d) => Some(prepare_data(&dir, d, &train_files, &eval_files, tokenizer.as_ref(), observer)?),
        None => None,
    };

    let mut summary_lines = Vec::new();
    let baseline = if recipe.gates.max_ppl_increase.is_some() {
        let p = prepared.as_ref().expect("validated: gates need data");
        Some(cached_eval(
            &dir.root.join("baseline.json"),
            &model,
            p,
            &EvalParams { ctx: None, stride: None, max_tokens: 0 },
            observer,
        )?)
    } else {
        None
    };
    let mut final_eval = None;
    for stage in &stages {
        let sdir = dir.stage_dir(stage.index, stage.kind.name());
        let done = sdir.join("done.json");
        if done.is_file() {
            observer.event(&Event::StageSkipped { index: stage.index, kind: stage.kind.name() });
            let record: Value = read_json(&done)?;
            if sdir.join("model").join("config.json").is_file() {
                model = HfModel::load(&sdir.join("model"), device)?.model;
            }
            if sdir.join(QUANT_RECORDS).is_file() {
                // The stage's model was saved in f32: it already holds the dequantized codes.
                records = Some(slmc_quant::load_records(&sdir.join(QUANT_RECORDS))?);
            }
            final_eval = eval_from_json(&record).or(final_eval);
            summary_lines.push(record.get("summary").and_then(Value::as_str).unwrap_or("").to_string());
            continue;
        }
        std::fs::create_dir_all(&sdir).map_err(|e| PipelineError::io(&sdir, e))?;
        let started = std::time::Instant::now();
        let (mut record, summary) = match &stage.kind {
            StageKind::Finetune(params) => {
                observer.event(&Event::StageStart {
                    index: stage.index,
                    kind: "finetune",
                    steps: Some(params.steps),
                });
                let p = prepared.as_ref().expect("validated: finetune needs data");
                model = run_finetune(
                    model,
                    stage.index,
                    params,
                    recipe.seed,
                    p,
                    &sdir,
                    &metrics,
                    options,
                    observer,
                )?;
                save(
                    &model,
                    &sdir.join("model"),
                    &SaveOptions { tokenizer_dir: tokenizer_dir.clone(), ..Default::default() },
                )?;
                final_eval = None;
                let s = format!("stage {}: finetune, {} steps", stage.index, params.steps);
                (json!({"summary": s}), s)
            }
            StageKind::Distill(dp) => {
                observer.event(&Event::StageStart {
                    index: stage.index,
                    kind: "distill",
                    steps: Some(dp.train.steps),
                });
                let p = prepared.as_ref().expect("validated: distill needs data");
                let teacher_src = recipe.teacher.as_ref().expect("validated: distill needs [teacher]");
                let ctx = DistillContext {
                    index: stage.index,
                    seed: recipe.seed,
                    data: p,
                    sdir: &sdir,
                    metrics: &metrics,
                };
                model =
                    crate::distill::run(model, tokenizer.as_ref(), teacher_src, dp, &ctx, options, observer)?;
                save(
                    &model,
                    &sdir.join("model"),
                    &SaveOptions { tokenizer_dir: tokenizer_dir.clone(), ..Default::default() },
                )?;
                final_eval = None;
                let s = format!(
                    "stage {}: distill, {} steps, student {} layers ({:.2}M parameters)",
                    stage.index,
                    dp.train.steps,
                    model.config.num_layers,
                    model.config.num_params() as f64 / 1e6
                );
                (json!({"summary": s}), s)
            }
            StageKind::Quantize(q) => {
                observer.event(&Event::StageStart { index: stage.index, kind: "quantize", steps: None });
                let targets = plan
                    .quantized_modules
                    .iter()
                    .find(|(i, _)| *i == stage.index)
                    .map(|(_, m)| m.clone())
                    .unwrap_or_default();
                let out = crate::quantize::run(
                    model,
                    q,
                    &targets,
                    stage.index,
                    recipe.seed,
                    prepared.as_ref(),
                    &sdir,
                    &metrics,
                    options,
                    observer,
                )?;
                model = out.model;
                // f32: the fake-quantized values (scale × integer) are not exact in bf16.
                save(
                    &model,
                    &sdir.join("model"),
                    &SaveOptions {
                        tokenizer_dir: tokenizer_dir.clone(),
                        dtype: Some(slmc_formats::FloatDtype::F32),
                        ..Default::default()
                    },
                )?;
                slmc_quant::save_records(&out.records, &sdir.join(QUANT_RECORDS))?;
                records = Some(out.records);
                final_eval = None;
                (out.record, out.summary)
            }
            StageKind::Eval(e) => {
                observer.event(&Event::StageStart { index: stage.index, kind: "eval", steps: None });
                let p = prepared.as_ref().expect("validated: eval needs data");
                let r = eval_model(&model, p, e, observer)?;
                metrics.write(&json!({"event": "eval", "stage": stage.index, "loss": r.mean_nll, "ppl": r.ppl, "tokens": r.tokens}))?;
                final_eval = Some(r);
                let s =
                    format!("stage {}: eval, perplexity {:.3} over {} tokens", stage.index, r.ppl, r.tokens);
                (json!({"summary": s, "mean_nll": r.mean_nll, "ppl": r.ppl, "tokens": r.tokens}), s)
            }
        };
        record["wall_seconds"] = json!(started.elapsed().as_secs_f64());
        atomic_write(&done, (record.to_string() + "\n").as_bytes())?;
        observer.event(&Event::StageDone { index: stage.index, summary: summary.clone() });
        summary_lines.push(summary);
    }

    // Gates.
    let mut gates = Vec::new();
    if recipe.gates.max_ppl.is_some() || recipe.gates.max_ppl_increase.is_some() {
        let fe = match final_eval {
            Some(f) => f,
            None => {
                let p = prepared.as_ref().expect("validated: gates need data");
                let f =
                    eval_model(&model, p, &EvalParams { ctx: None, stride: None, max_tokens: 0 }, observer)?;
                final_eval = Some(f);
                f
            }
        };
        if let Some(max) = recipe.gates.max_ppl {
            gates.push((format!("perplexity {:.3} ≤ max-ppl {max}", fe.ppl), fe.ppl <= max));
        }
        if let (Some(max_inc), Some(b)) = (recipe.gates.max_ppl_increase, baseline) {
            let inc = fe.ppl / b.ppl - 1.0;
            gates.push((
                format!(
                    "perplexity {:.3} vs input {:.3}: {:+.2}% (max-ppl-increase {:+.2}%)",
                    fe.ppl,
                    b.ppl,
                    inc * 100.0,
                    max_inc * 100.0
                ),
                inc <= max_inc,
            ));
        }
    }

    // Exports.
    let mut artifacts = Vec::new();
    if let Some(e) = &recipe.export {
        for f in &e.formats {
            match f {
                ExportFormat::Safetensors => {
                    let out = dir.artifacts_dir().join(format!("{}-safetensors", recipe.name));
                    let opts = SaveOptions {
                        dtype: Some(e.dtype.unwrap_or(stored_dtype)),
                        max_shard_bytes: None,
                        tokenizer_dir: tokenizer_dir.clone(),
                    };
                    save(&model, &out, &opts)?;
                    observer.event(&Event::Artifact(out.display().to_string()));
                    artifacts.push(out);
                }
                ExportFormat::Gguf => {
                    let tok = tokenizer_dir.clone().ok_or_else(|| {
                        PipelineError::Recipe("GGUF export needs the model's tokenizer.json".into())
                    })?;
                    let file_type = recipe.gguf_type();
                    let out = dir.artifacts_dir().join(format!("{}-{}.gguf", recipe.name, file_type.name()));
                    let opts = slmc_model::gguf_export::GgufOptions {
                        file_type,
                        tokenizer_dir: tok,
                        name: Some(recipe.name.clone()),
                        encoded: match (&records, e.requantize) {
                            (Some(r), false) => slmc_quant::ggml_codes::gguf_tensors(&model, r)?,
                            _ => Default::default(),
                        },
                    };
                    slmc_model::gguf_export::export_model_gguf(&model, &opts, &out)?;
                    observer.event(&Event::Artifact(out.display().to_string()));
                    artifacts.push(out);
                }
                ExportFormat::Gptq => {
                    let (Some(r), Some(q)) = (&records, recipe.last_quantize()) else {
                        return Err(PipelineError::Recipe("the gptq export needs a quantize stage".into()));
                    };
                    let out = dir.artifacts_dir().join(format!("{}-gptq", recipe.name));
                    let settings = slmc_quant::GptqSettings {
                        act_order: q.act_order,
                        damp: q.damp,
                        true_sequential: q.true_sequential,
                    };
                    slmc_quant::save_gptq(&model, r, settings, tokenizer_dir.clone(), &out)?;
                    observer.event(&Event::Artifact(out.display().to_string()));
                    artifacts.push(out);
                }
            }
        }
    }
    report::record_outcome(&dir.root, &gates, final_eval)?;
    report::render_run_dir(&dir.root)?;
    Ok(RunSummary { run_dir: dir.root.clone(), resumed: dir.resumed, baseline, final_eval, gates, artifacts })
}

/// The exact codes of a quantize stage, in its directory.
const QUANT_RECORDS: &str = "quant.safetensors";

/// Tokenized train and eval sequences.
pub struct Prepared {
    /// Training sequences.
    pub train: Option<Packed>,
    /// Held-out token stream (from the eval sources, or the tail of the training stream).
    pub eval: Packed,
    /// The eval token file (for perplexity over the raw stream).
    pub eval_tokens: PathBuf,
    /// Sequence length.
    pub seq_len: usize,
}

fn files_of(specs: &[SourceSpec]) -> Result<Vec<(PathBuf, SourceOptions)>, PipelineError> {
    let mut out = Vec::new();
    for s in specs {
        let opts = SourceOptions { text_field: s.text_column.clone(), ids_field: s.ids_column.clone() };
        for p in expand(&s.path)? {
            out.push((p, opts.clone()));
        }
    }
    Ok(out)
}

fn tokenizer_file(p: &Path) -> PathBuf {
    if p.is_dir() { p.join("tokenizer.json") } else { p.to_path_buf() }
}

fn tokenizer_dir_of(p: &Path) -> PathBuf {
    if p.is_dir() {
        p.to_path_buf()
    } else {
        p.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    }
}

fn prepare_data(
    dir: &RunDir,
    d: &DataSpec,
    train_files: &[(PathBuf, SourceOptions)],
    eval_files: &[(PathBuf, SourceOptions)],
    tokenizer: Option<&Tokenizer>,
    observer: &mut dyn Observer,
) -> Result<Prepared, PipelineError> {
    let data_dir = dir.data_dir();
    std::fs::create_dir_all(&data_dir).map_err(|e| PipelineError::io(&data_dir, e))?;
    let eos = tokenizer.and_then(|t| t.eos_ids.first().copied());
    let mut tokenize =
        |split: &'static str, files: &[(PathBuf, SourceOptions)]| -> Result<PathBuf, PipelineError> {
            let out = data_dir.join(format!("{split}.tokens"));
            if out.is_file() {
                return Ok(out);
            }
            let eos = eos.ok_or_else(|| {
                PipelineError::Recipe("the model has no tokenizer with an end-of-sequence token".into())
            })?;
            let mut encode = |text: &str| -> Result<Vec<u32>, String> {
                let tok = tokenizer.ok_or("text data needs a tokenizer.json next to the model")?;
                tok.encode(text, true).map_err(|e| e.to_string())
            };
            build_token_file(files, &out, eos, &mut encode, &mut |docs, tokens| {
                observer.event(&Event::Tokenizing { split, docs, tokens })
            })?;
            Ok(out)
        };
    let train_tokens = if train_files.is_empty() { None } else { Some(tokenize("train", train_files)?) };
    let eval_tokens = if eval_files.is_empty() { None } else { Some(tokenize("eval", eval_files)?) };
    let (train, eval, eval_path) = match (train_tokens, eval_tokens) {
        (Some(t), Some(e)) => (
            Some(Packed::new(TokenFile::open(&t)?, d.seq_len)?),
            Packed::new(TokenFile::open(&e)?, d.seq_len)?,
            e,
        ),
        (Some(t), None) => {
            let (train, eval) =
                Packed::new(TokenFile::open(&t)?, d.seq_len)?.split_tail(d.eval_fraction.max(1e-9))?;
            (Some(train), eval, t)
        }
        (None, Some(e)) => (None, Packed::new(TokenFile::open(&e)?, d.seq_len)?, e),
        (None, None) => return Err(PipelineError::Recipe("[data] has neither train nor eval files".into())),
    };
    Ok(Prepared { train, eval, eval_tokens: eval_path, seq_len: d.seq_len })
}

#[allow(clippy::too_many_arguments)]
fn run_finetune(
    model: CausalLm,
    index: usize,
    params: &TrainParams,
    seed: u64,
    data: &Prepared,
    sdir: &Path,
    metrics: &MetricsLog,
    options: &RunOptions<'_>,
    observer: &mut dyn Observer,
) -> Result<CausalLm, PipelineError> {
    let train_seqs =
        data.train.as_ref().ok_or_else(|| PipelineError::Recipe("finetune needs [data] train".into()))?;
    let ckpt = sdir.join("checkpoints");
    if let Some((step, _)) = slmc_train::checkpoint::list(&ckpt).pop() {
        metrics.truncate_stage_after(index, step)?;
    }
    // Views over the same token files: the prepared data stays with the runner.
    let train_data = TrainData { train: train_seqs.view()?, eval: Some(data.eval.view()?) };
    let opts =
        TrainOptions { params, seed, checkpoint_dir: ckpt, interrupt: options.interrupt, kill_after: None };
    train_logged(model, &train_data, &opts, &mut CrossEntropy, index, metrics, observer)
}

/// Runs the training engine, writing its steps and evaluations to `metrics.jsonl` and passing
/// every event to `observer`.
pub(crate) fn train_logged<M: slmc_train::TrainModel>(
    model: M,
    data: &TrainData,
    opts: &TrainOptions<'_>,
    objective: &mut dyn slmc_train::StepLoss<M>,
    index: usize,
    metrics: &MetricsLog,
    observer: &mut dyn Observer,
) -> Result<M, PipelineError> {
    let mut write_err = None;
    let model = train(model, data, opts, objective, &mut |e| {
        let line = match e {
            slmc_train::Event::Step { step, loss, lr, grad_norm, tokens_seen, tokens_per_s, .. } => {
                Some(json!({
                "event": "step", "stage": index, "step": step, "loss": loss, "lr": lr, "grad_norm": grad_norm,
                "tokens_seen": tokens_seen, "tokens_per_s": tokens_per_s}))
            }
            slmc_train::Event::Eval { step, loss } => {
                Some(json!({"event": "eval", "stage": index, "step": step, "loss": loss, "ppl": loss.exp()}))
            }
            _ => None,
        };
        if let Some(l) = line
            && let Err(err) = metrics.write(&l)
        {
            write_err = Some(err);
        }
        observer.event(&Event::Train(e.clone()));
    })?;
    if let Some(e) = write_err {
        return Err(e);
    }
    Ok(model)
}

/// What the distill stage needs from the runner.
pub(crate) struct DistillContext<'a> {
    /// Stage position.
    pub index: usize,
    /// The recipe's seed.
    pub seed: u64,
    /// Tokenized data.
    pub data: &'a Prepared,
    /// The stage's directory.
    pub sdir: &'a Path,
    /// `metrics.jsonl`.
    pub metrics: &'a MetricsLog,
}

fn eval_model(
    model: &CausalLm,
    data: &Prepared,
    e: &EvalParams,
    observer: &mut dyn Observer,
) -> Result<EvalResult, PipelineError> {
    let tokens = TokenFile::open(&data.eval_tokens)?;
    let ctx = e.ctx.unwrap_or(data.seq_len).min(model.config.max_position_embeddings);
    let stride = e.stride.unwrap_or((ctx / 2).max(1)).min(ctx);
    let n = if e.max_tokens == 0 { tokens.len() } else { e.max_tokens.min(tokens.len()) };
    // The eval stream of a held-out tail starts where the training sequences end.
    let start = data.eval.token_range().start.min(tokens.len());
    let n = n.min(tokens.len() - start);
    let rows = vec![tokens.read(start, n)];
    let s = evaluate(model, &rows, WindowSpec { max_length: ctx, stride }, 4, &mut |done, total| {
        observer.event(&Event::Evaluating { done, total })
    })?;
    Ok(EvalResult { mean_nll: s.mean_nll(), ppl: s.ppl(), tokens: s.tokens })
}

fn cached_eval(
    path: &Path,
    model: &CausalLm,
    data: &Prepared,
    e: &EvalParams,
    observer: &mut dyn Observer,
) -> Result<EvalResult, PipelineError> {
    if path.is_file()
        && let Some(r) = eval_from_json(&read_json(path)?)
    {
        return Ok(r);
    }
    let r = eval_model(model, data, e, observer)?;
    atomic_write(
        path,
        (json!({"mean_nll": r.mean_nll, "ppl": r.ppl, "tokens": r.tokens}).to_string() + "\n").as_bytes(),
    )?;
    Ok(r)
}

fn eval_from_json(v: &Value) -> Option<EvalResult> {
    Some(EvalResult {
        mean_nll: v.get("mean_nll")?.as_f64()?,
        ppl: v.get("ppl")?.as_f64()?,
        tokens: v.get("tokens")?.as_u64()? as usize,
    })
}

fn read_json(path: &Path) -> Result<Value, PipelineError> {
    let text = std::fs::read_to_string(path).map_err(|e| PipelineError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| PipelineError::io(path, e))
}
