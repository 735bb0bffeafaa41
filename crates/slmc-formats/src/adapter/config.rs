//! The settings of a LoRA adapter that matter once it is trained: rank, alpha and the scaling
//! rule, DoRA, which modules carry adapters and which are saved whole (PEFT's `LoraConfig`,
//! `docs/algorithms.md` §8.1).

/// Which modules carry an adapter (PEFT's `target_modules`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetModules {
    /// Module names: a module is targeted if its name equals an entry or ends with `.` + entry
    /// (`"q_proj"` targets `model.layers.3.self_attn.q_proj`).
    Names(Vec<String>),
    /// A Python regular expression matched against the whole module name (PEFT's string form).
    /// Kept as written; slmc-formats has no regex engine, so [`TargetModules::matches`] cannot
    /// evaluate it.
    Regex(String),
}

impl TargetModules {
    /// Whether `module` (a Hugging Face module name) is targeted, by PEFT's rule
    /// (`check_target_module_exists`); `None` for a regex, which this crate cannot evaluate.
    pub fn matches(&self, module: &str) -> Option<bool> {
        match self {
            Self::Names(names) => {
                Some(names.iter().any(|n| module == n || module.ends_with(&format!(".{n}"))))
            }
            Self::Regex(_) => None,
        }
    }
}

/// How the adapter was initialised (PEFT's `init_lora_weights`). Only initialisations that leave
/// the base weights untouched are representable: PiSSA, OLoRA, CorDA, LoftQ, LoRA-GA and MiCA
/// adapters need a modified base model and are refused when read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoraInit {
    /// `true`: A ~ kaiming-uniform(a = √5), B = 0 (the adapter starts as a no-op).
    #[default]
    Default,
    /// `false`: A and B random (debugging only).
    Random,
    /// `"gaussian"`: A ~ N(0, 1/r), B = 0.
    Gaussian,
    /// `"eva"`: data-driven A, B = 0.
    Eva,
    /// `"orthogonal"`: orthogonal A and B whose product is zero.
    Orthogonal,
}

impl LoraInit {
    /// The value PEFT writes in `adapter_config.json`.
    pub fn to_json(self) -> serde_json::Value {
        match self {
            Self::Default => true.into(),
            Self::Random => false.into(),
            Self::Gaussian => "gaussian".into(),
            Self::Eva => "eva".into(),
            Self::Orthogonal => "orthogonal".into(),
        }
    }
}

/// The configuration of a LoRA / rsLoRA / DoRA adapter.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    /// Rank `r` (rows of A, columns of B).
    pub r: usize,
    /// `lora_alpha`.
    pub alpha: f64,
    /// rsLoRA: the update is scaled by `alpha / sqrt(r)` instead of `alpha / r`.
    pub rslora: bool,
    /// DoRA: every adapted module also has a per-output-row magnitude vector.
    pub dora: bool,
    /// Dropout on the adapter's input during training (`lora_dropout`).
    pub dropout: f64,
    /// Which modules carry adapters.
    pub target_modules: TargetModules,
    /// Modules trained in full and saved whole (`modules_to_save`, e.g. `["lm_head"]`).
    pub modules_to_save: Vec<String>,
    /// The initialisation.
    pub init: LoraInit,
    /// The base model (`base_model_name_or_path`: a hub id or a path).
    pub base_model_name_or_path: Option<String>,
    /// The base model's hub revision.
    pub revision: Option<String>,
    /// PEFT's `task_type` (`"CAUSAL_LM"` for decoder language models).
    pub task_type: Option<String>,
}

impl LoraConfig {
    /// A plain LoRA configuration with PEFT's defaults for everything else (no dropout, no
    /// rsLoRA or DoRA, default init, task `CAUSAL_LM`).
    pub fn new(r: usize, alpha: f64, target_modules: Vec<String>) -> Self {
        Self {
            r,
            alpha,
            rslora: false,
            dora: false,
            dropout: 0.0,
            target_modules: TargetModules::Names(target_modules),
            modules_to_save: Vec::new(),
            init: LoraInit::Default,
            base_model_name_or_path: None,
            revision: None,
            task_type: Some("CAUSAL_LM".into()),
        }
    }

    /// The factor on `B·A`: `alpha / r`, or `alpha / sqrt(r)` for rsLoRA (PEFT's `scaling`,
    /// computed in double precision as Python does).
    pub fn scale(&self) -> f64 {
        if self.rslora { self.alpha / (self.r as f64).sqrt() } else { self.alpha / self.r as f64 }
    }

    /// Whether a module is one of `modules_to_save` or lies inside one (PEFT's
    /// `(^|.*\.){m}($|\..*)` rule): `lm_head` covers `lm_head`, `score` covers `score.out`.
    pub fn is_saved_module(&self, module: &str) -> bool {
        let padded = format!(".{module}.");
        self.modules_to_save.iter().any(|m| padded.contains(&format!(".{m}.")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_follows_peft() {
        let mut c = LoraConfig::new(8, 16.0, vec!["q_proj".into()]);
        assert_eq!(c.scale(), 2.0);
        c.rslora = true;
        assert!((c.scale() - 5.656854249492381).abs() < 1e-15);
    }

    #[test]
    fn target_and_saved_matching() {
        let t = TargetModules::Names(vec!["q_proj".into(), "mlp.down_proj".into()]);
        assert_eq!(t.matches("model.layers.0.self_attn.q_proj"), Some(true));
        assert_eq!(t.matches("model.layers.0.mlp.down_proj"), Some(true));
        assert_eq!(t.matches("model.layers.0.self_attn.qq_proj"), Some(false));
        assert_eq!(TargetModules::Regex(".*q_proj".into()).matches("q_proj"), None);
        let mut c = LoraConfig::new(4, 8.0, vec![]);
        c.modules_to_save = vec!["lm_head".into()];
        assert!(c.is_saved_module("lm_head"));
        assert!(!c.is_saved_module("model.lm_head_x"));
    }
}
