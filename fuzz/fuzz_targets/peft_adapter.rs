//! Any PEFT adapter directory (an `adapter_config.json` and an `adapter_model.safetensors`, both
//! from the input: the first two bytes give the config's length) is either read or rejected with
//! an error: never a panic; a read adapter holds only finite values.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let split = (u16::from_le_bytes([data[0], data[1]]) as usize).min(data.len() - 2);
    let (config, weights) = data[2..].split_at(split);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("adapter_config.json"), config).unwrap();
    std::fs::write(dir.path().join("adapter_model.safetensors"), weights).unwrap();
    if let Ok(adapter) = slmc_formats::adapter::read_peft(dir.path()) {
        for w in adapter.modules.values() {
            assert!(w.a.data.iter().chain(&w.b.data).all(|v| v.is_finite()));
        }
    }
});
