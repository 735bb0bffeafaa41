//! The validated adapter settings of a training stage (`method = "lora" | "dora" | "qlora"`).

use crate::schema::Selection;

/// Which adapter a training stage trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterKind {
    /// LoRA: `W + s·B·A`, the base frozen.
    Lora,
    /// DoRA: LoRA plus a trained magnitude per output channel.
    Dora,
    /// QLoRA: LoRA over a frozen base held in NF4 with double quantization.
    Qlora,
}

impl crate::reader::Named for AdapterKind {
    const NAMES: &'static [(Self, &'static str)] =
        &[(Self::Lora, "lora"), (Self::Dora, "dora"), (Self::Qlora, "qlora")];
}

impl AdapterKind {
    /// The recipe name (`method = "lora"`).
    pub fn name(self) -> &'static str {
        crate::reader::Named::spelling(self)
    }
}

impl crate::reader::Named for AdapterInit {
    const NAMES: &'static [(Self, &'static str)] =
        &[(Self::Default, "default"), (Self::Gaussian, "gaussian")];
}

/// Which linear modules carry adapters (`targets` / `ignore`).
#[derive(Debug, Clone, PartialEq)]
pub enum AdapterTargets {
    /// `targets` unset: PEFT's default for the architecture (`q_proj`, `v_proj`; Phi-3's fused
    /// `qkv_proj`).
    Default,
    /// `targets = "all-linear"`: every linear module of the decoder layers (not the LM head),
    /// minus `ignore`.
    AllLinear(Selection),
    /// Explicit selectors (PEFT-style names, globs, `re:`), minus `ignore`.
    Selected(Selection),
}

/// How adapters start (PEFT's `init_lora_weights`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterInit {
    /// A kaiming-uniform, B = 0 (PEFT's default).
    Default,
    /// A ~ N(0, 1/r), B = 0.
    Gaussian,
}

/// The adapter settings of a finetune or distill stage.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterParams {
    /// LoRA, DoRA or QLoRA.
    pub kind: AdapterKind,
    /// Rank `r`.
    pub r: usize,
    /// `alpha` (the update is scaled by `alpha / r`, or `alpha / √r` with `rslora`).
    pub alpha: f64,
    /// Dropout on the adapters' input while training.
    pub dropout: f64,
    /// rsLoRA scaling.
    pub rslora: bool,
    /// Initialisation.
    pub init: AdapterInit,
    /// Modules with adapters.
    pub targets: AdapterTargets,
    /// Modules trained in full and saved with the adapter (`modules-to-save`, e.g. `lm_head`).
    pub modules_to_save: Vec<String>,
}
