//! The configuration of a pruned model (docs/algorithms.md §6.6): new sizes, `head_dim` written
//! explicitly, and per-layer settings renumbered for the layers that survive. Burn-free.

use super::targets::{Shape, Targets, resolve};
use crate::ModelConfig;
use serde_json::{Value, json};

/// The configuration after pruning `config` to `shape`, keeping the decoder layers `kept_layers`
/// (original indices, strictly increasing, `shape.num_hidden_layers` of them):
///
/// * the five sizes of [`Shape`]; `head_dim` unchanged and written to `config.json` explicitly
///   (transformers otherwise derives it as `hidden_size / num_attention_heads`);
/// * per-layer settings of the kept layers, renumbered `0..L'`: sliding windows, `layer_types`,
///   and Qwen2's `max_window_layers` (the number of kept layers below the old bound, which puts
///   every kept layer on the same side of it as before).
pub fn shrunk_config(
    config: &ModelConfig,
    shape: &Shape,
    kept_layers: &[usize],
) -> Result<ModelConfig, String> {
    let increasing = kept_layers.windows(2).all(|w| w[0] < w[1]);
    if kept_layers.len() != shape.num_hidden_layers
        || !increasing
        || kept_layers.last().is_some_and(|&l| l >= config.num_layers)
    {
        return Err(format!(
            "kept layers {kept_layers:?} must be {} increasing indices below {}",
            shape.num_hidden_layers, config.num_layers
        ));
    }
    let mut c = shape.apply(config);
    let mut layers = config.clone();
    layers.select_layers(kept_layers);
    (c.sliding_windows, c.features.rope_layers) = (layers.sliding_windows, layers.features.rope_layers);
    c.raw.insert("head_dim".into(), json!(config.head_dim));
    if let Some(bound) = c.raw.get("max_window_layers").and_then(Value::as_u64) {
        let below = kept_layers.iter().filter(|&&l| (l as u64) < bound).count();
        c.raw.insert("max_window_layers".into(), json!(below));
    }
    if let Some(Value::Array(types)) = c.raw.get("layer_types")
        && types.len() == config.num_layers
    {
        let kept: Vec<Value> = kept_layers.iter().map(|&l| types[l].clone()).collect();
        c.raw.insert("layer_types".into(), Value::Array(kept));
    }
    Ok(c)
}

/// The configuration `targets` prune `config` to, computed without any tensors (for planning:
/// shapes, parameter counts, export sizes). Sizes and parameter counts are exact; which layers a
/// depth prune keeps depends on calibration data, so per-layer settings (sliding windows) are
/// those of the first `num_hidden_layers` layers here.
pub fn pruned_config(config: &ModelConfig, targets: &Targets) -> Result<ModelConfig, String> {
    let shape = resolve(config, targets)?;
    let first: Vec<usize> = (0..shape.num_hidden_layers).collect();
    shrunk_config(config, &shape, &first)
}

#[cfg(test)]
mod tests {
    use super::super::targets::TargetSizes;
    use super::*;

    const QWEN2: &str = r#"{"model_type":"qwen2","hidden_size":64,"num_attention_heads":4,
        "num_key_value_heads":2,"num_hidden_layers":4,"intermediate_size":128,"vocab_size":100,
        "use_sliding_window":true,"sliding_window":8,"max_window_layers":2,
        "layer_types":["full_attention","full_attention","sliding_attention","sliding_attention"]}"#;

    #[test]
    fn dropped_layers_renumber_per_layer_settings() {
        let c = ModelConfig::from_json_str(QWEN2, "q").unwrap();
        assert_eq!(c.sliding_windows, vec![None, None, Some(8), Some(8)]);
        let shape = Shape { num_hidden_layers: 2, ..Shape::of(&c) };
        let p = shrunk_config(&c, &shape, &[1, 3]).unwrap();
        assert_eq!(p.sliding_windows, vec![None, Some(8)]);
        let json = p.to_hf_json();
        assert_eq!(json["num_hidden_layers"], 2);
        assert_eq!(json["max_window_layers"], 1);
        assert_eq!(json["layer_types"], json!(["full_attention", "sliding_attention"]));
        // What transformers would read back is the same.
        let again = ModelConfig::from_json_str(&json.to_string(), "again").unwrap();
        assert_eq!(again.sliding_windows, p.sliding_windows);
        // Without layer_types, max_window_layers alone must give the same windows.
        let mut raw = json.as_object().unwrap().clone();
        raw.remove("layer_types");
        let again = ModelConfig::from_json_str(&Value::Object(raw).to_string(), "again").unwrap();
        assert_eq!(again.sliding_windows, p.sliding_windows);
        assert!(shrunk_config(&c, &shape, &[3, 1]).is_err());
        assert!(shrunk_config(&c, &shape, &[1, 4]).is_err());
    }

    #[test]
    fn head_dim_is_written_for_every_architecture() {
        let c = ModelConfig::from_json_str(QWEN2, "q").unwrap();
        let t = TargetSizes { num_attention_heads: Some(2), hidden_size: Some(48), ..Default::default() };
        let p = pruned_config(&c, &Targets::Sizes(t)).unwrap();
        let json = p.to_hf_json();
        assert_eq!((json["head_dim"].clone(), json["num_attention_heads"].clone()), (json!(16), json!(2)));
        let again = ModelConfig::from_json_str(&json.to_string(), "again").unwrap();
        assert_eq!((again.head_dim, again.hidden_size, again.num_heads, again.num_kv_heads), (16, 48, 2, 2));
        assert_eq!(again.num_params(), p.num_params());
    }
}
