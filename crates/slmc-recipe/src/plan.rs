//! The plan `slmc check` prints: what each stage touches and what it costs, computed from the
//! recipe and the model's configuration alone (no weights are loaded).

use crate::diag::Diagnostic;
use crate::schema::*;
use slmc_config::ModelConfig;
use std::fmt;

/// Where in the pipeline a stage is planned: the recipe, the model the stage receives (the
/// input model reshaped by earlier stages), the teacher, the data's sequence length and the
/// device's kernels.
pub(crate) struct PlanInput<'a> {
    /// The recipe.
    pub recipe: &'a Recipe,
    /// The model the stage receives.
    pub model: &'a ModelConfig,
    /// The teacher, when the recipe has one.
    pub teacher: Option<&'a ModelConfig>,
    /// Tokens per training sequence.
    pub seq: usize,
    /// How the device computes (which activations it keeps).
    pub compute: Compute,
}

/// The plan of one stage, as each kind's planner returns it.
pub(crate) struct KindPlan {
    /// One-line description.
    pub summary: String,
    /// Tensors and parameters it changes.
    pub touched: (usize, usize),
    /// Peak memory (the runtime's share is added by the caller).
    pub memory: Memory,
    /// The modules the stage binds (quantize / prune targets, adapters), when it binds some.
    pub modules: Option<Vec<String>>,
    /// The model after the stage, when the stage changes its shape.
    pub model: Option<ModelConfig>,
    /// Problems binding the stage to the model.
    pub problems: Vec<Diagnostic>,
}

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
    /// Records held in memory: quantization codes, the top-K teacher cache.
    pub records: u64,
    /// The process itself: code, allocator, tokenizer, data buffers ([`RUNTIME_BYTES`]).
    pub runtime: u64,
}

impl Memory {
    /// Sum of the parts.
    pub fn total(&self) -> u64 {
        self.weights + self.gradients + self.optimizer + self.activations + self.records + self.runtime
    }
}

/// What the process needs besides the stage's tensors (binary, allocator arenas, tokenizer,
/// data buffers): measured on CPU at 50-80 MB (scripts/plan_vs_measured.py).
pub const RUNTIME_BYTES: u64 = 64_000_000;

/// f32 values per position of the chunk the vocabulary loss works on: cross-entropy keeps the
/// logits, their log-softmax and its gradient.
pub(crate) const CE_HEAD_VALUES: u64 = 3;
/// The same for a KD loss on a live or cached teacher: student logits, scaled logits, log-softmax,
/// probabilities and gradients, the teacher's logits and log-probabilities, the pointwise terms.
pub(crate) const KD_HEAD_VALUES: u64 = 10;

/// Bytes per value a training stage's `precision` gives each kind of tensor.
pub(crate) struct PrecisionBytes {
    /// Trained weights (f32 master weights under bf16-mixed).
    pub weight: u64,
    /// Gradients.
    pub grad: u64,
    /// AdamW's two moments together.
    pub adam: u64,
    /// Activations kept by the trunk and a frozen teacher's forward.
    pub act: u64,
    /// The frozen teacher's weights.
    pub teacher: u64,
    /// The bf16 compute copy of the trained weights bf16-mixed keeps while they are in use.
    pub compute_copy: u64,
}

pub(crate) fn precision_bytes(p: Precision) -> PrecisionBytes {
    match p {
        Precision::F32 => PrecisionBytes { weight: 4, grad: 4, adam: 8, act: 4, teacher: 4, compute_copy: 0 },
        Precision::Bf16Mixed => {
            PrecisionBytes { weight: 4, grad: 4, adam: 8, act: 2, teacher: 2, compute_copy: 2 }
        }
        Precision::Bf16 => {
            PrecisionBytes { weight: 2, grad: 2, adam: 4, act: 2, teacher: 2, compute_copy: 0 }
        }
    }
}

/// Bytes of the bf16 compute copy of `params` trained weights: the whole model's, or with
/// layer-wise checkpointing one layer's at a time.
pub(crate) fn compute_copy_bytes(b: &PrecisionBytes, params: u64, layers: usize, checkpointing: bool) -> u64 {
    b.compute_copy * if checkpointing { params / layers.max(1) as u64 } else { params }
}

/// Positions of one chunk of the vocabulary loss: `loss-chunk`, at most the micro-batch's tokens
/// (0 = all of them).
pub(crate) fn loss_chunk_tokens(loss_chunk: usize, tokens: u64) -> u64 {
    if loss_chunk == 0 { tokens } else { (loss_chunk as u64).min(tokens) }
}

/// f32 values per token of a differentiated trunk (embeddings to final norm): every layer's
/// activations, or with layer-wise checkpointing one layer's plus every layer's input.
pub(crate) fn trunk_values_per_token(c: &ModelConfig, seq: usize, checkpointing: bool, fused: bool) -> u64 {
    let per_token = activation_values_per_token(c, seq, fused);
    if checkpointing {
        let layers = c.num_layers.max(1) as u64;
        per_token / layers + layers * c.hidden_size as u64
    } else {
        per_token
    }
}

/// f32 values per token of an inference forward pass at its widest point (no graph kept): the
/// residual stream and one layer's projections, SwiGLU intermediates and attention scores with
/// their softmax.
pub(crate) fn forward_values_per_token(c: &ModelConfig, seq: usize) -> u64 {
    4 * c.hidden_size as u64 + 4 * c.intermediate_size as u64 + 2 * (c.num_heads * seq) as u64
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
    /// The operations the memory estimates assume.
    pub compute: Compute,
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
    /// The device memory the stages should fit (`memory-budget`, or `slmc check --memory-budget`).
    pub memory_budget: Option<u64>,
}

impl Plan {
    /// The stages whose planned peak exceeds the memory budget: (stage index, planned peak).
    pub fn over_budget(&self) -> Vec<(usize, u64)> {
        let Some(budget) = self.memory_budget else { return Vec::new() };
        self.stages
            .iter()
            .filter(|s| s.memory.total() > budget)
            .map(|s| (s.index, s.memory.total()))
            .collect()
    }
}

/// Parses a memory size: `48GB`, `24 GiB`, `512MB`, `1.5e9` (bytes); decimal (GB = 10⁹) and
/// binary (GiB = 2³⁰) units, case-insensitive.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    // The unit is the trailing run of letters (`1.5e9` has none: its `e` is the exponent's).
    let split = t.trim_end_matches(|c: char| c.is_ascii_alphabetic()).len();
    let (num, unit) = t.split_at(split);
    let value: f64 =
        num.trim().parse().map_err(|_| format!("expected a size such as \"48GB\", got \"{text}\""))?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024f64.powi(2),
        "gib" => 1024f64.powi(3),
        "tib" => 1024f64.powi(4),
        other => {
            return Err(format!(
                "unknown unit `{other}` in \"{text}\" (use B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)"
            ));
        }
    };
    if !(value > 0.0 && value.is_finite()) {
        return Err(format!("the size must be positive, got \"{text}\""));
    }
    Ok((value * scale) as u64)
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

/// Values kept per token by a forward pass that will be differentiated. With slmc's `fused`
/// kernels (flex, f32) the decoder keeps per layer the two norms' inputs and outputs (the outputs
/// are what the projections read), the rotated q and k and v the attention reads, its output, and
/// SwiGLU's two inputs and output: no attention score square, no elementwise intermediates. burn's composition (other
/// backends, bf16) keeps its intermediates too: the projections before rotation, the rotary
/// copies, the score square, SwiGLU's elementwise steps.
pub(crate) fn activation_values_per_token(c: &ModelConfig, seq: usize, fused: bool) -> u64 {
    let (h, i, kv) = (c.hidden_size as u64, c.intermediate_size as u64, c.kv_dim() as u64);
    let q = c.q_dim() as u64;
    let per_layer = if fused {
        4 * h + 2 * q + 2 * kv + 3 * i
    } else {
        6 * h + 3 * q + 4 * kv + 6 * i + (c.num_heads * seq) as u64
    };
    c.num_layers as u64 * per_layer + 2 * h
}

/// Bytes a training stage's differentiated trunk keeps over `tokens` positions: in its
/// precision, checkpointed or not, counted for slmc's fused kernels where they run (flex, f32).
pub(crate) fn trunk_bytes(
    c: &ModelConfig,
    seq: usize,
    tokens: u64,
    t: &TrainParams,
    compute: Compute,
) -> u64 {
    let fused = compute == Compute::FlexKernels && t.precision == Precision::F32;
    precision_bytes(t.precision).act
        * tokens
        * trunk_values_per_token(c, seq, t.activation_checkpointing, fused)
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
    plan_on(recipe, model, teacher, Compute::FlexKernels)
}

/// Which operations the stages will run, which decides what a differentiated forward keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compute {
    /// flex (the CPU default): slmc's fused kernels in f32 (`slmc_model::kernels`).
    FlexKernels,
    /// burn's composed operations: the cuda and tch backends, and bf16 everywhere.
    Composed,
}

impl Compute {
    /// The operations a device (`--device` name) runs: flex's kernels, or burn's composition.
    pub fn for_device(name: &str) -> Self {
        if matches!(name, "flex" | "cpu") { Compute::FlexKernels } else { Compute::Composed }
    }
}

/// [`plan`] for the operations `compute` names.
pub fn plan_on(recipe: &Recipe, model: ModelConfig, teacher: Option<&ModelConfig>, compute: Compute) -> Plan {
    let input = model.clone();
    let mut model = model;
    let seq = recipe.data.as_ref().map_or(256, |d| d.seq_len);
    let mut stages = Vec::new();
    let mut problems = Vec::new();
    let mut stage_modules = Vec::new();
    for s in &recipe.stages {
        let at = PlanInput { recipe, model: &model, teacher, seq, compute };
        let planned = match &s.kind {
            StageKind::Distill(dp) => match crate::plan_distill::plan(dp, &at) {
                Ok(k) => k,
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
            },
            StageKind::Finetune(t) => crate::plan_finetune::plan(t, &at),
            StageKind::Quantize(q) => crate::plan_quantize::plan(q, &at, &s.origin),
            StageKind::Prune(p) => crate::plan_prune::plan_stage(p, &at, &s.origin),
            StageKind::Eval(e) => crate::plan_eval::plan(e, &at),
        };
        problems.extend(planned.problems);
        if let Some(m) = planned.modules {
            stage_modules.push((s.index, m));
        }
        if let Some(m) = planned.model {
            model = m;
        }
        stages.push(StagePlan {
            index: s.index,
            kind: s.kind.name(),
            summary: planned.summary,
            tensors_touched: planned.touched.0,
            params_touched: planned.touched.1,
            memory: Memory { runtime: RUNTIME_BYTES, ..planned.memory },
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
                    if let Err(why) = slmc_gguf::export::arch::representable(&model) {
                        problems.push(Diagnostic::plain(format!("[export] gguf: {why}")));
                    }
                    let t = recipe.gguf_type().unwrap_or(slmc_gguf::FileType::default_for(model.dtype));
                    let bits = t.bits_per_weight();
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
        memory_budget: recipe.memory_budget,
        compute,
    }
}

/// Peak memory of a calibration walk: the block's input, attention context, residual and output
/// for every calibration window, one batch's forward pass through the block, plus one site's
/// Hessian and its factorisation (several f64 copies of the widest input; `widest = 0`: none).
pub(crate) fn calibration_memory(
    model: &ModelConfig,
    c: &CalibrationParams,
    len: usize,
    widest: usize,
) -> u64 {
    let windows = 4 * 4 * c.samples as u64 * len as u64 * model.hidden_size as u64;
    let batch = 4 * (c.batch_size.min(c.samples) * len) as u64 * forward_values_per_token(model, len);
    windows + batch + 50 * (widest * widest) as u64
}

/// Shape constraints of the exports a quantize stage feeds: ggml blocks of 32 input columns,
/// GPTQ words of 32/bits codes along both dimensions and whole groups per row.
pub(crate) fn quantize_shape_problems(
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
        && slmc_gguf::FileType::for_uniform_grid(q.bits, q.group_size, q.sym).is_some();
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
            let records =
                if mm.records > 0 { format!(", records {}", bytes(mm.records)) } else { String::new() };
            writeln!(
                f,
                "         peak memory ≈ {} (weights {}, gradients {}, AdamW state {}, activations {}{records}, runtime {})",
                bytes(mm.total()),
                bytes(mm.weights),
                bytes(mm.gradients),
                bytes(mm.optimizer),
                bytes(mm.activations),
                bytes(mm.runtime)
            )?;
        }
        writeln!(
            f,
            "memory   estimates assume one device holding every tensor (on CPU, host RAM), in f32 unless a stage sets `precision`, {}, {}",
            match self.compute {
                Compute::FlexKernels => "flex's fused f32 kernels (`--device cuda|tch`: burn's operations)",
                Compute::Composed => "burn's operations (cuda, tch)",
            },
            match self.memory_budget {
                Some(b) => format!("budget {}", bytes(b)),
                None => "no budget given (--memory-budget or `memory-budget`)".to_string(),
            }
        )?;
        for (index, total) in self.over_budget() {
            writeln!(
                f,
                "warning: stage {index} plans {} and will not fit the {} budget",
                bytes(total),
                bytes(self.memory_budget.unwrap_or(0))
            )?;
        }
        for (what, size) in &self.exports {
            writeln!(f, "export   {what}: ≈ {}", bytes(*size))?;
        }
        Ok(())
    }
}
