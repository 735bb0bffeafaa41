//! Any text given as a Hugging Face `config.json` is either normalised or rejected with an error:
//! never a panic, and never a configuration whose sizes would overflow the parameter count.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slmc_config::ModelConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(cfg) = ModelConfig::from_json_str(text, "config.json") {
        let _ = cfg.num_params();
        let _ = cfg.features.describe();
        let again = ModelConfig::from_json_str(&cfg.to_hf_json().to_string(), "again");
        assert!(again.is_ok(), "a normalised config must parse again: {again:?}");
    }
});
