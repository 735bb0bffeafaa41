//! GGUF export of the Gemma 1/2/3, Granite, Phi-2, Qwen3 and SmolLM3 families: the architecture
//! string, the exact tensor set llama.cpp's loader creates for it (docs/families.md), the
//! family's keys (soft-caps, sliding window and pattern, second RoPE base, multipliers), Gemma's
//! norms stored as `1 + w`, and Q/K rows permuted only for Granite and SmolLM3. (That llama.cpp
//! computes transformers' logits from these files is checked by scripts/check_llamacpp.py.)

use burn::prelude::*;
use slmc_gguf::{FileType, GgufReader, Value};
use slmc_model::gguf_export::{GgufOptions, export_model_gguf};
use slmc_model::model::Init;
use slmc_model::weights::export;
use slmc_model::{CausalLm, ModelConfig};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

const COMMON: &str = r#""vocab_size":384,"hidden_size":64,"intermediate_size":96,"num_attention_heads":4,
    "max_position_embeddings":128,"bos_token_id":0,"eos_token_id":1"#;

fn family(model_type: &str, extra: &str) -> ModelConfig {
    let text = format!(r#"{{"model_type":"{model_type}",{COMMON},{extra}}}"#);
    ModelConfig::from_json_str(&text, model_type).unwrap()
}

struct Exported {
    gguf: GgufReader,
    /// Hugging Face tensors of the model.
    hf: HashMap<String, Vec<f32>>,
    _dir: tempfile::TempDir,
}

fn export_family(config: &ModelConfig) -> Exported {
    // (Norm weights start at 0 for Gemma, 1 otherwise: a missing or extra `+1` shows either way.)
    let model = CausalLm::new(config, Init::Normal { std: 0.2, seed: 5 }, &Device::flex());
    let hf: HashMap<String, Vec<f32>> = export(&model).into_iter().map(|t| (t.name, t.values)).collect();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.gguf");
    let tokenizer_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tokenizer");
    let opts = GgufOptions { file_type: FileType::F32, tokenizer_dir, name: None, encoded: HashMap::new() };
    export_model_gguf(&model, &opts, &out).unwrap_or_else(|e| panic!("{:?}: {e}", config.arch));
    Exported { gguf: GgufReader::open(&out).unwrap(), hf, _dir: dir }
}

impl Exported {
    fn names(&self) -> BTreeSet<String> {
        self.gguf.file().tensors.iter().map(|t| t.info.name.clone()).collect()
    }
    fn key(&self, k: &str) -> Option<&Value> {
        self.gguf.file().get(k)
    }
    fn f32_key(&self, k: &str) -> f32 {
        self.key(k).and_then(Value::as_f32).unwrap_or_else(|| panic!("missing {k}"))
    }
    fn tensor(&self, name: &str) -> Vec<f32> {
        self.gguf.tensor_f32(name).unwrap()
    }
}

/// The tensor names llama.cpp's loader expects: `global` plus `per_layer` for every layer.
fn expected(layers: usize, global: &[&str], per_layer: &[&str]) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = global.iter().map(|s| s.to_string()).collect();
    for l in 0..layers {
        out.extend(per_layer.iter().map(|p| format!("blk.{l}.{p}")));
    }
    out
}

const LLAMA_LAYER: [&str; 9] = [
    "attn_norm.weight",
    "attn_q.weight",
    "attn_k.weight",
    "attn_v.weight",
    "attn_output.weight",
    "ffn_norm.weight",
    "ffn_gate.weight",
    "ffn_up.weight",
    "ffn_down.weight",
];

fn with(base: &[&'static str], extra: &[&'static str]) -> Vec<&'static str> {
    base.iter().chain(extra).copied().collect()
}

#[test]
fn gemma_family_tensor_sets_keys_and_unit_offset_norms() {
    let gemma =
        export_family(&family("gemma", r#""num_hidden_layers":2,"num_key_value_heads":2,"head_dim":24"#));
    assert_eq!(gemma.key("general.architecture").and_then(Value::as_str), Some("gemma"));
    // No output.weight: llama.cpp's gemma reuses token_embd.
    assert_eq!(gemma.names(), expected(2, &["token_embd.weight", "output_norm.weight"], &LLAMA_LAYER));
    assert_eq!(gemma.key("gemma.attention.key_length").and_then(Value::as_u32), Some(24));
    // (1 + w): the stored norm is the Hugging Face weight plus one.
    let hf = &gemma.hf["model.layers.1.post_attention_layernorm.weight"];
    let stored = gemma.tensor("blk.1.ffn_norm.weight");
    assert!(hf.iter().zip(&stored).all(|(w, s)| *s == w + 1.0), "{hf:?} vs {stored:?}");
    // NEOX rope: Q rows unpermuted.
    assert_eq!(gemma.tensor("blk.0.attn_q.weight"), gemma.hf["model.layers.0.self_attn.q_proj.weight"]);

    let gemma2 = export_family(&family(
        "gemma2",
        r#""num_hidden_layers":4,"num_key_value_heads":2,"head_dim":16,"sliding_window":8,
           "query_pre_attn_scalar":16,"attn_logit_softcapping":5.0,"final_logit_softcapping":8.0"#,
    ));
    let sandwich = with(&LLAMA_LAYER, &["post_attention_norm.weight", "post_ffw_norm.weight"]);
    assert_eq!(gemma2.names(), expected(4, &["token_embd.weight", "output_norm.weight"], &sandwich));
    assert_eq!(
        (gemma2.f32_key("gemma2.attn_logit_softcapping"), gemma2.f32_key("gemma2.final_logit_softcapping")),
        (5.0, 8.0)
    );
    assert_eq!(gemma2.key("gemma2.attention.sliding_window").and_then(Value::as_u32), Some(8));
    // The default alternating pattern is llama.cpp's default too: no pattern key.
    assert!(gemma2.key("gemma2.attention.sliding_window_pattern").is_none());
    // HF pre_feedforward_layernorm is llama.cpp's ffn_norm.
    let pre_ff = &gemma2.hf["model.layers.2.pre_feedforward_layernorm.weight"];
    assert_eq!(gemma2.tensor("blk.2.ffn_norm.weight"), pre_ff.iter().map(|w| w + 1.0).collect::<Vec<_>>());

    let mut g3 = family(
        "gemma3_text",
        r#""num_hidden_layers":6,"num_key_value_heads":1,"head_dim":16,"sliding_window":8,"query_pre_attn_scalar":16,
           "rope_parameters":{"full_attention":{"rope_type":"linear","factor":2.0,"rope_theta":1000000.0},
                              "sliding_attention":{"rope_type":"default","rope_theta":10000.0}}"#,
    );
    let gemma3 = export_family(&g3);
    let qk = with(&sandwich, &["attn_q_norm.weight", "attn_k_norm.weight"]);
    assert_eq!(gemma3.names(), expected(6, &["token_embd.weight", "output_norm.weight"], &qk));
    assert_eq!(
        (gemma3.f32_key("gemma3.rope.freq_base"), gemma3.f32_key("gemma3.rope.freq_base_swa")),
        (1e6, 1e4)
    );
    assert_eq!(gemma3.key("gemma3.rope.scaling.type").and_then(Value::as_str), Some("linear"));
    assert!(gemma3.key("gemma3.final_logit_softcapping").is_none());
    // Gemma 3's QK-norms are (1 + w) too.
    let qn = &gemma3.hf["model.layers.0.self_attn.q_norm.weight"];
    assert_eq!(gemma3.tensor("blk.0.attn_q_norm.weight"), qn.iter().map(|w| w + 1.0).collect::<Vec<_>>());
    // A layer pattern that is not five-of-six (after depth pruning) is written per layer.
    g3.select_layers(&[0, 5, 2]);
    let pruned = export_family(&g3);
    let pattern = pruned.key("gemma3.attention.sliding_window_pattern").and_then(Value::as_array);
    assert_eq!(
        pattern.map(|a| format!("{a:?}")),
        Some(format!("{:?}", slmc_gguf::Array::Bool(vec![true, false, true])))
    );
}

#[test]
fn granite_phi2_qwen3_smollm3_tensor_sets_and_keys() {
    let granite = export_family(&family(
        "granite",
        r#""num_hidden_layers":2,"num_key_value_heads":2,"tie_word_embeddings":true,"embedding_multiplier":12.0,
           "attention_multiplier":0.1,"residual_multiplier":0.22,"logits_scaling":2.0"#,
    ));
    assert_eq!(granite.names(), expected(2, &["token_embd.weight", "output_norm.weight"], &LLAMA_LAYER));
    let scales = ["attention.scale", "embedding_scale", "residual_scale", "logit_scale"]
        .map(|k| granite.f32_key(&format!("granite.{k}")));
    assert_eq!(scales, [0.1, 12.0, 0.22, 2.0]);
    // Normal rope: Q rows permuted within each head (hd 16: rows 0, 8, 1, 9, …).
    let (q, hf) =
        (granite.tensor("blk.0.attn_q.weight"), &granite.hf["model.layers.0.self_attn.q_proj.weight"]);
    assert_eq!(&q[64..128], &hf[8 * 64..9 * 64]);

    let phi = export_family(&family(
        "phi",
        r#""num_hidden_layers":2,"intermediate_size":256,"hidden_act":"gelu_new","layer_norm_eps":1e-5,
           "partial_rotary_factor":0.5"#,
    ));
    let layer = [
        "attn_norm.weight",
        "attn_norm.bias",
        "attn_q.weight",
        "attn_q.bias",
        "attn_k.weight",
        "attn_k.bias",
        "attn_v.weight",
        "attn_v.bias",
        "attn_output.weight",
        "attn_output.bias",
        "ffn_up.weight",
        "ffn_up.bias",
        "ffn_down.weight",
        "ffn_down.bias",
    ];
    let global =
        ["token_embd.weight", "output_norm.weight", "output_norm.bias", "output.weight", "output.bias"];
    assert_eq!(phi.names(), expected(2, &global, &layer));
    assert_eq!(phi.key("general.architecture").and_then(Value::as_str), Some("phi2"));
    assert_eq!(phi.key("phi2.rope.dimension_count").and_then(Value::as_u32), Some(8));
    assert_eq!(phi.key("phi2.feed_forward_length").and_then(Value::as_u32), Some(256));
    assert_eq!(phi.f32_key("phi2.attention.layer_norm_epsilon"), 1e-5);
    // A tied Phi-2 head is written as an explicit output.weight (llama.cpp's phi2 always reads it).
    let tied = export_family(&family("phi", r#""num_hidden_layers":1,"tie_word_embeddings":true"#));
    assert_eq!(tied.tensor("output.weight"), tied.tensor("token_embd.weight"));

    let qwen3 = export_family(&family(
        "qwen3",
        r#""num_hidden_layers":2,"num_key_value_heads":2,"head_dim":32,"tie_word_embeddings":true,"rope_theta":1000000.0"#,
    ));
    let layer = with(&LLAMA_LAYER, &["attn_q_norm.weight", "attn_k_norm.weight"]);
    assert_eq!(qwen3.names(), expected(2, &["token_embd.weight", "output_norm.weight"], &layer));
    // Llama-style QK-norm: stored as is; NEOX rope: no permutation.
    assert_eq!(qwen3.tensor("blk.1.attn_k_norm.weight"), qwen3.hf["model.layers.1.self_attn.k_norm.weight"]);
    assert_eq!(qwen3.tensor("blk.0.attn_q.weight"), qwen3.hf["model.layers.0.self_attn.q_proj.weight"]);
    assert_eq!(qwen3.key("qwen3.attention.key_length").and_then(Value::as_u32), Some(32));

    let smol =
        family("smollm3", r#""num_hidden_layers":4,"num_key_value_heads":2,"tie_word_embeddings":true"#);
    let exported = export_family(&smol);
    assert_eq!(exported.names(), expected(4, &["token_embd.weight", "output_norm.weight"], &LLAMA_LAYER));
    assert_eq!(exported.f32_key("smollm3.rope.freq_base"), 2e6);
    // llama.cpp hard-codes NoPE on every 4th layer: another pattern cannot be written.
    let odd = family(
        "smollm3",
        r#""num_hidden_layers":4,"num_key_value_heads":2,"tie_word_embeddings":true,"no_rope_layers":[1,0,1,1]"#,
    );
    let model = CausalLm::new(&odd, Init::Normal { std: 0.2, seed: 1 }, &Device::flex());
    let dir = tempfile::tempdir().unwrap();
    let opts = GgufOptions {
        file_type: FileType::F32,
        tokenizer_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tokenizer"),
        name: None,
        encoded: HashMap::new(),
    };
    let err = export_model_gguf(&model, &opts, &dir.path().join("x.gguf")).unwrap_err().to_string();
    assert!(err.contains("every 4th layer"), "{err}");
}
