//! `slmc check`'s estimate for calibration stages against the peaks measured on the model of
//! scripts/quant_memory.sh (111M Llama, 128 × 256 calibration tokens, flex, VmHWM from done.json;
//! docs/workstation-memory.md): a change to the plan that moves it more than 10 % off fails here.

use slmc_recipe::plan::{model_config, plan};

/// The planned peak of scripts/quant_memory.sh's recipe with this one stage.
fn planned(stage: &str) -> f64 {
    let text = format!(
        r#"name = "quant-memory"
[model]
tokenizer = "data/tokenizer/tokenizer.json"
config = {{ model_type = "llama", hidden_size = 1024, intermediate_size = 2816, num_hidden_layers = 8, num_attention_heads = 16, num_key_value_heads = 16, vocab_size = 4096, max_position_embeddings = 512, tie_word_embeddings = false }}
[data]
train = "t.txt"
seq-len = 256
[[stage]]
{stage}
calibration-samples = 128
"#
    );
    let recipe = slmc_recipe::load_str(&text, "r.toml", &[]).map_err(|(s, d)| s.render_all(&d)).unwrap();
    let p = plan(&recipe, model_config(&recipe.model).unwrap(), None);
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    p.stages[0].memory.total() as f64
}

#[test]
fn calibration_stage_plans_are_within_ten_percent_of_the_measured_peaks() {
    // (stage, measured VmHWM in bytes): `scripts/quant_memory.sh sparsegpt|wanda` and
    // `scripts/plan_vs_measured.py --only quantize` (GPTQ 4-bit g128, 128 windows).
    let cases = [
        ("kind = \"prune\"\nmethod = \"sparsegpt\"\nsparsity = 0.5", 1_817_329_664.0),
        ("kind = \"prune\"\nmethod = \"wanda\"\nsparsity = 0.5", 1_334_894_592.0),
        ("kind = \"quantize\"\nmethod = \"gptq\"\nbits = 4\ngroup-size = 128", 1_791_600_000.0),
    ];
    for (stage, measured) in cases {
        let plan = planned(stage);
        let err = plan / measured - 1.0;
        assert!(
            err.abs() <= 0.10,
            "{stage}: plan {plan:.3e} vs measured {measured:.3e} ({:+.1} %)",
            err * 100.0
        );
    }
}
