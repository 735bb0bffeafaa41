//! Physically shrinking a model to its keep sets (docs/algorithms.md §6.6): every tensor is sliced in
//! Hugging Face layout (`[out, in]`), the surviving layers are renumbered, and the result is
//! loaded through the same strict loader as a checkpoint, so every shape is checked against the
//! new configuration.
//!
//! | module | rows kept | columns kept |
//! |---|---|---|
//! | `embed_tokens`, `lm_head` (once when tied) | all | hidden |
//! | every norm (weights and LayerNorm biases) | hidden | |
//! | `q_norm`, `k_norm` (one head wide) | all | |
//! | `q_proj` (+ bias) | kept heads' rows | hidden |
//! | `k_proj`, `v_proj` (+ biases) | kept KV heads' rows | hidden |
//! | `qkv_proj` (+ bias) | the q, k and v parts of the above | hidden |
//! | `o_proj` / `dense` (+ bias on rows) | hidden | kept heads' columns |
//! | `gate_proj`, `up_proj`, `fc1` (+ biases) | kept channels | hidden |
//! | `gate_up_proj` (+ bias) | kept channels of each half | hidden |
//! | `down_proj`, `fc2` (+ bias on rows) | hidden | kept channels |

use super::keep::{KeepSets, LayerKeep};
use super::tensors::{Module, parse, take, unit_rows};
use crate::PruneError;
use slmc_config::prune_shape::shrunk_config;
use slmc_model::CausalLm;
use slmc_model::ModelConfig;
use slmc_model::weights::{HfTensor, export, load};

/// Row indices of one kept layer's tensors.
struct LayerRows {
    /// The layer's index in the pruned model.
    index: usize,
    q: Vec<usize>,
    kv: Vec<usize>,
    qkv: Vec<usize>,
    mlp: Vec<usize>,
    gate_up: Vec<usize>,
}

impl LayerRows {
    fn new(index: usize, keep: &LayerKeep, c: &ModelConfig) -> Self {
        let (hd, i) = (c.head_dim, c.intermediate_size);
        let q: Vec<usize> = unit_rows(&keep.heads, hd, 0).collect();
        let kv: Vec<usize> = unit_rows(&keep.kv_heads, hd, 0).collect();
        let qkv = q
            .iter()
            .copied()
            .chain(unit_rows(&keep.kv_heads, hd, c.q_dim()))
            .chain(unit_rows(&keep.kv_heads, hd, c.q_dim() + c.kv_dim()))
            .collect();
        let gate_up = keep.mlp.iter().copied().chain(keep.mlp.iter().map(|j| i + j)).collect();
        Self { index, q, kv, qkv, mlp: keep.mlp.clone(), gate_up }
    }
}

/// Slices one tensor; `None` for tensors of dropped layers.
fn slice(
    t: HfTensor,
    hidden: &[usize],
    layers: &[Option<LayerRows>],
) -> Result<Option<HfTensor>, PruneError> {
    let p = parse(&t.name)
        .ok_or_else(|| PruneError::Input(format!("`{}` is not a tensor structured pruning knows", t.name)))?;
    let (rows, name) = match p.layer {
        None => (None, t.name.clone()),
        Some(l) => match layers.get(l).and_then(Option::as_ref) {
            None => return Ok(None),
            Some(r) => {
                let rest = t.name.splitn(4, '.').nth(3).unwrap_or_default();
                (Some(r), format!("model.layers.{}.{rest}", r.index))
            }
        },
    };
    let rows_of = |f: fn(&LayerRows) -> &Vec<usize>| rows.map(|r| f(r).as_slice());
    let (out, inp): (Option<&[usize]>, Option<&[usize]>) = match p.module {
        Module::Embed | Module::LmHead => (None, Some(hidden)),
        Module::FinalNorm | Module::InputNorm | Module::PostNorm => (Some(hidden), None),
        Module::QkNorm => (None, None),
        Module::Q => (rows_of(|r| &r.q), Some(hidden)),
        Module::K | Module::V => (rows_of(|r| &r.kv), Some(hidden)),
        Module::Qkv => (rows_of(|r| &r.qkv), Some(hidden)),
        Module::O => (Some(hidden), rows_of(|r| &r.q)),
        Module::Gate | Module::Up => (rows_of(|r| &r.mlp), Some(hidden)),
        Module::GateUp => (rows_of(|r| &r.gate_up), Some(hidden)),
        Module::Down => (Some(hidden), rows_of(|r| &r.mlp)),
    };
    let (shape, values) = match t.shape[..] {
        [n] => (vec![out.map_or(n, <[usize]>::len)], take(&t.values, 1, out, None)),
        [r, c] => {
            let shape = vec![out.map_or(r, <[usize]>::len), inp.map_or(c, <[usize]>::len)];
            (shape, take(&t.values, c, out, inp))
        }
        _ => return Err(PruneError::Input(format!("`{}` has unexpected shape {:?}", t.name, t.shape))),
    };
    Ok(Some(HfTensor { name, shape, values }))
}

/// A new model holding only the units `keep` selects from `model`, with its configuration
/// ([`shrunk_config`]). Keeping every unit reproduces the model exactly. The weights pass through
/// host memory in Hugging Face layout: at the peak, an f32 copy of the original weights (each
/// freed once sliced) and of the sliced ones, besides both models on `model`'s device.
pub fn shrink(model: &CausalLm, keep: &KeepSets) -> Result<CausalLm, PruneError> {
    let c = &model.config;
    let shape = keep.validate(c)?;
    let config = shrunk_config(c, &shape, &keep.sources()).map_err(PruneError::Input)?;
    let mut layers: Vec<Option<LayerRows>> = (0..c.num_layers).map(|_| None).collect();
    for (index, l) in keep.layers.iter().enumerate() {
        layers[l.source] = Some(LayerRows::new(index, l, c));
    }
    let tensors = export(model)
        .into_iter()
        .filter_map(|t| slice(t, &keep.hidden, &layers).transpose())
        .collect::<Result<Vec<_>, _>>()?;
    let (pruned, _) = load(&config, &tensors[..], "the pruned model", &model.device())?;
    Ok(pruned)
}
