//! Moving weights between a [`CausalLm`] and Hugging Face tensors.
//!
//! Because the module tree mirrors Hugging Face's, one rule maps a burn parameter path to its
//! Hugging Face name ([`hf_name`]); loading and exporting both walk the module with it, so there
//! is no name table to keep in sync. Linear weights are transposed on the way (Hugging Face
//! `[out, in]`, burn `[in, out]`).

use crate::ModelError;
use crate::model::{CausalLm, Init};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use slmc_config::FloatDtype;
use slmc_formats::Checkpoint;
use std::collections::BTreeSet;

/// The Hugging Face name of a burn parameter path (`layers.0.mlp.up_proj.weight` →
/// `model.layers.0.mlp.up_proj.weight`; `lm_head.weight` stays).
pub fn hf_name(burn_path: &str) -> String {
    if burn_path == "lm_head_bias" {
        "lm_head.bias".into()
    } else if burn_path.starts_with("lm_head.") {
        burn_path.to_string()
    } else {
        format!("model.{burn_path}")
    }
}

/// Whether a rank-2 parameter is stored transposed relative to Hugging Face (every Linear
/// weight; not the embedding matrix).
fn is_linear_weight(burn_path: &str, rank: usize) -> bool {
    rank == 2 && burn_path != "embed_tokens.weight"
}

/// A tensor in Hugging Face layout.
#[derive(Debug, Clone, PartialEq)]
pub struct HfTensor {
    /// Hugging Face name.
    pub name: String,
    /// Hugging Face shape (`[out, in]` for Linear weights).
    pub shape: Vec<usize>,
    /// Values, C order.
    pub values: Vec<f32>,
}

/// Transposes a row-major `[rows, cols]` matrix.
pub fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const BLOCK: usize = 32;
    let mut out = vec![0.0f32; values.len()];
    for r0 in (0..rows).step_by(BLOCK) {
        for c0 in (0..cols).step_by(BLOCK) {
            for r in r0..(r0 + BLOCK).min(rows) {
                for c in c0..(c0 + BLOCK).min(cols) {
                    out[c * rows + r] = values[r * cols + c];
                }
            }
        }
    }
    out
}

/// Where [`load`] reads tensors from.
pub trait TensorSource {
    /// Names of every tensor.
    fn tensor_names(&self) -> Vec<String>;
    /// Shape of `name`, if present.
    fn shape(&self, name: &str) -> Option<Vec<usize>>;
    /// Values of `name` (f32) and the dtype they were stored in.
    fn values(&self, name: &str) -> Result<(FloatDtype, Vec<f32>), ModelError>;
}

impl TensorSource for Checkpoint {
    fn tensor_names(&self) -> Vec<String> {
        self.names().map(str::to_string).collect()
    }
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.meta(name).map(|m| m.shape)
    }
    fn values(&self, name: &str) -> Result<(FloatDtype, Vec<f32>), ModelError> {
        let (_, dtype, v) = self.read_f32(name)?;
        Ok((dtype, v))
    }
}

impl TensorSource for [HfTensor] {
    fn tensor_names(&self) -> Vec<String> {
        self.iter().map(|t| t.name.clone()).collect()
    }
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.iter().find(|t| t.name == name).map(|t| t.shape.clone())
    }
    fn values(&self, name: &str) -> Result<(FloatDtype, Vec<f32>), ModelError> {
        self.iter()
            .find(|t| t.name == name)
            .map(|t| (FloatDtype::F32, t.values.clone()))
            .ok_or_else(|| ModelError::Input(format!("tensor `{name}` is missing")))
    }
}

/// The tensors of `model`'s decoder layers `layers` (in that order), renumbered 0, 1, 2…, with
/// the embeddings, final norm and head: a shallower model initialised from chosen layers
/// (DistilBERT-style "every other layer"). Returns the tensors and the matching config.
pub fn select_layers(
    model: &CausalLm,
    layers: &[usize],
) -> Result<(crate::ModelConfig, Vec<HfTensor>), ModelError> {
    let n = model.config.num_layers;
    if layers.is_empty() || layers.iter().any(|&l| l >= n) {
        return Err(ModelError::Input(format!("layers {layers:?} must be non-empty indices below {n}")));
    }
    let mut config = model.config.clone();
    config.select_layers(layers);
    let mut out = Vec::new();
    for t in export(model) {
        match slmc_config::hf_config::split_layer_name(&t.name) {
            None => out.push(t.clone()),
            Some((idx, tail)) => {
                for (j, _) in layers.iter().enumerate().filter(|(_, l)| **l == idx) {
                    out.push(HfTensor { name: format!("model.layers.{j}.{tail}"), ..t.clone() });
                }
            }
        }
    }
    Ok((config, out))
}

/// Loads the weights of `checkpoint` into a new model: every tensor the architecture needs must
/// be present with the right shape, and the checkpoint may hold nothing else (a tied model may
/// carry a redundant `lm_head.weight`, which is checked to equal the embeddings and ignored).
/// Returns the model and the storage dtype found (the most common one).
pub fn load<S: TensorSource + ?Sized>(
    config: &crate::ModelConfig,
    checkpoint: &S,
    dir: &str,
    device: &Device,
) -> Result<(CausalLm, FloatDtype), ModelError> {
    if config.features.multimodal {
        let language = LanguageModel::new(checkpoint);
        return load_plain(config, &language, dir, device);
    }
    load_plain(config, checkpoint, dir, device)
}

/// The language model of a multimodal checkpoint (Gemma 3): its tensors under text-only names
/// (`language_model.model.*` and `model.language_model.*` → `model.*`,
/// `language_model.lm_head.*` → `lm_head.*`), the vision tower and projector left out.
struct LanguageModel<'a, S: TensorSource + ?Sized> {
    inner: &'a S,
    /// Text-only name → name in the checkpoint.
    names: std::collections::BTreeMap<String, String>,
}

impl<'a, S: TensorSource + ?Sized> LanguageModel<'a, S> {
    fn new(inner: &'a S) -> Self {
        let names = inner
            .tensor_names()
            .into_iter()
            .filter_map(|n| {
                let text = if let Some(rest) = n.strip_prefix("language_model.model.") {
                    format!("model.{rest}")
                } else if let Some(rest) = n.strip_prefix("model.language_model.") {
                    format!("model.{rest}")
                } else if let Some(rest) = n.strip_prefix("language_model.lm_head.") {
                    format!("lm_head.{rest}")
                } else if n.starts_with("vision_tower.")
                    || n.starts_with("multi_modal_projector.")
                    || n.starts_with("model.vision_tower.")
                    || n.starts_with("model.multi_modal_projector.")
                {
                    return None;
                } else {
                    n.clone() // already text-only (slmc's own tensors of such a model)
                };
                Some((text, n))
            })
            .collect();
        Self { inner, names }
    }

    fn source_name(&self, name: &str) -> Option<&str> {
        self.names.get(name).map(String::as_str)
    }
}

impl<S: TensorSource + ?Sized> TensorSource for LanguageModel<'_, S> {
    fn tensor_names(&self) -> Vec<String> {
        self.names.keys().cloned().collect()
    }
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.inner.shape(self.source_name(name)?)
    }
    fn values(&self, name: &str) -> Result<(FloatDtype, Vec<f32>), ModelError> {
        let source =
            self.source_name(name).ok_or_else(|| ModelError::Input(format!("tensor `{name}` is missing")))?;
        self.inner.values(source)
    }
}

fn load_plain<S: TensorSource + ?Sized>(
    config: &crate::ModelConfig,
    checkpoint: &S,
    dir: &str,
    device: &Device,
) -> Result<(CausalLm, FloatDtype), ModelError> {
    preflight(config, checkpoint, dir)?;
    let model = CausalLm::new(config, Init::Empty, device);
    let mut loader = Loader {
        ckpt: checkpoint,
        path: Vec::new(),
        taken: BTreeSet::new(),
        problems: Vec::new(),
        dtypes: Vec::new(),
        device: device.clone(),
    };
    let model = model.map(&mut loader);
    let mut problems = loader.problems;
    for name in checkpoint.tensor_names() {
        let name = name.as_str();
        if loader.taken.contains(name) {
            continue;
        }
        if name == "lm_head.weight" && config.tie_word_embeddings {
            continue;
        }
        // transformers keeps non-persistent rotary buffers out of checkpoints, but old ones have them.
        if name.ends_with("rotary_emb.inv_freq") {
            continue;
        }
        problems.push(format!("unexpected tensor `{name}`"));
    }
    if !problems.is_empty() {
        let more =
            if problems.len() > 8 { format!(" (and {} more)", problems.len() - 8) } else { String::new() };
        problems.truncate(8);
        return Err(ModelError::Weights {
            dir: dir.into(),
            reason: format!(
                "checkpoint does not match the {} config: {}{more}",
                config.arch.model_type(),
                problems.join("; ")
            ),
        });
    }
    let mut counts: Vec<(FloatDtype, usize)> = Vec::new();
    for d in loader.dtypes {
        match counts.iter_mut().find(|(k, _)| *k == d) {
            Some((_, n)) => *n += 1,
            None => counts.push((d, 1)),
        }
    }
    let dtype = counts.iter().max_by_key(|(_, n)| *n).map_or(config.dtype, |(d, _)| *d);
    Ok((model, dtype))
}

/// Refuses a config that describes far more parameters than the checkpoint holds, before the
/// model's tensors are allocated (an absurd `num_hidden_layers` or `hidden_size` would otherwise
/// exhaust memory); smaller disagreements are named tensor by tensor by the loader.
fn preflight<S: TensorSource + ?Sized>(
    config: &crate::ModelConfig,
    checkpoint: &S,
    dir: &str,
) -> Result<(), ModelError> {
    let held: u128 = checkpoint
        .tensor_names()
        .iter()
        .filter_map(|n| checkpoint.shape(n))
        .map(|s| s.iter().map(|&d| d as u128).product::<u128>())
        .sum();
    let described = config.num_params() as u128;
    if described > 2 * held + (1 << 20) {
        return Err(ModelError::Weights {
            dir: dir.into(),
            reason: format!(
                "config.json describes {described} parameters ({} layers, hidden size {}, vocabulary {}) \
                 but the checkpoint holds {held} values: the config does not belong to these weights",
                config.num_layers, config.hidden_size, config.vocab_size
            ),
        });
    }
    Ok(())
}

struct Loader<'a, S: TensorSource + ?Sized> {
    ckpt: &'a S,
    path: Vec<String>,
    taken: BTreeSet<String>,
    problems: Vec<String>,
    dtypes: Vec<FloatDtype>,
    device: Device,
}

impl<S: TensorSource + ?Sized> Loader<'_, S> {
    fn read<const D: usize>(&mut self, burn_shape: [usize; D]) -> Option<Tensor<D>> {
        let burn_path = self.path.join(".");
        let name = hf_name(&burn_path);
        let transposed = is_linear_weight(&burn_path, D);
        let mut want: Vec<usize> = burn_shape.to_vec();
        if transposed {
            want.reverse();
        }
        let Some(shape) = self.ckpt.shape(&name) else {
            self.problems.push(format!("missing tensor `{name}` (expected shape {want:?})"));
            return None;
        };
        self.taken.insert(name.clone());
        if shape != want {
            self.problems.push(format!("`{name}` has shape {shape:?}, expected {want:?}"));
            return None;
        }
        let (dtype, values) = match self.ckpt.values(&name) {
            Ok(v) => v,
            Err(e) => {
                self.problems.push(e.to_string());
                return None;
            }
        };
        self.dtypes.push(dtype);
        let values = if transposed { transpose(&values, want[0], want[1]) } else { values };
        Some(Tensor::from_data(TensorData::new(values, burn_shape), &self.device))
    }
}

impl<S: TensorSource + ?Sized> ModuleMapper for Loader<'_, S> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let shape: [usize; D] = param.lazy_shape().dims();
        match self.read(shape) {
            Some(t) => {
                // Keep the id (stable, see `CausalLm::with_stable_param_ids`) and trainability.
                let mut loaded = Param::from_tensor(t);
                loaded.id = param.id;
                loaded
            }
            None => param,
        }
    }
}

/// Every parameter of `model` in Hugging Face names, shapes and layout, in module order; adapters
/// are left out (the base weights are exported; merge first to export the adapted model). The
/// model must not hold NF4 bases ([`crate::lora::unpack_nf4`]).
pub fn export(model: &CausalLm) -> Vec<HfTensor> {
    struct Exporter {
        path: Vec<String>,
        out: Vec<HfTensor>,
    }
    impl ModuleVisitor for Exporter {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let burn_path = self.path.join(".");
            // Adapter factors are not model tensors (see `crate::lora`).
            if self.path.iter().any(|p| p == "lora") {
                return;
            }
            let tensor = param.val();
            let dims = tensor.dims();
            let values: Vec<f32> = tensor
                .cast(burn::tensor::DType::F32)
                .into_data()
                .convert::<f32>()
                .try_to_vec()
                .expect("f32 data");
            let (shape, values) = if is_linear_weight(&burn_path, D) {
                (vec![dims[1], dims[0]], transpose(&values, dims[0], dims[1]))
            } else {
                (dims.to_vec(), values)
            };
            self.out.push(HfTensor { name: hf_name(&burn_path), shape, values });
        }
    }
    let mut ex = Exporter { path: Vec::new(), out: Vec::new() };
    model.visit(&mut ex);
    ex.out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_is_an_involution_on_odd_shapes() {
        let v: Vec<f32> = (0..35 * 70).map(|x| x as f32).collect();
        let t = transpose(&v, 35, 70);
        assert_eq!(t[1], v[70]); // [0][1] of the transpose = [1][0] of the input
        assert_eq!(transpose(&t, 70, 35), v);
    }

    #[test]
    fn hf_names_follow_module_paths() {
        assert_eq!(hf_name("layers.1.self_attn.qkv_proj.weight"), "model.layers.1.self_attn.qkv_proj.weight");
        assert_eq!(hf_name("lm_head.weight"), "lm_head.weight");
        assert!(!is_linear_weight("embed_tokens.weight", 2));
    }
}
