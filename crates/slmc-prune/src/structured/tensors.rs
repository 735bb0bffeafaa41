//! Hugging Face tensor names of the decoder, parsed into the module they belong to, and the
//! row/column arithmetic structured pruning does on `[out, in]` matrices.

/// The module a parameter belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Module {
    /// `model.embed_tokens` (`[vocab, hidden]`).
    Embed,
    /// `lm_head` (`[vocab, hidden]`).
    LmHead,
    /// `model.norm` (Phi-2: `model.final_layernorm`).
    FinalNorm,
    /// `input_layernorm`.
    InputNorm,
    /// `post_attention_layernorm` (and Gemma 2/3's pre/post-feed-forward norms).
    PostNorm,
    /// `self_attn.q_norm` / `k_norm`: over one head's width, untouched by pruning.
    QkNorm,
    /// `self_attn.q_proj`.
    Q,
    /// `self_attn.k_proj`.
    K,
    /// `self_attn.v_proj`.
    V,
    /// Phi-3's fused `self_attn.qkv_proj` (`[q | k | v]` rows).
    Qkv,
    /// `self_attn.o_proj` (Phi-2: `self_attn.dense`).
    O,
    /// `mlp.gate_proj`.
    Gate,
    /// `mlp.up_proj` (Phi-2: `mlp.fc1`).
    Up,
    /// Phi-3's fused `mlp.gate_up_proj` (`[gate | up]` rows).
    GateUp,
    /// `mlp.down_proj` (Phi-2: `mlp.fc2`).
    Down,
}

impl Module {
    /// Whether the residual (hidden) dimension is the module's output (its weight's rows, its
    /// bias) rather than its input (the columns). Norms are vectors over the hidden dimension,
    /// treated as rows.
    pub(crate) fn writes_hidden(self) -> bool {
        matches!(self, Self::O | Self::Down | Self::FinalNorm | Self::InputNorm | Self::PostNorm)
    }
}

/// A parsed parameter name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ParamName {
    /// Decoder layer, for layer parameters.
    pub layer: Option<usize>,
    /// The module.
    pub module: Module,
    /// `….bias` rather than `….weight`.
    pub bias: bool,
}

/// Parses a Hugging Face parameter name of slmc's decoder (`model.layers.3.mlp.down_proj.weight`).
pub(crate) fn parse(name: &str) -> Option<ParamName> {
    let (path, kind) = name.rsplit_once('.')?;
    let bias = match kind {
        "weight" => false,
        "bias" => true,
        _ => return None,
    };
    let (layer, module) = match path {
        "model.embed_tokens" => (None, Module::Embed),
        "lm_head" => (None, Module::LmHead),
        "model.norm" | "model.final_layernorm" => (None, Module::FinalNorm),
        _ => {
            let (index, rest) = slmc_config::hf_config::split_layer_name(path)?;
            let module = match rest {
                "input_layernorm" => Module::InputNorm,
                "post_attention_layernorm" | "pre_feedforward_layernorm" | "post_feedforward_layernorm" => {
                    Module::PostNorm
                }
                "self_attn.q_norm" | "self_attn.k_norm" => Module::QkNorm,
                "self_attn.q_proj" => Module::Q,
                "self_attn.k_proj" => Module::K,
                "self_attn.v_proj" => Module::V,
                "self_attn.qkv_proj" => Module::Qkv,
                "self_attn.o_proj" | "self_attn.dense" => Module::O,
                "mlp.gate_proj" => Module::Gate,
                "mlp.up_proj" | "mlp.fc1" => Module::Up,
                "mlp.gate_up_proj" => Module::GateUp,
                "mlp.down_proj" | "mlp.fc2" => Module::Down,
                _ => return None,
            };
            (Some(index), module)
        }
    };
    Some(ParamName { layer, module, bias })
}

/// The rows `u·width .. (u+1)·width` of every unit `u` in `units`, shifted by `offset`.
pub(crate) fn unit_rows(units: &[usize], width: usize, offset: usize) -> impl Iterator<Item = usize> + '_ {
    units.iter().flat_map(move |u| offset + u * width..offset + (u + 1) * width)
}

/// The sub-matrix of row-major `[rows, cols]` `values` at `keep_rows` × `keep_cols` (`None` keeps
/// every row or column), in the given order.
pub(crate) fn take(
    values: &[f32],
    cols: usize,
    keep_rows: Option<&[usize]>,
    keep_cols: Option<&[usize]>,
) -> Vec<f32> {
    let rows = values.len().checked_div(cols).unwrap_or(0);
    let all_rows: Vec<usize>;
    let keep_rows = match keep_rows {
        Some(r) => r,
        None => {
            all_rows = (0..rows).collect();
            &all_rows
        }
    };
    let mut out = Vec::with_capacity(keep_rows.len() * keep_cols.map_or(cols, <[usize]>::len));
    for &r in keep_rows {
        let row = &values[r * cols..(r + 1) * cols];
        match keep_cols {
            Some(c) => out.extend(c.iter().map(|&j| row[j])),
            None => out.extend_from_slice(row),
        }
    }
    out
}

/// Σ of squares of each row of row-major `[rows, cols]` `values`.
pub(crate) fn row_sq(values: &[f32], cols: usize) -> Vec<f64> {
    values.chunks(cols.max(1)).map(|r| r.iter().map(|&v| f64::from(v) * f64::from(v)).sum()).collect()
}

/// Σ of squares of each column of row-major `[rows, cols]` `values`.
pub(crate) fn col_sq(values: &[f32], cols: usize) -> Vec<f64> {
    let mut out = vec![0.0; cols];
    for row in values.chunks(cols.max(1)) {
        for (o, &v) in out.iter_mut().zip(row) {
            *o += f64::from(v) * f64::from(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_to_modules() {
        let p = parse("model.layers.12.self_attn.qkv_proj.bias").unwrap();
        assert_eq!(p, ParamName { layer: Some(12), module: Module::Qkv, bias: true });
        assert_eq!(parse("lm_head.weight").unwrap().module, Module::LmHead);
        assert_eq!(parse("model.norm.weight").unwrap().layer, None);
        assert!(parse("model.layers.x.mlp.down_proj.weight").is_none());
        assert!(parse("model.layers.0.mlp.other.weight").is_none());
    }

    #[test]
    fn take_and_square_sums_follow_row_major_layout() {
        // [[0, 1, 2], [3, 4, 5]]
        let v: Vec<f32> = (0..6).map(|x| x as f32).collect();
        assert_eq!(take(&v, 3, Some(&[1]), Some(&[0, 2])), vec![3.0, 5.0]);
        assert_eq!(take(&v, 3, None, Some(&[1])), vec![1.0, 4.0]);
        assert_eq!(take(&v, 3, Some(&[1, 0]), None), vec![3.0, 4.0, 5.0, 0.0, 1.0, 2.0]);
        assert_eq!(row_sq(&v, 3), vec![5.0, 50.0]);
        assert_eq!(col_sq(&v, 3), vec![9.0, 17.0, 29.0]);
        assert_eq!(unit_rows(&[0, 2], 2, 10).collect::<Vec<_>>(), vec![10, 11, 14, 15]);
    }
}
