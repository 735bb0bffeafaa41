//! The validated recipe.

pub use crate::schema_lora::AdapterParams;
pub use crate::schema_prune::PruneParams;
use crate::tree::Origin;
use slmc_config::FloatDtype;
use std::path::PathBuf;

/// A validated recipe.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// Recipe name (the default run directory is `runs/<name>`).
    pub name: String,
    /// Seed for initialisation, data order and sampling.
    pub seed: u64,
    /// Run directory override.
    pub run_dir: Option<PathBuf>,
    /// The model the stages act on.
    pub model: ModelSource,
    /// `[model] adapter`: a PEFT LoRA/DoRA directory loaded onto the model.
    pub adapter: Option<AdapterSource>,
    /// The teacher, for distillation stages.
    pub teacher: Option<ModelSource>,
    /// Training / evaluation / calibration data.
    pub data: Option<DataSpec>,
    /// Stages, in order.
    pub stages: Vec<Stage>,
    /// Artifacts to write at the end.
    pub export: Option<ExportSpec>,
    /// Pass/fail thresholds (exit code 3 when one fails).
    pub gates: Gates,
    /// `memory-budget = "48GB"`: the device memory the stages should fit; `slmc check` warns
    /// about each stage whose planned peak exceeds it (`--memory-budget` overrides it).
    pub memory_budget: Option<u64>,
}

impl Recipe {
    /// The last quantize stage, whose records the exporters write.
    pub fn last_quantize(&self) -> Option<&QuantizeParams> {
        self.stages.iter().rev().find_map(|s| match &s.kind {
            StageKind::Quantize(q) => Some(q),
            _ => None,
        })
    }

    /// The GGUF export type asked for: `gguf-type`, else the type of the quantize stage's grid
    /// (which holds its codes as-is); `None` leaves the default
    /// ([`slmc_gguf::FileType::default_for`] the model's dtype).
    pub fn gguf_type(&self) -> Option<slmc_gguf::FileType> {
        let e = self.export.as_ref()?;
        e.gguf_type.or_else(|| {
            let q = self.last_quantize()?;
            slmc_gguf::FileType::for_uniform_grid(q.bits, q.group_size, q.sym)
        })
    }

    /// The run directory: `run-dir`, else `runs/<name>`.
    pub fn run_dir(&self) -> PathBuf {
        self.run_dir.clone().unwrap_or_else(|| PathBuf::from("runs").join(&self.name))
    }
}

/// Where a model comes from.
#[derive(Debug, Clone)]
pub enum ModelSource {
    /// A Hugging Face directory.
    Path {
        /// The directory.
        path: PathBuf,
        /// Where `path` was written.
        origin: Origin,
    },
    /// A fresh model from an inline `config.json`-style table, with a tokenizer file.
    Config {
        /// The config, as `config.json` would hold it.
        config: serde_json::Value,
        /// The `tokenizer.json` to use.
        tokenizer: PathBuf,
        /// Where the `config` table was written.
        origin: Origin,
    },
}

/// `[model] adapter`: an existing PEFT adapter to continue training, evaluate, merge or export.
#[derive(Debug, Clone)]
pub struct AdapterSource {
    /// The PEFT directory.
    pub path: PathBuf,
    /// Where it was written.
    pub origin: Origin,
}

/// One data file (or glob) and the columns to read.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// Path or glob (`data/*.parquet`).
    pub path: String,
    /// Column / field of text.
    pub text_column: String,
    /// Column / field of pre-tokenized ids.
    pub ids_column: String,
    /// Where it was written.
    pub origin: Origin,
}

/// The `[data]` table.
#[derive(Debug, Clone)]
pub struct DataSpec {
    /// Training sources.
    pub train: Vec<SourceSpec>,
    /// Evaluation sources; when absent, `eval-fraction` of the training sequences are held out.
    pub eval: Vec<SourceSpec>,
    /// Tokens per training sequence.
    pub seq_len: usize,
    /// Fraction of training sequences held out for evaluation when there is no `eval` source.
    pub eval_fraction: f64,
    /// Packed text or instruction rows (`format`, `train-on`, `overlong`).
    pub rows: crate::schema_data::RowSpec,
}

/// Learning-rate schedule after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Cosine decay to `min-lr`.
    Cosine,
    /// Linear decay to `min-lr`.
    Linear,
    /// Constant.
    Constant,
}

/// Numeric precision of a training stage (`precision`); planned by `slmc check` and run by the
/// training stages (see `slmc-pipeline`'s `stages/training.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// Everything in f32.
    F32,
    /// bf16 weights and activations in forward/backward, f32 master weights, gradients and AdamW
    /// moments, losses and softmax reductions in f32; a frozen teacher held in bf16.
    Bf16Mixed,
    /// Weights, gradients, AdamW moments and activations in bf16 (losses in f32); teacher in bf16.
    Bf16,
}

impl crate::reader::Named for Schedule {
    const NAMES: &'static [(Self, &'static str)] =
        &[(Self::Cosine, "cosine"), (Self::Linear, "linear"), (Self::Constant, "constant")];
}

impl crate::reader::Named for Precision {
    const NAMES: &'static [(Self, &'static str)] =
        &[(Self::F32, "f32"), (Self::Bf16Mixed, "bf16-mixed"), (Self::Bf16, "bf16")];
}

impl Precision {
    /// The recipe spelling.
    pub fn name(self) -> &'static str {
        crate::reader::Named::spelling(self)
    }
}

/// Optimisation settings shared by training stages.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainParams {
    /// Optimizer steps.
    pub steps: usize,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate.
    pub min_lr: f64,
    /// Linear warmup steps.
    pub warmup_steps: usize,
    /// Decay after warmup.
    pub schedule: Schedule,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// AdamW β1.
    pub beta1: f64,
    /// AdamW β2.
    pub beta2: f64,
    /// AdamW ε.
    pub eps: f64,
    /// Global gradient-norm clip (0 = off).
    pub clip_grad_norm: f64,
    /// Evaluate every N steps (0 = only at the end).
    pub eval_every: usize,
    /// Sequences evaluated each time (0 = the whole eval set).
    pub eval_sequences: usize,
    /// Checkpoint every N steps (0 = only at the end).
    pub checkpoint_every: usize,
    /// Write a metrics line every N steps.
    pub log_every: usize,
    /// `method = "lora" | "dora" | "qlora"`: train adapters on the frozen model (`None`: every
    /// parameter trains).
    pub adapter: Option<AdapterParams>,
    /// Layer-wise gradient checkpointing (`activation-checkpointing`; default on for QLoRA): one
    /// layer's activations in memory at a time, for an extra forward pass.
    pub activation_checkpointing: bool,
    /// Positions per chunk of the vocabulary losses (`loss-chunk`; 0 = the whole micro-batch at
    /// once): the LM head, cross-entropy and KD divergences run chunk by chunk, so that
    /// `[batch, seq, vocab]` logits never exist whole.
    pub loss_chunk: usize,
    /// `precision` (default f32).
    pub precision: Precision,
}

/// Default `loss-chunk`: 1024 positions (with a 32k vocabulary, 131 MB per f32 logits copy).
pub const DEFAULT_LOSS_CHUNK: usize = 1024;

/// How a distillation student starts.
#[derive(Debug, Clone, PartialEq)]
pub enum StudentInit {
    /// The pipeline's current model (e.g. the output of a prune stage).
    Current,
    /// Fresh weights: the teacher's `config.json` with these keys overridden.
    Config(serde_json::Map<String, serde_json::Value>),
    /// The teacher's embeddings, norms and head with a subset of its decoder layers (0-based);
    /// `None` = every other layer (0, 2, 4, …).
    TeacherLayers(Option<Vec<usize>>),
    /// An existing Hugging Face checkpoint.
    Path(PathBuf),
}

/// The token-level divergence of a distill stage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KdLoss {
    /// KL(teacher ‖ student).
    ForwardKl,
    /// KL(student ‖ teacher).
    ReverseKl,
    /// Generalised JSD with teacher weight β.
    Jsd {
        /// β.
        beta: f64,
    },
}

/// Hidden-state matching.
#[derive(Debug, Clone, PartialEq)]
pub struct HiddenMatch {
    /// `true` = 1 − cosine, `false` = MSE.
    pub cosine: bool,
    /// Weight of the term.
    pub weight: f64,
    /// (student layer, teacher layer) pairs, 0-based decoder-layer outputs; `None` = the layers the
    /// student was initialised from, else a uniform map.
    pub layer_map: Option<Vec<(usize, usize)>>,
}

/// Settings of a distill stage.
#[derive(Debug, Clone, PartialEq)]
pub struct DistillParams {
    /// Student initialisation.
    pub init: StudentInit,
    /// Divergence.
    pub loss: KdLoss,
    /// Softmax temperature τ (the KD term is scaled by τ²).
    pub temperature: f64,
    /// Weight of the KD term; `1 - alpha` goes to hard-label cross-entropy.
    pub alpha: f64,
    /// Optional hidden-state loss.
    pub hidden: Option<HiddenMatch>,
    /// Train from a precomputed cache of the teacher's top-K log-probabilities.
    pub teacher_cache_topk: Option<usize>,
    /// Optimisation.
    pub train: TrainParams,
}

impl Default for TrainParams {
    /// The values a recipe gets for keys it leaves out.
    fn default() -> Self {
        Self {
            steps: 100,
            batch_size: 8,
            grad_accum: 1,
            lr: 3e-4,
            min_lr: 3e-5,
            warmup_steps: 0,
            schedule: Schedule::Cosine,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            clip_grad_norm: 1.0,
            eval_every: 0,
            eval_sequences: 64,
            checkpoint_every: 0,
            log_every: 10,
            adapter: None,
            activation_checkpointing: false,
            loss_chunk: DEFAULT_LOSS_CHUNK,
            precision: Precision::F32,
        }
    }
}

/// What a stage does.
#[derive(Debug, Clone)]
pub enum StageKind {
    /// Full fine-tuning (every parameter trains).
    Finetune(TrainParams),
    /// Knowledge distillation from `[teacher]` into a student.
    Distill(DistillParams),
    /// Perplexity of the current model on the eval data.
    Eval(EvalParams),
    /// Weight quantization (RTN or GPTQ) of the decoder layers' linear modules.
    Quantize(QuantizeParams),
    /// Pruning: weights zeroed in place, or heads, channels and layers removed.
    Prune(PruneParams),
}

impl StageKind {
    /// The kind, without its settings.
    pub fn kind(&self) -> Kind {
        match self {
            Self::Finetune(_) => Kind::Finetune,
            Self::Distill(_) => Kind::Distill,
            Self::Eval(_) => Kind::Eval,
            Self::Quantize(_) => Kind::Quantize,
            Self::Prune(_) => Kind::Prune,
        }
    }

    /// The recipe name of the kind.
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }
}

/// The kind of a stage, without its settings: how commands (`slmc prune`), run directories
/// (`stages/<i>-<kind>/`), progress events and the report name a stage kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `finetune`.
    Finetune,
    /// `distill`.
    Distill,
    /// `eval`.
    Eval,
    /// `quantize`.
    Quantize,
    /// `prune`.
    Prune,
}

impl crate::reader::Named for Kind {
    const NAMES: &'static [(Self, &'static str)] = &[
        (Self::Finetune, "finetune"),
        (Self::Distill, "distill"),
        (Self::Eval, "eval"),
        (Self::Quantize, "quantize"),
        (Self::Prune, "prune"),
    ];
}

impl Kind {
    /// The recipe name (`distill`).
    pub fn name(self) -> &'static str {
        crate::reader::Named::spelling(self)
    }

    /// The kind called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        crate::reader::Named::from_spelling(name)
    }

    /// Every recipe name, in order.
    pub fn names() -> Vec<&'static str> {
        <Self as crate::reader::Named>::spellings()
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Settings of an eval stage.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalParams {
    /// Window length (default: `data.seq-len`).
    pub ctx: Option<usize>,
    /// Window step (default: half the window).
    pub stride: Option<usize>,
    /// Evaluate at most this many tokens (0 = all).
    pub max_tokens: usize,
}

/// The quantization algorithm of a quantize stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantMethod {
    /// Round to nearest (no calibration data).
    Rtn,
    /// GPTQ: error feedback through the inverse Hessian of calibration inputs.
    Gptq,
}

impl crate::reader::Named for QuantMethod {
    const NAMES: &'static [(Self, &'static str)] = &[(Self::Gptq, "gptq"), (Self::Rtn, "rtn")];
}

impl crate::reader::Named for slmc_config::prune_scope::MagnitudeScope {
    const NAMES: &'static [(Self, &'static str)] = &Self::ALL;
}

/// A `targets`/`ignore` entry: `re:<regex>` or a glob over module names; a plain name also
/// matches as a suffix (`mlp.down_proj` selects it in every layer).
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    /// The text as written.
    pub text: String,
    /// Where it was written.
    pub origin: Origin,
}

/// Calibration windows of a quantize or prune stage, drawn from the training data.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationParams {
    /// Windows drawn (`calibration-samples`).
    pub samples: usize,
    /// Tokens per window (`calibration-len`; default: `data.seq-len`).
    pub len: Option<usize>,
    /// Windows per forward pass (`batch-size`).
    pub batch_size: usize,
}

/// The decoder linear modules a stage acts on.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Selection {
    /// Modules selected (default: every linear module of the decoder layers).
    pub targets: Vec<Selector>,
    /// Modules left alone.
    pub ignore: Vec<Selector>,
}

/// Settings of a quantize stage.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizeParams {
    /// RTN or GPTQ.
    pub method: QuantMethod,
    /// Bits per weight: 2, 3, 4 or 8.
    pub bits: u8,
    /// Input columns per group (`None` = per output channel, written `-1`).
    pub group_size: Option<usize>,
    /// Symmetric grid (zero point 2^(bits-1)).
    pub sym: bool,
    /// GPTQ act-order (columns by decreasing Hessian diagonal), with static groups.
    pub act_order: bool,
    /// GPTQ dampening, fraction of the mean Hessian diagonal.
    pub damp: f64,
    /// GPTQ lazy-batch block size (columns).
    pub block_size: usize,
    /// Quantize q/k/v → o → gate/up → down in turn, re-running the block in between.
    pub true_sequential: bool,
    /// Calibration windows (GPTQ).
    pub calibration: CalibrationParams,
    /// Modules to quantize and to leave in full precision.
    pub select: Selection,
}

impl QuantizeParams {
    /// `4-bit g128 sym act-order` style description.
    pub fn grid_name(&self) -> String {
        format!(
            "{}-bit {} {}{}",
            self.bits,
            self.group_size.map_or("per-channel".to_string(), |g| format!("g{g}")),
            if self.sym { "sym" } else { "asym" },
            if self.act_order { " act-order" } else { "" }
        )
    }
}

/// One `[[stage]]`.
#[derive(Debug, Clone)]
pub struct Stage {
    /// Position in the recipe (0-based).
    pub index: usize,
    /// What it does.
    pub kind: StageKind,
    /// Where the stage table was written.
    pub origin: Origin,
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// A Hugging Face safetensors directory.
    Safetensors,
    /// A GGUF file for llama.cpp.
    Gguf,
    /// A packed GPTQ safetensors directory (transformers via GPTQModel/optimum, vLLM).
    Gptq,
    /// The LoRA adapter as a PEFT directory (`adapter_config.json` + `adapter_model.safetensors`).
    Peft,
    /// The LoRA adapter as a llama.cpp GGUF adapter (`--lora` / llama-cpp-python's `lora_path`).
    GgufLora,
}

impl crate::reader::Named for ExportFormat {
    const NAMES: &'static [(Self, &'static str)] = &[
        (Self::Safetensors, "safetensors"),
        (Self::Gguf, "gguf"),
        (Self::Gptq, "gptq"),
        (Self::Peft, "peft"),
        (Self::GgufLora, "gguf-lora"),
    ];
}

impl ExportFormat {
    /// The format's name (`gguf-lora`).
    pub fn name(self) -> &'static str {
        crate::reader::Named::spelling(self)
    }

    /// The format called `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Self> {
        crate::reader::Named::from_spelling(name)
    }

    /// Whether the format writes the model's adapters rather than the model.
    pub fn is_adapter(self) -> bool {
        matches!(self, Self::Peft | Self::GgufLora)
    }
}

/// The `[export]` table.
#[derive(Debug, Clone)]
pub struct ExportSpec {
    /// Formats to write (into `<run-dir>/artifacts/`).
    pub formats: Vec<ExportFormat>,
    /// Storage dtype of safetensors exports (default: the model's).
    pub dtype: Option<FloatDtype>,
    /// GGUF export type (`gguf-type`); default: the type that holds a quantize stage's codes
    /// as-is, else f16.
    pub gguf_type: Option<slmc_gguf::FileType>,
    /// Let the GGUF exporter re-quantize when `gguf-type` cannot hold the quantize stage's codes
    /// as-is (default: such a recipe is rejected).
    pub requantize: bool,
}

/// The `[gates]` table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gates {
    /// Final eval perplexity must not exceed this.
    pub max_ppl: Option<f64>,
    /// Final perplexity may exceed the input model's by at most this fraction.
    pub max_ppl_increase: Option<f64>,
}
