//! Runs a recipe's stages in order.

use crate::data::{files_of, prepare_data, tokenizer_dir_of, tokenizer_file};
use crate::evaluation::{EvalResult, cached_eval, eval_model};
use crate::events::{Event, Observer};
use crate::exports::{self, ExportTarget};
use crate::fingerprint::{hash_files, model_files, sha256_hex};
use crate::metrics::MetricsLog;
use crate::options::RunOptions;
use crate::resume;
use crate::run_dir::{Manifest, RunDir};
use crate::stage_run::{StageEval, StageRun};
use crate::state::{Records, State};
use crate::{PipelineError, gates, report};
use burn::prelude::*;
use slmc_config::FloatDtype;
use slmc_data::SourceOptions;
use slmc_model::model::Init;
use slmc_model::{CausalLm, HfModel, ModelConfig, Tokenizer};
use slmc_recipe::{ModelSource, Plan, Recipe};
use std::path::PathBuf;

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

/// Runs `recipe`: prepares the run directory (or resumes it), binds the recipe to the model,
/// then hands the state (model + records) from stage to stage, and ends with gates, exports and
/// the report.
pub fn run(
    recipe: &Recipe,
    options: &RunOptions<'_>,
    observer: &mut dyn Observer,
) -> Result<RunSummary, PipelineError> {
    let stages: Vec<&slmc_recipe::Stage> =
        recipe.stages.iter().filter(|s| options.only_kind.is_none_or(|k| k == s.kind.kind())).collect();
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
    let data = recipe.data.as_ref();
    let train_files = data.map(|d| files_of(&d.train)).transpose()?.unwrap_or_default();
    let eval_files = data.map(|d| files_of(&d.eval)).transpose()?.unwrap_or_default();
    let manifest = manifest(recipe, options, &train_files, &eval_files)?;
    let dir = RunDir::prepare(&root, &manifest, options.fresh, &input_paths(recipe, options, &manifest))?;
    if dir.resumed {
        observer.event(&Event::Info(format!("resuming {}", root.display())));
    }
    let metrics = MetricsLog::new(&dir.metrics_path());
    let device = &options.device;
    let mut input = load_input(recipe, device)?;
    if let Some(a) = &recipe.adapter {
        let adapter = slmc_formats::adapter::read_peft(&a.path)
            .map_err(|e| PipelineError::Recipe(format!("[model] adapter {}: {e}", a.path.display())))?;
        input.model = slmc_model::lora::attach(input.model, &adapter)
            .map_err(|e| PipelineError::Recipe(format!("[model] adapter {}: {e}", a.path.display())))?;
        observer.event(&Event::Info(format!(
            "loaded adapter {} ({} modules, r={})",
            a.path.display(),
            adapter.modules.len(),
            adapter.config.r
        )));
    }
    let plan = bind(recipe, &input.model, options)?;
    let tokenizer_dir = input.tokenizer_dir.as_deref();

    // Tokenized data, cached in the run directory.
    let prepared = match data {
        Some(d) => {
            let rows = crate::data_rows::RowInputs {
                tokenizer: input.tokenizer.as_ref(),
                tokenizer_dir: input.tokenizer_dir.as_deref(),
                metrics: &metrics,
            };
            let prepared =
                prepare_data(&dir, d, &train_files, &eval_files, input.tokenizer.as_ref(), &rows, observer)?;
            crate::data::check_vocab(&prepared, input.model.config.vocab_size, d)?;
            Some(prepared)
        }
        None => None,
    };
    let baseline = match (&prepared, recipe.gates.max_ppl_increase) {
        (Some(p), Some(_)) => {
            let protocol = gates::protocol(&stages);
            Some(cached_eval(&dir.root.join("baseline.json"), &input.model, p, &protocol, observer)?)
        }
        _ => None,
    };

    let mut state = State { model: input.model, records: Records::default() };
    let mut final_eval = None;
    // A stage is skipped only while every stage before it was: once one runs, the finished
    // results of later stages were made from an older input and are redone.
    let mut resuming = true;
    // The last skipped stage that saved a state: loaded once, when a stage runs or the run ends.
    let mut saved: Option<std::path::PathBuf> = None;
    for stage in &stages {
        let (index, kind) = (stage.index, stage.kind.kind());
        let sdir = dir.stage_dir(index, kind);
        if resuming && let Some(f) = resume::finished(&sdir, index, observer)? {
            observer.event(&Event::StageSkipped { index, kind });
            final_eval = if f.saved { f.eval } else { f.eval.or(final_eval) };
            if f.saved {
                saved = Some(sdir);
            }
            continue;
        }
        resuming = false;
        if let Some(s) = saved.take() {
            state = State::load(&s, device)?;
        }
        resume::invalidate(&sdir)?;
        let run = StageRun { recipe, plan: &plan, data: prepared.as_ref(), metrics: &metrics, options };
        let (next, eval) =
            run.stage(stage, state, &sdir, input.tokenizer.as_ref(), tokenizer_dir, observer)?;
        state = next;
        final_eval = match eval {
            StageEval::Changed(e) => e,
            StageEval::Same(e) => e.or(final_eval),
        };
    }

    if let Some(s) = saved.take() {
        state = State::load(&s, device)?;
    }
    let mut gate_lines = Vec::new();
    if gates::any(&recipe.gates) {
        let fe = match (final_eval, &prepared) {
            (Some(f), _) => f,
            (None, Some(p)) => eval_model(&state.model, p, &gates::protocol(&stages), observer)?,
            (None, None) => return Err(PipelineError::Recipe("[gates] need [data] to evaluate on".into())),
        };
        final_eval = Some(fe);
        gate_lines = gates::check(&recipe.gates, fe, baseline);
    }
    let target = ExportTarget { dir: dir.artifacts_dir(), tokenizer_dir, stored_dtype: input.stored_dtype };
    let artifacts = exports::write_all(recipe, &state, &target, observer)?;
    let gates = gate_lines;
    report::record_outcome(&dir.root, &gates, final_eval)?;
    report::render_run_dir(&dir.root)?;
    Ok(RunSummary { run_dir: dir.root.clone(), resumed: dir.resumed, baseline, final_eval, gates, artifacts })
}

/// The model a recipe starts from, with its tokenizer.
struct InputModel {
    model: CausalLm,
    tokenizer: Option<Tokenizer>,
    tokenizer_dir: Option<PathBuf>,
    stored_dtype: FloatDtype,
}

/// Loads `[model]` (a Hugging Face directory, or a fresh model from an inline config).
fn load_input(recipe: &Recipe, device: &Device) -> Result<InputModel, PipelineError> {
    Ok(match &recipe.model {
        ModelSource::Path { path, .. } => {
            let hf = HfModel::load(path, device)?;
            InputModel {
                stored_dtype: hf.stored_dtype,
                model: hf.model,
                tokenizer: hf.tokenizer,
                tokenizer_dir: Some(path.clone()),
            }
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
            InputModel {
                stored_dtype: cfg.dtype,
                model: CausalLm::new(&cfg, Init::Normal { std: 0.02, seed: recipe.seed }, device),
                tokenizer: Some(tok),
                tokenizer_dir: Some(tok_dir),
            }
        }
    })
}

/// The run's fingerprint: recipe text, overrides and stage selection, and every input file's hash.
fn manifest(
    recipe: &Recipe,
    options: &RunOptions<'_>,
    train_files: &[(PathBuf, SourceOptions)],
    eval_files: &[(PathBuf, SourceOptions)],
) -> Result<Manifest, PipelineError> {
    let mut inputs = Vec::new();
    match &recipe.model {
        ModelSource::Path { path, .. } => inputs.extend(model_files(path)),
        ModelSource::Config { tokenizer, .. } => inputs.push(tokenizer_file(tokenizer)),
    }
    // A different teacher makes a different student: its files are inputs too.
    if let Some(ModelSource::Path { path, .. }) = &recipe.teacher
        && !matches!(&recipe.model, ModelSource::Path { path: p, .. } if p == path)
    {
        inputs.extend(model_files(path));
    }
    if let Some(a) = &recipe.adapter {
        inputs.extend(["adapter_config.json", "adapter_model.safetensors"].map(|f| a.path.join(f)));
    }
    inputs.extend(train_files.iter().chain(eval_files).map(|(p, _)| p.clone()));
    let selection = Manifest::selection(options.only_kind);
    Ok(Manifest {
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
    })
}

/// Every path the run reads: the recipe file, the model, teacher and adapter directories and each
/// fingerprinted input file (what `--fresh` must never delete).
fn input_paths(recipe: &Recipe, options: &RunOptions<'_>, manifest: &Manifest) -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::from(&options.recipe_file)];
    for source in [Some(&recipe.model), recipe.teacher.as_ref()].into_iter().flatten() {
        match source {
            ModelSource::Path { path, .. } => paths.push(path.clone()),
            ModelSource::Config { tokenizer, .. } => paths.push(tokenizer.clone()),
        }
    }
    paths.extend(recipe.adapter.iter().map(|a| a.path.clone()));
    paths.extend(manifest.inputs.keys().map(PathBuf::from));
    paths
}

/// Binds the recipe to the model (selectors, export shapes, teacher) before any work; every
/// problem is reported at once, rendered against the recipe text.
fn bind(recipe: &Recipe, model: &CausalLm, options: &RunOptions<'_>) -> Result<Plan, PipelineError> {
    let teacher_cfg = match &recipe.teacher {
        Some(t) => Some(
            slmc_recipe::plan::model_config(t)
                .map_err(|d| PipelineError::Recipe(format!("[teacher]: {}", d.message)))?,
        ),
        None => None,
    };
    let plan = slmc_recipe::plan(recipe, model.config.clone(), teacher_cfg.as_ref());
    if plan.problems.is_empty() {
        return Ok(plan);
    }
    let sources = slmc_recipe::Sources {
        file_name: options.recipe_file.clone(),
        text: options.recipe_text.clone(),
        sets: options.sets.clone(),
    };
    let text = sources.render_some(&plan.problems);
    Err(PipelineError::Recipe(format!("{text}{} cannot run on this model", options.recipe_file)))
}
