//! `adapter_config.json` as PEFT 0.21.2 writes it (`LoraConfig` + `save_pretrained`:
//! `json.dumps(asdict(config), indent=2, sort_keys=True)`, `docs/algorithms.md` §8.5), and
//! the reverse with every setting slmc cannot reproduce refused by name.

use super::config::{LoraConfig, LoraInit, TargetModules};
use crate::FormatError;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// The `peft_version` written: the PEFT release whose format slmc follows.
pub const PEFT_VERSION: &str = "0.21.2";

/// Keys PEFT 0.21.2 writes that slmc reads without needing their value: initialisation-time
/// settings (which cannot matter once the weights exist), bookkeeping, and `task_type`-like keys
/// handled separately.
const IGNORED: &[&str] = &[
    "auto_mapping",
    "corda_config",
    "ensure_weight_tying",
    "eva_config",
    "inference_mode",
    "loftq_config",
    "lora_ga_config",
    "megatron_core",
    "peft_version",
    "qalora_group_size",
];

/// Keys whose non-default value changes what the adapter computes or which modules it covers in
/// a way slmc does not model; each is refused by name.
const REFUSED: &[(&str, &str)] = &[
    ("alora_invocation_tokens", "activated LoRA (aLoRA)"),
    ("alpha_pattern", "per-module alpha"),
    ("arrow_config", "Arrow routing"),
    ("exclude_modules", "excluded modules"),
    ("fan_in_fan_out", "transposed (Conv1D) base weights"),
    ("kasa_config", "KaSA"),
    ("layer_replication", "layer replication"),
    ("layers_pattern", "a layer selection"),
    ("layers_to_transform", "a layer selection"),
    ("lora_bias", "a trained bias on lora_B"),
    ("megatron_config", "Megatron parallel layers"),
    ("monteclora_config", "MonteCLoRA"),
    ("rank_pattern", "per-module rank"),
    ("target_parameters", "LoRA on bare parameters"),
    ("trainable_token_indices", "trainable token embeddings"),
    ("use_bdlora", "BD-LoRA"),
    ("use_qalora", "QA-LoRA"),
    ("velora_config", "VeLoRA"),
];

/// `null`, `false`, `{}` and `[]`: what PEFT writes for a feature that is off.
fn is_off(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// `alpha` as PEFT writes it: an integer when it is one (`"lora_alpha": 8`).
fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9.0e15 { json!(x as i64) } else { json!(x) }
}

/// The complete `adapter_config.json` object PEFT 0.21.2 writes for `c` (every key, defaults for
/// the features slmc does not use).
pub fn config_to_json(c: &LoraConfig) -> Value {
    let mut m: BTreeMap<&str, Value> = BTreeMap::new();
    for (key, _) in REFUSED {
        m.insert(key, Value::Null);
    }
    for key in ["alpha_pattern", "rank_pattern", "loftq_config"] {
        m.insert(key, json!({}));
    }
    for key in ["fan_in_fan_out", "lora_bias", "use_qalora", "ensure_weight_tying"] {
        m.insert(key, false.into());
    }
    for key in ["auto_mapping", "corda_config", "eva_config", "lora_ga_config"] {
        m.insert(key, Value::Null);
    }
    m.insert("megatron_core", "megatron.core".into());
    m.insert("qalora_group_size", 16.into());
    m.insert("inference_mode", true.into());
    m.insert("peft_version", PEFT_VERSION.into());
    m.insert("peft_type", "LORA".into());
    m.insert("bias", "none".into());
    m.insert("base_model_name_or_path", json!(c.base_model_name_or_path));
    m.insert("revision", json!(c.revision));
    m.insert("task_type", json!(c.task_type));
    m.insert("r", c.r.into());
    m.insert("lora_alpha", number(c.alpha));
    m.insert("lora_dropout", json!(c.dropout));
    m.insert("use_rslora", c.rslora.into());
    m.insert("use_dora", c.dora.into());
    m.insert("init_lora_weights", c.init.to_json());
    m.insert(
        "modules_to_save",
        if c.modules_to_save.is_empty() { Value::Null } else { json!(c.modules_to_save) },
    );
    m.insert(
        "target_modules",
        match &c.target_modules {
            TargetModules::Names(n) => json!(n),
            TargetModules::Regex(r) => json!(r),
        },
    );
    Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// The text PEFT writes: sorted keys, two-space indent, no trailing newline.
pub fn config_to_string(c: &LoraConfig) -> String {
    serde_json::to_string_pretty(&config_to_json(c)).expect("JSON values always serialise")
}

struct Reader<'a> {
    obj: &'a Map<String, Value>,
    file: &'a str,
}

impl Reader<'_> {
    fn err(&self, reason: String) -> FormatError {
        FormatError::Config { file: self.file.to_string(), reason }
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    fn bool(&self, key: &str) -> Result<bool, FormatError> {
        match self.get(key) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(self.err(format!("`{key}` must be true or false, got {v}"))),
        }
    }

    fn f64(&self, key: &str, default: f64) -> Result<f64, FormatError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| self.err(format!("`{key}` must be a number, got {v}"))),
        }
    }

    fn string(&self, key: &str) -> Result<Option<String>, FormatError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(self.err(format!("`{key}` must be a string, got {v}"))),
        }
    }

    fn strings(&self, key: &str) -> Result<Option<Vec<String>>, FormatError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => a
                .iter()
                .map(|s| s.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| self.err(format!("`{key}` must be a list of strings"))),
            Some(v) => Err(self.err(format!("`{key}` must be a list of strings, got {v}"))),
        }
    }

    fn init(&self) -> Result<LoraInit, FormatError> {
        Ok(match self.get("init_lora_weights") {
            None | Some(Value::Bool(true)) => LoraInit::Default,
            Some(Value::Bool(false)) => LoraInit::Random,
            Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
                "gaussian" => LoraInit::Gaussian,
                "eva" => LoraInit::Eva,
                "orthogonal" => LoraInit::Orthogonal,
                _ => {
                    return Err(self.err(format!(
                        "`init_lora_weights` = \"{s}\" is not supported: that initialisation (PiSSA, OLoRA, CorDA, \
                         LoftQ, LoRA-GA, MiCA) changes the base weights, so the adapter only fits a modified base \
                         model (PEFT's save_pretrained(path_initial_model_for_weight_conversion=…) converts it into \
                         a plain LoRA)"
                    )));
                }
            },
            Some(v) => return Err(self.err(format!("`init_lora_weights` has an unexpected value {v}"))),
        })
    }
}

/// Reads a PEFT `adapter_config.json` object. `file` names the source in errors. A null
/// `target_modules` (hand-written files only: PEFT writes the resolved list) reads as an empty
/// list, which `read_peft` fills from the adapted modules. Every PEFT feature slmc cannot reproduce (see
/// `REFUSED`, non-`"none"` `bias`, initialisations that modify the base) is an error naming the
/// key; unknown keys are accepted only while their value means "off".
pub fn config_from_json(value: &Value, file: &str) -> Result<LoraConfig, FormatError> {
    let obj = value.as_object().ok_or_else(|| FormatError::Config {
        file: file.to_string(),
        reason: "adapter_config.json must hold a JSON object".into(),
    })?;
    let rd = Reader { obj, file };
    match rd.string("peft_type")?.as_deref() {
        Some("LORA") => {}
        Some(other) => {
            return Err(
                rd.err(format!("`peft_type` is \"{other}\"; slmc reads LoRA adapters (\"LORA\") only"))
            );
        }
        None => return Err(rd.err("`peft_type` is missing (a PEFT LoRA adapter has \"LORA\")".into())),
    }
    for (key, value) in obj {
        if let Some((_, what)) = REFUSED.iter().find(|(k, _)| k == key) {
            if !is_off(value) {
                return Err(rd.err(format!("`{key}` = {value} ({what}) is not supported by slmc")));
            }
            continue;
        }
        let known = IGNORED.contains(&key.as_str())
            || matches!(
                key.as_str(),
                "peft_type"
                    | "task_type"
                    | "base_model_name_or_path"
                    | "revision"
                    | "r"
                    | "lora_alpha"
                    | "lora_dropout"
                    | "use_rslora"
                    | "use_dora"
                    | "init_lora_weights"
                    | "bias"
                    | "modules_to_save"
                    | "target_modules"
            );
        if !known && !is_off(value) {
            return Err(rd.err(format!(
                "unknown key `{key}` = {value}: not a PEFT {PEFT_VERSION} LoraConfig setting slmc understands"
            )));
        }
    }
    match rd.string("bias")?.as_deref() {
        None | Some("none") => {}
        Some(b) => {
            return Err(rd.err(format!(
                "`bias` = \"{b}\" (trained biases of the base model) is not supported; only \"none\" is"
            )));
        }
    }
    let r = match rd.get("r").map(|v| (v, v.as_u64())) {
        None => 8, // PEFT's default
        Some((_, Some(r))) if r > 0 => r as usize,
        Some((v, _)) => return Err(rd.err(format!("`r` must be a positive integer, got {v}"))),
    };
    let target_modules = match rd.get("target_modules") {
        None => TargetModules::Names(Vec::new()),
        Some(Value::String(s)) => TargetModules::Regex(s.clone()),
        Some(_) => TargetModules::Names(rd.strings("target_modules")?.unwrap_or_default()),
    };
    Ok(LoraConfig {
        r,
        alpha: rd.f64("lora_alpha", 8.0)?,
        rslora: rd.bool("use_rslora")?,
        dora: rd.bool("use_dora")?,
        dropout: rd.f64("lora_dropout", 0.0)?,
        target_modules,
        modules_to_save: rd.strings("modules_to_save")?.unwrap_or_default(),
        init: rd.init()?,
        base_model_name_or_path: rd.string("base_model_name_or_path")?,
        revision: rd.string("revision")?,
        task_type: rd.string("task_type")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(v: Value) -> Result<LoraConfig, FormatError> {
        config_from_json(&v, "adapter_config.json")
    }

    #[test]
    fn round_trips_through_json() {
        let mut c = LoraConfig::new(4, 8.0, vec!["q_proj".into(), "v_proj".into()]);
        c.dropout = 0.05;
        c.dora = true;
        c.modules_to_save = vec!["lm_head".into()];
        c.base_model_name_or_path = Some("org/model".into());
        let json = config_to_json(&c);
        assert_eq!(json["lora_alpha"], json!(8));
        assert_eq!(json["modules_to_save"], json!(["lm_head"]));
        assert_eq!(read(json).unwrap(), c);
        c.alpha = 12.5;
        assert_eq!(config_to_json(&c)["lora_alpha"], json!(12.5));
    }

    #[test]
    fn refuses_features_by_name() {
        let base = config_to_json(&LoraConfig::new(4, 8.0, vec!["q_proj".into()]));
        for (key, value) in [
            ("lora_bias", json!(true)),
            ("layers_to_transform", json!([0, 2])),
            ("rank_pattern", json!({"q_proj": 8})),
            ("fan_in_fan_out", json!(true)),
            ("init_lora_weights", json!("pissa")),
            ("bias", json!("all")),
            ("peft_type", json!("IA3")),
            ("brand_new_feature", json!({"on": 1})),
        ] {
            let mut v = base.clone();
            v[key] = value;
            let err = read(v).unwrap_err().to_string();
            assert!(err.contains(key) || err.contains("pissa"), "{key}: {err}");
        }
        let mut v = base.clone();
        v["brand_new_feature"] = Value::Null;
        v["eva_config"] = json!({"rho": 2.0});
        assert!(read(v).is_ok(), "off-valued unknown keys and init-only settings are accepted");
    }

    #[test]
    fn missing_keys_take_peft_defaults() {
        let c = read(json!({"peft_type": "LORA", "target_modules": "model\\..*q_proj"})).unwrap();
        assert_eq!((c.r, c.alpha, c.dropout, c.rslora, c.dora), (8, 8.0, 0.0, false, false));
        assert_eq!(c.target_modules, TargetModules::Regex("model\\..*q_proj".into()));
    }
}
