//! Hugging Face tensor names → llama.cpp tensor names (`gguf-py/gguf/tensor_mapping.py` for the
//! architectures slmc exports), and the llama-arch Q/K row permutation.

use slmc_config::hf_config::Arch;

/// What happens to a Hugging Face tensor on the way to GGUF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapped {
    /// Written under this GGUF name.
    Tensor(String),
    /// Not written (rotary caches llama.cpp recomputes; a tied `lm_head` duplicate).
    Dropped,
}

/// The GGUF name of a Hugging Face tensor of architecture `arch`, or `None` if llama.cpp has no
/// such tensor.
pub fn gguf_name(hf: &str, arch: Arch) -> Option<Mapped> {
    if hf.ends_with("rotary_emb.inv_freq") {
        return Some(Mapped::Dropped);
    }
    let fixed = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" | "model.final_layernorm.weight" => Some("output_norm.weight"),
        "model.final_layernorm.bias" => Some("output_norm.bias"),
        "lm_head.weight" => Some("output.weight"),
        "lm_head.bias" => Some("output.bias"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(Mapped::Tensor(f.to_string()));
    }
    let (layer, rest) = slmc_config::hf_config::split_layer_name(hf)?;
    let (module, kind) = rest.rsplit_once('.')?;
    if kind != "weight" && kind != "bias" {
        return None;
    }
    let sandwich = matches!(arch, Arch::Gemma2 | Arch::Gemma3);
    let base = match module {
        "input_layernorm" => "attn_norm",
        // Gemma 2/3: the norm on the attention output; elsewhere the norm before the MLP.
        "post_attention_layernorm" if sandwich => "post_attention_norm",
        "post_attention_layernorm" => "ffn_norm",
        "pre_feedforward_layernorm" => "ffn_norm",
        "post_feedforward_layernorm" => "post_ffw_norm",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" | "self_attn.dense" => "attn_output",
        "self_attn.qkv_proj" => "attn_qkv",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" | "mlp.fc1" => "ffn_up",
        "mlp.down_proj" | "mlp.fc2" => "ffn_down",
        // Phi-3: gate rows first, then up; llama.cpp's SwiGLU splits the fused tensor the same way.
        "mlp.gate_up_proj" => "ffn_up",
        _ => return None,
    };
    Some(Mapped::Tensor(format!("blk.{layer}.{base}.{kind}")))
}

/// Which heads the llama-arch Q/K permutation uses for a tensor: `Some(n_head)` for
/// `q_proj.{weight,bias}`, `Some(n_head_kv)` for `k_proj.{weight,bias}`, else `None`.
pub fn permute_heads(hf: &str, n_head: usize, n_head_kv: usize) -> Option<usize> {
    if hf.ends_with("self_attn.q_proj.weight") || hf.ends_with("self_attn.q_proj.bias") {
        Some(n_head)
    } else if hf.ends_with("self_attn.k_proj.weight") || hf.ends_with("self_attn.k_proj.bias") {
        Some(n_head_kv)
    } else {
        None
    }
}

/// The source row of GGUF row `r` under the llama-arch permutation of `rows` rows in `n_head`
/// heads (`LlamaModel.permute` in convert_hf_to_gguf.py): within each head of `d` rows,
/// `gguf[h·d + 2j + s] = hf[h·d + s·d/2 + j]`. Hugging Face rotates pairs `(j, j + d/2)`;
/// llama.cpp's normal RoPE rotates `(2j, 2j + 1)`.
pub fn permuted_source_row(r: usize, rows: usize, n_head: usize) -> usize {
    let d = rows / n_head;
    let (h, within) = (r / d, r % d);
    let (j, s) = (within / 2, within % 2);
    h * d + s * (d / 2) + j
}

/// Reorders the rows (of `row_len` items each) of a row-major buffer with the llama-arch Q/K
/// permutation. Works for f32 values and for encoded ggml bytes alike, since rows are
/// independent in every ggml type.
pub fn permute_rows<T: Copy>(data: &[T], row_len: usize, n_head: usize) -> Result<Vec<T>, String> {
    if row_len == 0 || !data.len().is_multiple_of(row_len) {
        return Err(format!("{} items are not a whole number of rows of {row_len}", data.len()));
    }
    let rows = data.len() / row_len;
    if n_head == 0 || !rows.is_multiple_of(n_head) || !(rows / n_head).is_multiple_of(2) {
        return Err(format!("{rows} rows cannot be split into {n_head} heads of even size"));
    }
    let mut out = Vec::with_capacity(data.len());
    for r in 0..rows {
        let src = permuted_source_row(r, rows, n_head);
        out.extend_from_slice(&data[src * row_len..(src + 1) * row_len]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_tensor_mapping() {
        let t = |s: &str| gguf_name(s, Arch::Llama).unwrap();
        assert_eq!(t("model.embed_tokens.weight"), Mapped::Tensor("token_embd.weight".into()));
        assert_eq!(t("model.layers.11.self_attn.q_proj.bias"), Mapped::Tensor("blk.11.attn_q.bias".into()));
        assert_eq!(t("model.layers.0.mlp.gate_up_proj.weight"), Mapped::Tensor("blk.0.ffn_up.weight".into()));
        assert_eq!(
            t("model.layers.0.self_attn.qkv_proj.weight"),
            Mapped::Tensor("blk.0.attn_qkv.weight".into())
        );
        assert_eq!(
            t("model.layers.3.post_attention_layernorm.weight"),
            Mapped::Tensor("blk.3.ffn_norm.weight".into())
        );
        assert_eq!(t("model.layers.0.self_attn.rotary_emb.inv_freq"), Mapped::Dropped);
        assert_eq!(gguf_name("model.layers.0.mlp.experts.0.weight", Arch::Llama), None);
        assert_eq!(gguf_name("model.layers.x.mlp.up_proj.weight", Arch::Llama), None);
        let g = |s: &str| gguf_name(s, Arch::Gemma2).unwrap();
        assert_eq!(
            g("model.layers.1.post_attention_layernorm.weight"),
            Mapped::Tensor("blk.1.post_attention_norm.weight".into())
        );
        assert_eq!(
            g("model.layers.1.pre_feedforward_layernorm.weight"),
            Mapped::Tensor("blk.1.ffn_norm.weight".into())
        );
        assert_eq!(
            g("model.layers.1.post_feedforward_layernorm.weight"),
            Mapped::Tensor("blk.1.post_ffw_norm.weight".into())
        );
        let p = |s: &str| gguf_name(s, Arch::Phi).unwrap();
        assert_eq!(p("model.layers.0.self_attn.dense.bias"), Mapped::Tensor("blk.0.attn_output.bias".into()));
        assert_eq!(p("model.final_layernorm.bias"), Mapped::Tensor("output_norm.bias".into()));
    }

    #[test]
    fn permutation_matches_the_converter() {
        // numpy: w.reshape(n_head, 2, d // 2, cols).swapaxes(1, 2).reshape(w.shape) for 2 heads of
        // 4 rows maps row order [0, 2, 1, 3, 4, 6, 5, 7].
        let rows: Vec<usize> = (0..8).map(|r| permuted_source_row(r, 8, 2)).collect();
        assert_eq!(rows, vec![0, 2, 1, 3, 4, 6, 5, 7]);
        let data: Vec<u32> = (0..16).collect(); // 8 rows × 2
        assert_eq!(permute_rows(&data, 2, 2).unwrap()[..6], [0, 1, 4, 5, 2, 3]);
        // 1 head of 8 rows: [0, 4, 1, 5, 2, 6, 3, 7].
        let rows: Vec<usize> = (0..8).map(|r| permuted_source_row(r, 8, 1)).collect();
        assert_eq!(rows, vec![0, 4, 1, 5, 2, 6, 3, 7]);
        assert!(permute_rows(&data, 2, 3).is_err());
        assert!(permute_rows(&data, 3, 1).is_err());
    }
}
