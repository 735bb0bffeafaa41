//! Hugging Face model directories: `config.json`, safetensors weights (single or sharded),
//! tokenizer files and `generation_config.json`.

use crate::config::ModelConfig;
use crate::model::CausalLm;
use crate::tokenizer::{TOKENIZER_FILES, Tokenizer};
use crate::{ModelError, weights};
use burn::prelude::*;
use serde_json::json;
use slmc_config::FloatDtype;
use slmc_formats::fsutil::atomic_write;
use slmc_formats::{Checkpoint, TensorToWrite, write_checkpoint};
use std::path::{Path, PathBuf};

/// A model loaded from a Hugging Face directory.
pub struct HfModel {
    /// The directory it came from.
    pub dir: PathBuf,
    /// Its configuration.
    pub config: ModelConfig,
    /// The decoder, computing in f32.
    pub model: CausalLm,
    /// The tokenizer, when the directory has a `tokenizer.json`.
    pub tokenizer: Option<Tokenizer>,
    /// The dtype the weights were stored in.
    pub stored_dtype: FloatDtype,
    /// Bytes of tensor data on disk.
    pub weight_bytes: u64,
}

impl HfModel {
    /// Loads `dir` strictly: every tensor must match the configuration.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, ModelError> {
        let config_path = dir.join("config.json");
        if !config_path.is_file() {
            return Err(ModelError::Format(slmc_formats::FormatError::Config {
                file: dir.display().to_string(),
                reason: "not a Hugging Face model directory (no config.json)".into(),
            }));
        }
        let config = ModelConfig::from_file(&config_path)?;
        let checkpoint = Checkpoint::open_dir(dir)?;
        let (model, stored_dtype) = weights::load(&config, &checkpoint, &dir.display().to_string(), device)?;
        let tokenizer = if dir.join("tokenizer.json").is_file() {
            Some(Tokenizer::from_dir(dir, Some(&config))?)
        } else {
            None
        };
        Ok(Self {
            dir: dir.into(),
            config,
            model,
            tokenizer,
            stored_dtype,
            weight_bytes: checkpoint.data_bytes(),
        })
    }
}

/// Options of [`save`].
#[derive(Debug, Clone, Default)]
pub struct SaveOptions {
    /// Storage dtype; default: the dtype in the model's config.
    pub dtype: Option<FloatDtype>,
    /// Split weights into shards of at most this many bytes.
    pub max_shard_bytes: Option<u64>,
    /// Copy tokenizer files from this directory.
    pub tokenizer_dir: Option<PathBuf>,
    /// Store the weights in this dtype while `config.json` keeps the model's (`dtype`) one: a
    /// stage directory holds its output exactly (f32) for the stages after it.
    pub tensor_dtype: Option<FloatDtype>,
}

/// Changes to a saved directory for quantized checkpoints: tensors written in place of some
/// weights (a packed GPTQ `qweight`/`qzeros`/`scales`/`g_idx` instead of `….weight`), extra
/// `config.json` keys (`quantization_config`) and extra files (`quantize_config.json`).
#[derive(Default)]
pub struct Overlay {
    /// Hugging Face weight name → the tensors written instead of it.
    pub replace: std::collections::HashMap<String, Vec<TensorToWrite>>,
    /// Keys added to `config.json`.
    pub config: serde_json::Map<String, serde_json::Value>,
    /// `(file name, bytes)` written next to `config.json`.
    pub files: Vec<(String, Vec<u8>)>,
}

/// Saves `model` as a Hugging Face directory transformers loads with `from_pretrained`. The
/// directory is assembled next to `out` and renamed into place, so a crash never leaves a
/// half-written model behind. Returns the files written.
pub fn save(model: &CausalLm, out: &Path, options: &SaveOptions) -> Result<Vec<PathBuf>, ModelError> {
    save_with(model, out, options, Overlay::default())
}

/// [`save`] with an [`Overlay`].
pub fn save_with(
    model: &CausalLm,
    out: &Path,
    options: &SaveOptions,
    mut overlay: Overlay,
) -> Result<Vec<PathBuf>, ModelError> {
    let mut config = model.config.clone();
    if let Some(d) = options.dtype {
        config.dtype = d;
    }
    let tensor_dtype = options.tensor_dtype.unwrap_or(config.dtype);
    let written = slmc_formats::fsutil::replace_dir(out, |dir| -> Result<Vec<String>, ModelError> {
        let tensors: Vec<TensorToWrite> = weights::export(model)
            .into_iter()
            .flat_map(|t| match overlay.replace.remove(&t.name) {
                Some(replacement) => replacement,
                None => vec![TensorToWrite::from_f32(t.name, t.shape, &t.values, tensor_dtype)],
            })
            .collect();
        if let Some(name) = overlay.replace.keys().next() {
            return Err(ModelError::Input(format!("cannot replace `{name}`: not a tensor of the model")));
        }
        let mut written: Vec<String> = write_checkpoint(dir, tensors, options.max_shard_bytes)?
            .iter()
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
            .collect();
        let mut cfg_json = config.to_hf_json();
        if let Some(obj) = cfg_json.as_object_mut() {
            obj.extend(overlay.config);
        }
        let cfg_text = serde_json::to_string_pretty(&cfg_json).expect("json") + "\n";
        atomic_write(&dir.join("config.json"), cfg_text.as_bytes())?;
        written.push("config.json".into());
        for (name, bytes) in &overlay.files {
            atomic_write(&dir.join(name), bytes)?;
            written.push(name.clone());
        }

        let gen_src = options.tokenizer_dir.as_ref().map(|d| d.join("generation_config.json"));
        let gen_text = match gen_src.filter(|p| p.is_file()) {
            Some(p) => std::fs::read_to_string(&p).map_err(|e| ModelError::Io { path: p, source: e })?,
            None => {
                let mut g = serde_json::Map::new();
                if let Some(b) = config.bos_token_id {
                    g.insert("bos_token_id".into(), json!(b));
                }
                match config.eos_token_ids.as_slice() {
                    [] => {}
                    [one] => {
                        g.insert("eos_token_id".into(), json!(one));
                    }
                    many => {
                        g.insert("eos_token_id".into(), json!(many));
                    }
                }
                if let Some(p) = config.pad_token_id {
                    g.insert("pad_token_id".into(), json!(p));
                }
                serde_json::to_string_pretty(&g).expect("json") + "\n"
            }
        };
        atomic_write(&dir.join("generation_config.json"), gen_text.as_bytes())?;
        written.push("generation_config.json".into());

        if let Some(src) = &options.tokenizer_dir {
            for f in TOKENIZER_FILES {
                let from = src.join(f);
                if from.is_file() {
                    let bytes =
                        std::fs::read(&from).map_err(|e| ModelError::Io { path: from.clone(), source: e })?;
                    atomic_write(&dir.join(f), &bytes)?;
                    written.push((*f).into());
                }
            }
        }
        Ok(written)
    })?;
    Ok(written.into_iter().map(|f| out.join(f)).collect())
}
