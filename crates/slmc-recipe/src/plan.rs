//! The plan `slmc check` prints: what each stage touches and what it costs, computed from the
//! recipe and the model's configuration alone (no weights are loaded).

use crate::diag::Diagnostic;
use crate::schema::*;
use slmc_formats::ModelConfig;
use std::fmt;

/// Estimated peak memory of a stage, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// Model weights (f32 while computing).
    pub weights: u64,
    /// Gradients of trained parameters.
    pub gradients: u64,
    /// Optimizer state (AdamW: two f32 moments).
    pub optimizer: u64,
    /// Activations kept for the backward pass (or of one forward pass).
    pub activations: u64,
}

impl Memory {
    /// Sum of the parts.
    pub fn total(&self) -> u64 {
        self.weights + self.gradients + self.optimizer + self.activations
    }
}

/// One stage of the plan.
#[derive(Debug, Clone)]
pub struct StagePlan {
    /// Stage position.
    pub index: usize,
    /// Kind name.
    pub kind: &'static str,
    /// One-line description.
    pub summary: String,
    /// Tensors the stage changes.
    pub tensors_touched: usize,
    /// Parameters the stage changes.
    pub params_touched: usize,
    /// Peak memory estimate.
    pub memory: Memory,
}

/// What a recipe will do.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The recipe's name.
    pub name: String,
    /// The model's configuration.
    pub model: ModelConfig,
    /// Where the model comes from.
    pub model_source: String,
    /// Tensors in the model.
    pub tensors: usize,
    /// Stages.
    pub stages: Vec<StagePlan>,
    /// Export artifacts and their estimated sizes in bytes.
    pub exports: Vec<(String, u64)>,
    /// The run directory.
    pub run_dir: String,
    /// Problems found binding the recipe to the model (selectors that select nothing, shapes
    /// an export cannot hold): `slmc check` and `slmc run` refuse the recipe when non-empty.
    pub problems: Vec<Diagnostic>,
    /// Modules each quantize or prune stage touches, by stage index.
    pub stage_modules: Vec<(usize, Vec<String>)>,
}

/// Reads the configuration of a model source (its `config.json`, or the inline table).
pub fn model_config(source: &ModelSource) -> Result<ModelConfig, Diagnostic> {
    match source {
        ModelSource::Path { path, origin } => {
            let file = path.join("config.json");
            if !file.is_file() {
                return Err(Diagnostic::new(
                    format!("{} is not a Hugging Face model directory (no config.json)", path.display()),
                    origin.clone(),
                ));
            }
            ModelConfig::from_file(&file).map_err(|e| Diagnostic::new(e.to_string(), origin.clone()))
        }
        ModelSource::Config { config, origin, .. } => {
            ModelConfig::from_json_str(&config.to_string(), "[model] config")
                .map_err(|e| Diagnostic::new(e.to_string(), origin.clone()))
        }
    }
}

/// Number of tensors of a model (Hugging Face names).
pub fn tensor_count(c: &ModelConfig) -> usize {
    let fused = c.arch.fused_projections();
    let attn = if fused { 2 } else { 4 }
        + if c.qkv_bias { if fused { 1 } else { 3 } } else { 0 }
        + usize::from(c.o_bias);
    let mlp = if fused { 2 } else { 3 } + if c.mlp_bias { if fused { 2 } else { 3 } } else { 0 };
    1 + c.num_layers * (2 + attn + mlp) + 1 + usize::from(!c.tie_word_embeddings)
}

/// f32 values kept per token by a forward pass that will be differentiated (our decoder: norms,
/// projections, rotary copies, attention output, SwiGLU intermediates, residuals).
fn activation_values_per_token(c: &ModelConfig, seq: usize) -> u64 {
    let (h, i, kv) = (c.hidden_size as u64, c.intermediate_size as u64, c.kv_dim() as u64);
    let q = c.q_dim() as u64;
    let per_layer = 6 * h + 3 * q + 4 * kv + 6 * i + (c.num_heads * seq) as u64;
    c.num_layers as u64 * per_layer + 2 * h
}

/// The layers a `teacher-layers` student takes: the given ones, or every other layer.
pub fn student_layers(layers: &Option<Vec<usize>>, teacher_layers: usize) -> Vec<usize> {
    layers.clone().unwrap_or_else(|| (0..teacher_layers).step_by(2).collect())
}

/// The configuration of a distillation student.
pub fn student_config(
    init: &StudentInit,
    current: &ModelConfig,
    teacher: &ModelConfig,
) -> Result<ModelConfig, String> {
    match init {
        StudentInit::Current => Ok(current.clone()),
        StudentInit::TeacherLayers(layers) => {
            let layers = student_layers(layers, teacher.num_layers);
            if let Some(bad) = layers.iter().find(|&&l| l >= teacher.num_layers) {
                return Err(format!(
                    "`layers` names layer {bad}, but the teacher has {} (0-based)",
                    teacher.num_layers
                ));
            }
            let mut c = teacher.clone();
            c.select_layers(&layers);
            Ok(c)
        }
        StudentInit::Config(overrides) => {
            let mut json = teacher.to_hf_json();
            if let serde_json::Value::Object(m) = &mut json {
                for (k, v) in overrides {
                    m.insert(k.clone(), v.clone());
                }
                // A changed depth invalidates per-layer attention types copied from the teacher.
                if overrides.contains_key("num_hidden_layers") {
                    m.remove("layer_types");
                }
            }
            ModelConfig::from_json_str(&json.to_string(), "student-config").map_err(|e| e.to_string())
        }
        StudentInit::Path(p) => ModelConfig::from_file(&p.join("config.json")).map_err(|e| e.to_string()),
    }
}

/// Builds the plan from the model's configuration (and the teacher's, for distill stages).
pub fn plan(recipe: &Recipe, model: ModelConfig, teacher: Option<&ModelConfig>) -> Plan {
    let input = model.clone();
    let mut model = model;
    let seq = recipe.data.as_ref().map_or(256, |d| d.seq_len);
    let mut stages = Vec::new();
    let mut problems = Vec::new();
    let mut stage_modules = Vec::new();
    for s in &recipe.stages {
        let params = model.num_params() as u64;
        let weights = 4 * params;
        let vocab = model.vocab_size as u64;
        let (summary, touched, memory) = match &s.kind {
            StageKind::Distill(dp) => {
                let t = &dp.train;
                let teacher = teacher.cloned().unwrap_or_else(|| model.clone());
                let student = match student_config(&dp.init, &model, &teacher) {
                    Ok(c) => c,
                    Err(e) => {
                        stages.push(StagePlan {
                            index: s.index,
                            kind: "distill",
                            summary: format!("distill: cannot build the student: {e}"),
                            tensors_touched: 0,
                            params_touched: 0,
                            memory: Memory::default(),
                        });
                        continue;
                    }
                };
                let sp = student.num_params() as u64;
                let tokens = (t.batch_size * seq) as u64;
                let student_acts = 4 * tokens * (activation_values_per_token(&student, seq) + 3 * vocab);
                let teacher_acts = if dp.teacher_cache_topk.is_some() {
                    0
                } else {
                    4 * tokens * (2 * vocab + 4 * teacher.hidden_size as u64)
                };
                let summary = format!(
                    "distill: {} ({:.2}M) → student {} layers × {} ({:.2}M params, init {}), {:?} τ={} α={}{}{}, {} steps × {} seq × {} tokens",
                    teacher.arch.model_type(),
                    teacher.num_params() as f64 / 1e6,
                    student.num_layers,
                    student.hidden_size,
                    sp as f64 / 1e6,
                    match &dp.init {
                        StudentInit::Current => "current model".to_string(),
                        StudentInit::Config(_) => "fresh from config".to_string(),
                        StudentInit::TeacherLayers(l) =>
                            format!("teacher layers {:?}", student_layers(l, teacher.num_layers)),
                        StudentInit::Path(p) => p.display().to_string(),
                    },
                    dp.loss,
                    dp.temperature,
                    dp.alpha,
                    if dp.hidden.is_some() { ", + hidden-state loss" } else { "" },
                    dp.teacher_cache_topk.map_or(String::new(), |k| format!(", teacher top-{k} cache")),
                    t.steps,
                    t.batch_size * t.grad_accum,
                    seq
                );
                let mut mem = Memory {
                    weights: 4 * sp + 4 * teacher.num_params() as u64,
                    gradients: 4 * sp,
                    optimizer: 8 * sp,
                    activations: student_acts + teacher_acts,
                };
                let mut touched = (tensor_count(&student), student.num_params());
                let mut summary = summary;
                if let Some(a) = &t.adapter {
                    let modules = crate::plan_lora::adapter_modules(a, &student).unwrap_or_else(|p| {
                        problems.extend(p);
                        Vec::new()
                    });
                    summary = format!(
                        "{summary}; student trains {}",
                        crate::plan_lora::summary(a, &student, &modules)
                    );
                    let m = crate::plan_lora::memory(a, &student, &modules, mem.activations);
                    mem = Memory { weights: m.weights + 4 * teacher.num_params() as u64, ..m };
                    touched = (modules.len() * 2, crate::plan_lora::trainable_params(a, &student, &modules));
                    stage_modules.push((s.index, modules));
                }
                model = student;
                (summary, touched, mem)
            }
            StageKind::Finetune(t) => {
                let tokens = (t.batch_size * seq) as u64;
                let per_token = activation_values_per_token(&model, seq);
                let acts = if t.activation_checkpointing {
                    // One layer's activations, every layer's input, the head's.
                    let layers = model.num_layers.max(1) as u64;
                    4 * tokens * (per_token / layers + layers * model.hidden_size as u64 + 3 * vocab)
                } else {
                    4 * tokens * (per_token + 3 * vocab)
                };
                let summary = format!(
                    "full fine-tune: {} steps × {} seq × {} tokens{} = {} tokens, lr {:e} ({:?}, warmup {})",
                    t.steps,
                    t.batch_size,
                    seq,
                    if t.grad_accum > 1 { format!(" × {} accum", t.grad_accum) } else { String::new() },
                    t.steps * t.batch_size * t.grad_accum * seq,
                    t.lr,
                    t.schedule,
                    t.warmup_steps
                );
                match &t.adapter {
                    None => {
                        let mem =
                            Memory { weights, gradients: weights, optimizer: 2 * weights, activations: acts };
                        (summary, (tensor_count(&model), model.num_params()), mem)
                    }
                    Some(a) => {
                        let modules = crate::plan_lora::adapter_modules(a, &model).unwrap_or_else(|p| {
                            problems.extend(p);
                            Vec::new()
                        });
                        let summary = format!(
                            "{} fine-tune: {}; {} steps × {} seq × {} tokens, lr {:e}",
                            a.kind.name(),
                            crate::plan_lora::summary(a, &model, &modules),
                            t.steps,
                            t.batch_size * t.grad_accum,
                            seq,
                            t.lr
                        );
                        let mem = crate::plan_lora::memory(a, &model, &modules, acts);
                        let touched = (
                            modules.len() * 2 + a.modules_to_save.len(),
                            crate::plan_lora::trainable_params(a, &model, &modules),
                        );
                        stage_modules.push((s.index, modules));
                        (summary, touched, mem)
                    }
                }
            }
            StageKind::Quantize(q) => {
                let modules = match crate::select::resolve(&q.select, &model.linear_modules()) {
                    Ok(m) => m,
                    Err(p) => {
                        problems.extend(p);
                        Vec::new()
                    }
                };
                problems.extend(quantize_shape_problems(recipe, q, &model, &modules, &s.origin));
                let shapes: Vec<[usize; 2]> = modules.iter().filter_map(|m| model.linear_shape(m)).collect();
                let params: usize = shapes.iter().map(|[o, i]| o * i).sum();
                let widest = shapes.iter().map(|s| s[1]).max().unwrap_or(0);
                let calib_len = q.calibration.len.unwrap_or(seq);
                let gptq = q.method == QuantMethod::Gptq;
                let acts = if gptq {
                    calibration_memory(q.calibration.samples, calib_len, model.hidden_size, widest)
                } else {
                    0
                };
                let summary = format!(
                    "quantize: {} {}, {} of {} linear modules{}",
                    if gptq { "GPTQ" } else { "RTN" },
                    q.grid_name(),
                    modules.len(),
                    model.linear_modules().len(),
                    if gptq {
                        format!(
                            ", {} calibration windows × {calib_len} tokens, damp {}",
                            q.calibration.samples, q.damp
                        )
                    } else {
                        String::new()
                    }
                );
                stage_modules.push((s.index, modules.clone()));
                (
                    summary,
                    (modules.len(), params),
                    Memory { weights, activations: acts, ..Default::default() },
                )
            }
            StageKind::Prune(p) => match crate::plan_prune::plan(p, &model, seq, &s.origin) {
                Ok(pp) => {
                    if p.is_unstructured() {
                        stage_modules.push((s.index, pp.modules));
                    }
                    model = pp.model;
                    (pp.summary, pp.touched, pp.memory)
                }
                Err(p) => {
                    problems.extend(p);
                    ("prune: cannot be planned on this model".into(), (0, 0), Memory::default())
                }
            },
            StageKind::Eval(e) => {
                let ctx = e.ctx.unwrap_or(seq);
                let acts = 4
                    * ctx as u64
                    * (model.hidden_size as u64 * 4 + model.intermediate_size as u64 * 3 + 2 * vocab);
                let rows = recipe.data.as_ref().is_some_and(|d| d.rows.is_rows());
                let summary = if rows {
                    format!("eval: perplexity over the trained tokens of the held-out rows (seq-len {seq})")
                } else {
                    format!("eval: perplexity, window {ctx}, stride {}", e.stride.unwrap_or((ctx / 2).max(1)))
                };
                (summary, (0, 0), Memory { weights, activations: acts, ..Default::default() })
            }
        };
        stages.push(StagePlan {
            index: s.index,
            kind: s.kind.name(),
            summary,
            tensors_touched: touched.0,
            params_touched: touched.1,
            memory,
        });
    }
    let mut exports = Vec::new();
    if let Some(e) = &recipe.export {
        for f in &e.formats {
            match f {
                ExportFormat::Safetensors => {
                    let dtype = e.dtype.unwrap_or(input.dtype);
                    exports.push((
                        format!("safetensors ({dtype})"),
                        model.num_params() as u64 * dtype.size_bytes() as u64,
                    ));
                }
                ExportFormat::Gptq => {
                    let bits = recipe.last_quantize().map_or(4, |q| q.bits) as f64 + 0.3;
                    exports.push((
                        "gptq (packed safetensors)".into(),
                        (model.num_params() as f64 * bits / 8.0) as u64,
                    ));
                }
                ExportFormat::Peft | ExportFormat::GgufLora => {
                    let adapter = recipe.stages.iter().rev().find_map(|s| match &s.kind {
                        StageKind::Finetune(t) => t.adapter.as_ref(),
                        StageKind::Distill(d) => d.train.adapter.as_ref(),
                        _ => None,
                    });
                    let bytes = adapter.map_or(0, |a| {
                        let modules = crate::plan_lora::adapter_modules(a, &model).unwrap_or_default();
                        4 * crate::plan_lora::trainable_params(a, &model, &modules) as u64
                    });
                    let name = if *f == ExportFormat::Peft {
                        "peft adapter (f32)"
                    } else {
                        "gguf-lora adapter (f32)"
                    };
                    exports.push((name.into(), bytes));
                }
                ExportFormat::Gguf => {
                    if let Err(why) = slmc_formats::gguf::export::arch::representable(&model) {
                        problems.push(Diagnostic::plain(format!("[export] gguf: {why}")));
                    }
                    let t = recipe.gguf_type();
                    let bits = gguf_nominal_bits(t.name());
                    exports.push((
                        format!("gguf ({})", t.name()),
                        (model.num_params() as f64 * bits / 8.0) as u64,
                    ));
                }
            }
        }
    }
    let model_source = match &recipe.model {
        ModelSource::Path { path, .. } => path.display().to_string(),
        ModelSource::Config { tokenizer, .. } => {
            format!("new from [model] config (tokenizer {})", tokenizer.display())
        }
    };
    Plan {
        name: recipe.name.clone(),
        tensors: tensor_count(&input),
        model: input,
        model_source,
        stages,
        exports,
        run_dir: recipe.run_dir().display().to_string(),
        problems,
        stage_modules,
    }
}

/// Peak memory of a calibration walk: the block's input, attention context, residual and output
/// for every calibration window, plus one site's Hessian and its factorisation (several f64
/// copies of the widest input).
pub(crate) fn calibration_memory(samples: usize, len: usize, hidden: usize, widest: usize) -> u64 {
    4 * 4 * samples as u64 * len as u64 * hidden as u64 + 50 * (widest * widest) as u64
}

/// Shape constraints of the exports a quantize stage feeds: ggml blocks of 32 input columns,
/// GPTQ words of 32/bits codes along both dimensions and whole groups per row.
fn quantize_shape_problems(
    recipe: &Recipe,
    q: &QuantizeParams,
    model: &ModelConfig,
    modules: &[String],
    origin: &crate::tree::Origin,
) -> Vec<Diagnostic> {
    let formats = recipe.export.as_ref().map(|e| e.formats.clone()).unwrap_or_default();
    let is_last = recipe.last_quantize().is_some_and(|l| std::ptr::eq(l, q));
    let mut out = Vec::new();
    let all = model.linear_modules();
    if is_last && formats.contains(&ExportFormat::Gptq) && modules.len() < all.len() {
        let left: Vec<&String> = all.iter().filter(|m| !modules.contains(m)).collect();
        out.push(Diagnostic::new(
            format!(
                "the gptq export needs every decoder linear module quantized (GPTQ loaders replace them all), but {} are left out, e.g. {}",
                left.len(),
                left[0]
            ),
            origin.clone(),
        ));
    }
    let gguf_as_is = formats.contains(&ExportFormat::Gguf)
        && !recipe.export.as_ref().is_some_and(|e| e.requantize)
        && slmc_formats::gguf::FileType::for_uniform_grid(q.bits, q.group_size, q.sym).is_some();
    // The first module of each kind of problem is named (one line per kind, not per module).
    if let Some((m, cols)) =
        modules.iter().filter_map(|m| Some((m, model.linear_shape(m)?[1]))).find(|(_, cols)| cols % 32 != 0)
        && is_last
        && gguf_as_is
    {
        out.push(Diagnostic::new(
            format!("{m} has {cols} input columns, not a multiple of the 32 a GGUF block holds"),
            origin.clone(),
        ));
    }
    for m in modules {
        let Some([rows, cols]) = model.linear_shape(m) else { continue };
        if is_last && formats.contains(&ExportFormat::Gptq) {
            let per_word = 32 / usize::from(q.bits.max(1));
            let group_ok = q.group_size.is_none_or(|g| cols % g == 0);
            if rows % per_word != 0 || cols % per_word != 0 || !group_ok {
                out.push(Diagnostic::new(
                    format!("{m} is {rows}x{cols}: the gptq export needs both dimensions multiples of {per_word} and whole groups of {} columns", q.group_size.map_or(cols, |g| g)),
                    origin.clone(),
                ));
                break;
            }
        }
    }
    out
}

/// Nominal bits per weight of a GGUF export type (the file is close to this; K-quant mixes keep
/// some tensors wider).
fn gguf_nominal_bits(name: &str) -> f64 {
    match name {
        "f32" => 32.0,
        "f16" | "bf16" => 16.0,
        "q8_0" => 8.5,
        "q6_k" => 6.56,
        "q5_0" | "q5_k" | "q5_k_s" => 5.5,
        "q5_1" | "q5_k_m" => 5.75,
        "q4_1" => 5.0,
        "q4_k_m" => 4.85,
        _ => 4.5,
    }
}

/// Human-readable bytes.
pub fn bytes(b: u64) -> String {
    let b = b as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.1} kB", b / 1e3)
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.model;
        writeln!(f, "recipe   {}  (run directory {})", self.name, self.run_dir)?;
        writeln!(
            f,
            "model    {}: {} ({:.2}M parameters, {} tensors, {} layers, hidden {}, vocab {})",
            self.model_source,
            m.arch.model_type(),
            m.num_params() as f64 / 1e6,
            self.tensors,
            m.num_layers,
            m.hidden_size,
            m.vocab_size
        )?;
        for s in &self.stages {
            writeln!(f, "stage {}  {}", s.index, s.summary)?;
            if s.tensors_touched > 0 {
                writeln!(
                    f,
                    "         touches {} tensors / {} parameters",
                    s.tensors_touched, s.params_touched
                )?;
            }
            let mm = s.memory;
            writeln!(
                f,
                "         peak memory ≈ {} (weights {}, gradients {}, AdamW state {}, activations {})",
                bytes(mm.total()),
                bytes(mm.weights),
                bytes(mm.gradients),
                bytes(mm.optimizer),
                bytes(mm.activations)
            )?;
        }
        for (what, size) in &self.exports {
            writeln!(f, "export   {what}: ≈ {}", bytes(*size))?;
        }
        Ok(())
    }
}
