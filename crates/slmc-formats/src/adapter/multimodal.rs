//! Adapters of the language model of a multimodal checkpoint (Gemma 3): PEFT names its modules by
//! their path in the multimodal class (`model.language_model.layers.3.self_attn.q_proj`; before
//! transformers 4.52 `language_model.model.layers…`), slmc by the text model's
//! (`model.layers.3.self_attn.q_proj`). Reading accepts either; writing for a multimodal base uses
//! the class's path and lists the adapted modules in full, so that PEFT does not also match the
//! vision tower's `q_proj`, `fc1`, ….

use super::{LoraAdapter, TargetModules};

/// The text-model name of a module or parameter named in a multimodal class (unchanged otherwise).
pub fn text_model_name(name: &str) -> String {
    if let Some(rest) = name.strip_prefix("model.language_model.") {
        format!("model.{rest}")
    } else if let Some(rest) = name.strip_prefix("language_model.model.") {
        format!("model.{rest}")
    } else if let Some(rest) = name.strip_prefix("language_model.lm_head") {
        format!("lm_head{rest}")
    } else {
        name.to_string()
    }
}

impl LoraAdapter {
    /// The adapter under the module paths of transformers' multimodal class
    /// (`model.layers.*` → `model.language_model.layers.*`, `lm_head` unchanged), with
    /// `target_modules` the full list of adapted modules.
    pub fn for_multimodal_base(&self) -> LoraAdapter {
        let rename = |n: &str| match n.strip_prefix("model.") {
            Some(rest) => format!("model.language_model.{rest}"),
            None => n.to_string(),
        };
        let mut out = self.clone();
        out.modules = self.modules.iter().map(|(k, v)| (rename(k), v.clone())).collect();
        out.saved = self.saved.iter().map(|(k, v)| (rename(k), v.clone())).collect();
        out.config.target_modules = TargetModules::Names(out.modules.keys().cloned().collect());
        out.config.modules_to_save = self.config.modules_to_save.iter().map(|m| rename(m)).collect();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_both_layouts_to_the_text_model() {
        assert_eq!(text_model_name("model.language_model.layers.0.mlp.fc1"), "model.layers.0.mlp.fc1");
        assert_eq!(text_model_name("language_model.model.norm.weight"), "model.norm.weight");
        assert_eq!(text_model_name("language_model.lm_head.weight"), "lm_head.weight");
        assert_eq!(text_model_name("model.layers.1.self_attn.q_proj"), "model.layers.1.self_attn.q_proj");
    }
}
