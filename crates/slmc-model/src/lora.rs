//! Low-rank adapters on a [`CausalLm`]: initialise them as PEFT does, attach an adapter set (from
//! PEFT, from a checkpoint, or fresh), read it back, freeze everything else, merge, and hold the
//! frozen base in NF4 for QLoRA.
//!
//! The adapter set as data is [`slmc_formats::adapter::LoraAdapter`] (Hugging Face layout:
//! `lora_A: [r, in]`, `lora_B: [out, r]`); on the model each adapted [`Proj`] carries a
//! [`LoraBranch`] in burn's layout (`A: [in, r]`, `B: [r, out]`).

use crate::ModelError;
use crate::model::{CausalLm, normal_values};
use crate::proj::{LoraBranch, PackedWeight, Proj};
use crate::weights::{self, transpose};
use burn::module::{Module, Param, ParamGroup};
use burn::prelude::*;
use rand::SeedableRng;
use slmc_formats::adapter::{
    LoraAdapter, LoraConfig, LoraInit, LoraWeights, Matrix, SavedTensor, check_fits,
};
use slmc_formats::nf4::{Nf4Options, Nf4Tensor};
use std::sync::Arc;

/// The projection a Hugging Face module name denotes (`model.layers.3.mlp.down_proj`, `lm_head`).
pub fn proj<'a>(model: &'a CausalLm, module: &str) -> Option<&'a Proj> {
    if module == "lm_head" { model.lm_head.as_ref() } else { model.decoder_linear(module) }
}

fn proj_mut<'a>(model: &'a mut CausalLm, module: &str) -> Option<&'a mut Proj> {
    if module == "lm_head" { model.lm_head.as_mut() } else { model.decoder_linear_mut(module) }
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.cast(burn::tensor::DType::F32).into_data().convert::<f32>().try_to_vec().expect("f32 data")
}

/// A fresh adapter set on `modules` (Hugging Face module names) initialised as PEFT does
/// (`docs/algorithms.md` §8.1): A kaiming-uniform, U(−1/√in, 1/√in) (`init = Default`) or N(0, 1/r)
/// (`Gaussian`), B = 0, DoRA magnitudes = the row norms of the base weight; so the adapted model
/// starts exactly at the base. Drawn from a host RNG seeded by `seed`.
pub fn init_adapter(
    model: &CausalLm,
    config: &LoraConfig,
    modules: &[String],
    seed: u64,
) -> Result<LoraAdapter, ModelError> {
    if config.r == 0 {
        return Err(ModelError::Input("LoRA rank r must be at least 1".into()));
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut adapter = LoraAdapter::new(config.clone());
    for module in modules {
        let p = proj(model, module).ok_or_else(|| {
            ModelError::Input(format!("LoRA target `{module}` is not a linear module of the model"))
        })?;
        let [inp, out] = p.dims();
        let r = config.r;
        let a = match config.init {
            LoraInit::Default => {
                use rand::RngExt;
                let bound = 1.0 / (inp as f64).sqrt();
                (0..r * inp).map(|_| ((rng.random::<f64>() * 2.0 - 1.0) * bound) as f32).collect()
            }
            LoraInit::Gaussian => normal_values(r * inp, 1.0 / r as f64, &mut rng),
            other => {
                return Err(ModelError::Input(format!(
                    "LoRA init {other:?} is not supported for training (use the default or gaussian)"
                )));
            }
        };
        let magnitude = config.dora.then(|| row_norms(&p.base_weight()));
        let weights = LoraWeights::new(module, Matrix::new(r, inp, a)?, Matrix::zeros(out, r), magnitude)?;
        adapter.modules.insert(module.clone(), weights);
    }
    adapter.saved = saved_tensors(model, config);
    for m in &config.modules_to_save {
        let one = LoraConfig { modules_to_save: vec![m.clone()], ..config.clone() };
        if saved_tensors(model, &one).is_empty() {
            let hint = if m == "lm_head" && model.lm_head.is_none() {
                " (the model ties lm_head to the embeddings: save `embed_tokens`)"
            } else {
                ""
            };
            return Err(ModelError::Input(format!(
                "modules-to-save `{m}` names no tensor of the model{hint}"
            )));
        }
    }
    Ok(adapter)
}

/// The current values of the tensors of `config.modules_to_save`.
fn saved_tensors(model: &CausalLm, config: &LoraConfig) -> std::collections::BTreeMap<String, SavedTensor> {
    if config.modules_to_save.is_empty() {
        return Default::default();
    }
    weights::export(model)
        .into_iter()
        .filter(|t| config.is_saved_module(t.name.rsplit_once('.').map_or(t.name.as_str(), |(m, _)| m)))
        .map(|t| (t.name, SavedTensor { shape: t.shape, data: t.values }))
        .collect()
}

/// The decoder linear modules (Hugging Face names) that `config.target_modules` selects by
/// PEFT's name rule; empty for a regex (which the adapter format keeps but does not evaluate).
pub fn matching_modules(model: &CausalLm, config: &LoraConfig) -> Vec<String> {
    model
        .config
        .linear_modules()
        .into_iter()
        .filter(|m| config.target_modules.matches(m) == Some(true))
        .collect()
}

/// ‖row‖ of a Hugging Face `[out, in]` weight given in burn's `[in, out]` layout.
fn row_norms(w: &Tensor<2>) -> Vec<f32> {
    values(w.clone().square().sum_dim(0).sqrt())
}

/// Attaches `adapter` to `model` (replacing any adapters it had) after checking that it fits:
/// every adapted module exists with A/B's shape, every saved tensor exists with its shape. The
/// saved tensors (`modules_to_save`) replace the model's. Parameter ids are renumbered
/// ([`CausalLm::with_stable_param_ids`]); call [`trainable_adapters`] to freeze the base.
pub fn attach(mut model: CausalLm, adapter: &LoraAdapter) -> Result<CausalLm, ModelError> {
    adapter.validate()?;
    let shapes = |name: &str| -> Option<[usize; 2]> {
        let module = name.strip_suffix(".weight")?;
        if module == "model.embed_tokens" {
            let [v, h] = model.embed_tokens.weight.val().dims();
            return Some([v, h]);
        }
        proj(&model, module).map(|p| {
            let [inp, out] = p.dims();
            [out, inp]
        })
    };
    check_fits(adapter, &shapes)?;
    let device = model.device();
    let scale = adapter.scale();
    for name in model.config.linear_modules().into_iter().chain(["lm_head".to_string()]) {
        if let Some(p) = proj_mut(&mut model, &name) {
            p.lora = None;
        }
    }
    for (module, w) in &adapter.modules {
        let p = proj_mut(&mut model, module).expect("checked by check_fits");
        let a = Tensor::<2>::from_data(
            TensorData::new(transpose(&w.a.data, w.a.rows, w.a.cols), [w.a.cols, w.a.rows]),
            &device,
        );
        let b = Tensor::<2>::from_data(
            TensorData::new(transpose(&w.b.data, w.b.rows, w.b.cols), [w.b.cols, w.b.rows]),
            &device,
        );
        let magnitude = w.magnitude.as_ref().map(|m| {
            Param::from_tensor(Tensor::<1>::from_data(TensorData::new(m.clone(), [m.len()]), &device))
        });
        p.lora = Some(LoraBranch {
            a: Param::from_tensor(a),
            b: Param::from_tensor(b),
            magnitude,
            scale,
            dropout: adapter.config.dropout,
        });
    }
    for (name, t) in &adapter.saved {
        set_saved(&mut model, name, t, &device)?;
    }
    model.lora_config = Some(adapter.config.clone());
    Ok(model.with_stable_param_ids())
}

/// [`attach`], then [`trainable_adapters`] with the adapter's `modules_to_save`: the model ready
/// to train its adapters (also how a checkpoint's adapters are restored).
pub fn attach_trainable(model: CausalLm, adapter: &LoraAdapter) -> Result<CausalLm, ModelError> {
    let saved = adapter.config.modules_to_save.clone();
    Ok(trainable_adapters(attach(model, adapter)?, &saved))
}

/// Replaces the model tensor `name` (Hugging Face name and layout) by a saved one.
fn set_saved(model: &mut CausalLm, name: &str, t: &SavedTensor, device: &Device) -> Result<(), ModelError> {
    let bad = |reason: &str| ModelError::Input(format!("adapter tensor `{name}`: {reason}"));
    let matrix = |t: &SavedTensor| -> Result<(usize, usize), ModelError> {
        match t.shape[..] {
            [r, c] => Ok((r, c)),
            _ => Err(bad("expected a 2-D tensor")),
        }
    };
    if name == "model.embed_tokens.weight" {
        let (r, c) = matrix(t)?;
        let w = Tensor::<2>::from_data(TensorData::new(t.data.clone(), [r, c]), device);
        model.embed_tokens.weight = model.embed_tokens.weight.clone().map(|_| w);
        return Ok(());
    }
    let (module, param) = name.rsplit_once('.').ok_or_else(|| bad("not a parameter name"))?;
    let p = proj_mut(model, module)
        .ok_or_else(|| bad("modules_to_save supports linear modules and the embeddings"))?;
    match param {
        "weight" if p.packed.is_none() => {
            let (r, c) = matrix(t)?;
            let w = Tensor::<2>::from_data(TensorData::new(transpose(&t.data, r, c), [c, r]), device);
            p.weight = p.weight.clone().map(|_| w);
        }
        "bias" if p.bias.is_some() && t.shape.len() == 1 => {
            let b = Tensor::<1>::from_data(TensorData::new(t.data.clone(), [t.data.len()]), device);
            p.bias = p.bias.take().map(|old| old.map(|_| b));
        }
        _ => return Err(bad("the model has no such dense parameter")),
    }
    Ok(())
}

/// The adapter set of `model` as data (Hugging Face layout): every attached branch, and the
/// current values of the tensors of `modules_to_save`, under the settings it was attached with.
/// `None` when no adapter is attached.
pub fn extract(model: &CausalLm) -> Result<Option<LoraAdapter>, ModelError> {
    let Some(config) = &model.lora_config else { return Ok(None) };
    let mut adapter = LoraAdapter::new(config.clone());
    for module in adapter_modules(model) {
        let lora = proj(model, &module).and_then(|p| p.lora.as_ref()).expect("listed by adapter_modules");
        let a = lora.a.val();
        let [inp, r] = a.dims();
        let b = lora.b.val();
        let [_, out] = b.dims();
        let a = Matrix::new(r, inp, transpose(&values(a), inp, r))?;
        let b = Matrix::new(out, r, transpose(&values(b), r, out))?;
        let magnitude = lora.magnitude.as_ref().map(|m| values(m.val()));
        adapter.modules.insert(module.clone(), LoraWeights::new(&module, a, b, magnitude)?);
    }
    adapter.saved = saved_tensors(model, config);
    Ok(Some(adapter))
}

/// Hugging Face names of the modules that carry an adapter, in module order.
pub fn adapter_modules(model: &CausalLm) -> Vec<String> {
    let mut out: Vec<String> = model
        .config
        .linear_modules()
        .into_iter()
        .filter(|m| model.decoder_linear(m).is_some_and(|p| p.lora.is_some()))
        .collect();
    if model.lm_head.as_ref().is_some_and(|p| p.lora.is_some()) {
        out.push("lm_head".into());
    }
    out
}

/// Whether adapters are attached.
pub fn has_adapters(model: &CausalLm) -> bool {
    model.lora_config.is_some()
}

/// Freezes every parameter except the adapters' factors (and DoRA magnitudes) and the tensors of
/// `modules_to_save` (Hugging Face module names such as `lm_head`, `model.embed_tokens` or
/// `embed_tokens`). Applies on `.train()`.
pub fn trainable_adapters(model: CausalLm, modules_to_save: &[String]) -> CausalLm {
    let mut pattern = String::from(r"\.lora\.");
    for m in modules_to_save {
        let m = m.strip_prefix("model.").unwrap_or(m);
        pattern.push_str(&format!(r"|(^|\.){}\.(weight|bias)$", regex_escape(m)));
    }
    let group = ParamGroup::from_regex(&pattern).expect("escaped module names make a valid regex");
    model.set_require_grad(false).set_require_grad_group(group, true)
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c.to_string() } else { format!("\\{c}") })
        .collect()
}

/// Folds every adapter (and NF4 base) into dense weights: the plain model that computes what the
/// adapted one does.
pub fn merge(mut model: CausalLm) -> CausalLm {
    for layer in &mut model.layers {
        for name in model.config.arch.layer_linears().iter().flat_map(|s| s.iter()) {
            if let Some(p) = layer.linear_mut(name) {
                *p = take(p).merge();
            }
        }
    }
    if let Some(head) = model.lm_head.take() {
        model.lm_head = Some(head.merge());
    }
    model.lora_config = None;
    model
}

fn take(p: &mut Proj) -> Proj {
    let device = p.weight.val().device();
    std::mem::replace(p, Proj::new(Tensor::empty([0, 0], &device), None))
}

/// QLoRA: stores the base weight of every decoder linear module as NF4 (`options`; QLoRA's are
/// the default) and frees its dense copy; the projections dequantize it each time they run.
/// The embeddings, norms, biases and the LM head stay dense, as bitsandbytes leaves them.
pub fn pack_nf4(mut model: CausalLm, options: &Nf4Options) -> Result<CausalLm, ModelError> {
    let device = model.device();
    for name in model.config.linear_modules() {
        let p = model.decoder_linear_mut(&name).expect("listed by linear_modules");
        if p.packed.is_some() {
            continue;
        }
        let w = p.weight.val();
        let [inp, out] = w.dims();
        let hf = transpose(&values(w), inp, out);
        let nf4 = Nf4Tensor::quantize(&hf, [out, inp], options)
            .map_err(|e| ModelError::Input(format!("{name}.weight: {e}")))?;
        p.packed = Some(PackedWeight { nf4: Arc::new(nf4) });
        p.weight = p.weight.clone().map(|_| Tensor::empty([0, 0], &device));
    }
    Ok(model)
}

/// Replaces every NF4 base by its dequantized dense weight (adapters stay attached).
pub fn unpack_nf4(mut model: CausalLm) -> CausalLm {
    for name in model.config.linear_modules() {
        let p = model.decoder_linear_mut(&name).expect("listed by linear_modules");
        if p.packed.is_some() {
            let w = p.base_weight();
            p.packed = None;
            p.weight = p.weight.clone().map(|_| w);
        }
    }
    model
}

/// Number of parameters that train under [`trainable_adapters`] with `modules_to_save`:
/// adapter factors, DoRA magnitudes and the saved modules' tensors.
pub fn trainable_parameters(model: &CausalLm, modules_to_save: &[String]) -> usize {
    let config =
        LoraConfig { modules_to_save: modules_to_save.to_vec(), ..LoraConfig::new(1, 1.0, Vec::new()) };
    let mut n = 0;
    for module in adapter_modules(model) {
        let l = proj(model, &module).and_then(|p| p.lora.as_ref()).expect("listed");
        n += l.a.val().dims().iter().product::<usize>() + l.b.val().dims().iter().product::<usize>();
        n += l.magnitude.as_ref().map_or(0, |m| m.val().dims()[0]);
    }
    n + saved_tensors(model, &config).values().map(|t| t.data.len()).sum::<usize>()
}
