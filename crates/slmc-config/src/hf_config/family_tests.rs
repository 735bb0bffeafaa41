//! Config parsing of the Gemma, Granite, Phi-2, Qwen3 and SmolLM3 families in both transformers
//! spellings, and the round trip through `to_hf_json`.

use super::*;

fn parse(text: &str) -> ModelConfig {
    ModelConfig::from_json_str(text, "config.json").unwrap_or_else(|e| panic!("{e}"))
}

/// The config written back (4.x form) parses to the same normalised config.
fn round_trips(c: &ModelConfig) {
    let again = parse(&c.to_hf_json().to_string());
    assert_eq!(again.features, c.features, "{:?}", c.arch);
    assert_eq!(again.rope, c.rope);
    assert_eq!(again.sliding_windows, c.sliding_windows);
    assert_eq!(again.num_params(), c.num_params());
    assert_eq!(
        (again.head_dim, again.rms_norm_eps, again.tie_word_embeddings),
        (c.head_dim, c.rms_norm_eps, c.tie_word_embeddings)
    );
}

const GEMMA3_V5: &str = r#"{"model_type":"gemma3_text","hidden_size":64,"num_attention_heads":4,
    "num_key_value_heads":1,"head_dim":16,"num_hidden_layers":7,"intermediate_size":96,"vocab_size":100,
    "sliding_window":8,"query_pre_attn_scalar":16,"hidden_activation":"gelu_pytorch_tanh",
    "rope_parameters":{"full_attention":{"rope_type":"linear","factor":2.0,"rope_theta":1000000.0},
                       "sliding_attention":{"rope_type":"default","rope_theta":10000.0}},
    "final_logit_softcapping":null,"attn_logit_softcapping":null,"dtype":"bfloat16"}"#;

#[test]
fn gemma3_reads_both_rope_spellings_and_the_five_to_one_pattern() {
    let v5 = parse(GEMMA3_V5);
    let v4 = parse(
        r#"{"model_type":"gemma3_text","hidden_size":64,"num_attention_heads":4,"num_key_value_heads":1,
        "head_dim":16,"num_hidden_layers":7,"intermediate_size":96,"vocab_size":100,"sliding_window":8,
        "query_pre_attn_scalar":16,"rope_theta":1000000.0,"rope_local_base_freq":10000.0,
        "rope_scaling":{"rope_type":"linear","factor":2.0},"torch_dtype":"bfloat16"}"#,
    );
    assert_eq!((&v5.rope, &v5.features), (&v4.rope, &v4.features));
    assert_eq!(v5.rope.scaling, RopeScaling::Linear { factor: 2.0 });
    assert_eq!(
        v5.features.rope_local.as_ref().map(|r| (r.theta, &r.scaling)),
        Some((10000.0, &RopeScaling::None))
    );
    // Layers 0-4 slide, 5 is global, 6 slides again.
    let sliding: Vec<bool> = v5.sliding_windows.iter().map(Option::is_some).collect();
    assert_eq!(sliding, [true, true, true, true, true, false, true]);
    assert_eq!(v5.layer_rope(0), LayerRope::Local);
    assert_eq!(v5.layer_rope(5), LayerRope::Global);
    let f = &v5.features;
    assert_eq!(
        (f.norm, f.qk_norm, f.block),
        (NormKind::RmsUnitOffset, Some(NormKind::RmsUnitOffset), BlockKind::Sandwich)
    );
    assert_eq!((f.attention_scale, f.final_softcap, f.attn_softcap), (0.25, None, None));
    assert_eq!(f.embedding_multiplier, 8.0);
    assert!(v5.tie_word_embeddings, "gemma ties by default");
    round_trips(&v5);
}

#[test]
fn gemma3_multimodal_wrapper_reads_its_text_config() {
    let wrapped = format!(
        r#"{{"model_type":"gemma3","text_config":{GEMMA3_V5},"vision_config":{{"model_type":"siglip_vision_model"}}}}"#
    );
    let c = parse(&wrapped);
    assert_eq!(c.arch, Arch::Gemma3);
    assert!(c.features.multimodal);
    assert_eq!(c.num_layers, 7);
    // Saved text-only.
    assert_eq!(c.to_hf_json()["model_type"], "gemma3_text");
    let bidirectional = GEMMA3_V5.replace("\"dtype\"", "\"use_bidirectional_attention\":true,\"dtype\"");
    let err = ModelConfig::from_json_str(&bidirectional, "c.json").unwrap_err().to_string();
    assert!(err.contains("use_bidirectional_attention"), "{err}");
}

#[test]
fn gemma2_softcaps_default_and_null_disables() {
    let base = r#"{"model_type":"gemma2","hidden_size":64,"num_attention_heads":4,"num_key_value_heads":2,
        "head_dim":16,"num_hidden_layers":4,"intermediate_size":96,"vocab_size":100,"query_pre_attn_scalar":16"#;
    let c = parse(&format!("{base}}}"));
    assert_eq!((c.features.attn_softcap, c.features.final_softcap), (Some(50.0), Some(30.0)));
    assert_eq!(c.sliding_windows, vec![Some(4096), None, Some(4096), None]);
    let c = parse(&format!(
        r#"{base},"final_logit_softcapping":null,"attn_logit_softcapping":5.0,"sliding_window":8}}"#
    ));
    assert_eq!((c.features.attn_softcap, c.features.final_softcap), (Some(5.0), None));
    round_trips(&c);
    // Legacy Gemma 1 `gelu` is the tanh form; SiLU is refused for Gemma.
    let g1 = r#"{"model_type":"gemma","hidden_size":64,"num_attention_heads":4,"head_dim":24,
        "num_hidden_layers":2,"intermediate_size":96,"vocab_size":100,"hidden_act":"gelu"}"#;
    assert_eq!(parse(g1).features.activation, Activation::GeluTanh);
    let err = ModelConfig::from_json_str(&g1.replace("\"gelu\"", "\"silu\""), "c").unwrap_err().to_string();
    assert!(err.contains("silu") && err.contains("gemma"), "{err}");
}

#[test]
fn granite_phi_qwen3_smollm3_features() {
    let granite = parse(
        r#"{"model_type":"granite","hidden_size":64,"num_attention_heads":4,"num_key_value_heads":2,
        "num_hidden_layers":2,"intermediate_size":128,"vocab_size":100,"embedding_multiplier":12.0,
        "attention_multiplier":0.1,"residual_multiplier":0.22,"logits_scaling":2.0,
        "rope_parameters":{"rope_type":"default","rope_theta":5000000.0}}"#,
    );
    let f = &granite.features;
    assert_eq!(
        (f.embedding_multiplier, f.attention_scale, f.residual_multiplier, f.logits_scaling),
        (12.0, 0.1, 0.22, 2.0)
    );
    assert_eq!(granite.rope.theta, 5e6);
    round_trips(&granite);

    let phi = parse(
        r#"{"model_type":"phi","hidden_size":64,"num_attention_heads":4,"num_hidden_layers":2,
        "intermediate_size":256,"vocab_size":100,"hidden_act":"gelu_new","layer_norm_eps":1e-5,
        "rope_parameters":{"rope_type":"default","rope_theta":10000.0,"partial_rotary_factor":0.5}}"#,
    );
    assert_eq!((phi.features.norm, phi.features.block), (NormKind::Layer, BlockKind::Parallel));
    assert_eq!((phi.rotary_dim(), phi.rms_norm_eps), (8, 1e-5));
    assert!(phi.qkv_bias && phi.o_bias && phi.mlp_bias && phi.features.lm_head_bias);
    assert_eq!(phi.arch.layer_linears()[3], &["mlp.fc2"]);
    assert_eq!(phi.linear_shape("model.layers.1.self_attn.dense"), Some([64, 64]));
    round_trips(&phi);

    let qwen3 = parse(
        r#"{"model_type":"qwen3","hidden_size":64,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":32,
        "num_hidden_layers":2,"intermediate_size":128,"vocab_size":100,"tie_word_embeddings":true,
        "rope_theta":1000000.0}"#,
    );
    assert_eq!((qwen3.features.qk_norm, qwen3.q_dim()), (Some(NormKind::Rms), 128));
    round_trips(&qwen3);

    let smol = r#"{"model_type":"smollm3","hidden_size":64,"num_attention_heads":4,"num_key_value_heads":2,
        "num_hidden_layers":8,"intermediate_size":128,"vocab_size":100}"#;
    let c = parse(smol);
    assert_eq!(c.features.rope_layers, [true, true, true, false, true, true, true, false]);
    assert_eq!((c.layer_rope(3), c.rope.theta), (LayerRope::None, 2e6));
    round_trips(&c);
    let mut two = c.clone();
    two.select_layers(&[2, 3]);
    assert_eq!(two.features.rope_layers, [true, false]);
    let explicit =
        parse(&smol.replace("\"vocab_size\":100", "\"vocab_size\":100,\"no_rope_layers\":[1,0,1,1,1,1,1,1]"));
    assert_eq!(explicit.layer_rope(1), LayerRope::None);
}
