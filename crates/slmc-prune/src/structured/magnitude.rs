//! Data-free importance: the L2 norm of the weights each unit owns (docs/algorithms.md §6.1, §6.4).
//!
//! * query head `h`: its `q_proj` rows and `o_proj` columns;
//! * MLP channel `j`: row `j` of `gate_proj` and `up_proj`, column `j` of `down_proj`;
//! * hidden channel `e`: column `e` of the embeddings, `lm_head` and every q/k/v/gate/up, row `e`
//!   of every o/down projection (and their biases), entry `e` of every norm;
//! * layer: the norm of `o_proj` and `down_proj`, what the block writes to the residual stream
//!   (a block whose output projections are zero is an identity). A weak proxy: prefer block
//!   influence from data for depth pruning.
//!
//! Biases of q/k/v and gate/up count for their head / channel.

use super::importance::{Importance, ImportanceMethod};
use super::tensors::{Module, col_sq, parse, row_sq};
use slmc_model::CausalLm;
use slmc_model::weights::export;

/// Adds `src` to `dst` element-wise.
fn add_to(dst: &mut [f64], src: &[f64]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d += s;
    }
}

/// Sums consecutive runs of `width` values.
fn sum_runs(values: &[f64], width: usize) -> Vec<f64> {
    values.chunks(width).map(|r| r.iter().sum()).collect()
}

/// Weight-magnitude importance of every unit of `model`.
pub fn magnitude(model: &CausalLm) -> Importance {
    let c = &model.config;
    let (layers, hd, i) = (c.num_layers, c.head_dim, c.intermediate_size);
    let q_dim = c.q_dim();
    let mut heads = vec![vec![0.0; c.num_heads]; layers];
    let mut mlp = vec![vec![0.0; i]; layers];
    let mut hidden = vec![0.0; c.hidden_size];
    let mut writes = vec![0.0; layers];
    for t in export(model) {
        let Some(p) = parse(&t.name).filter(|p| p.module != Module::QkNorm) else { continue };
        let cols = if t.shape.len() == 2 { t.shape[1] } else { 1 };
        let (rows_sq, cols_sq) = (row_sq(&t.values, cols), col_sq(&t.values, cols));
        // The hidden dimension: the output rows (and bias) of o/down and the norms, else the
        // input columns of matrices.
        if p.module.writes_hidden() {
            add_to(&mut hidden, &rows_sq);
        } else if !p.bias {
            add_to(&mut hidden, &cols_sq);
        }
        let Some(l) = p.layer else { continue };
        match p.module {
            Module::Q | Module::Qkv => add_to(&mut heads[l], &sum_runs(&rows_sq[..q_dim], hd)),
            Module::O if !p.bias => add_to(&mut heads[l], &sum_runs(&cols_sq, hd)),
            Module::Gate | Module::Up => add_to(&mut mlp[l], &rows_sq),
            Module::GateUp => {
                add_to(&mut mlp[l], &rows_sq[..i]);
                add_to(&mut mlp[l], &rows_sq[i..]);
            }
            Module::Down if !p.bias => add_to(&mut mlp[l], &cols_sq),
            _ => {}
        }
        if matches!(p.module, Module::O | Module::Down) {
            writes[l] += rows_sq.iter().sum::<f64>();
        }
    }
    let sqrt = |v: Vec<f64>| v.into_iter().map(f64::sqrt).collect::<Vec<_>>();
    Importance {
        method: ImportanceMethod::Magnitude,
        heads: heads.into_iter().map(sqrt).collect(),
        mlp: mlp.into_iter().map(sqrt).collect(),
        hidden: sqrt(hidden),
        layers: sqrt(writes),
    }
}
