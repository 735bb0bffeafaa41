//! Any bytes given as a `.safetensors` file are either opened or rejected with an error: never a
//! panic or a read outside the file; every tensor of an opened file reads (or fails) cleanly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slmc_formats::Checkpoint;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    std::fs::write(&path, data).unwrap();
    if let Ok(ckpt) = Checkpoint::open_files(&[path]) {
        let names: Vec<String> = ckpt.names().map(str::to_string).collect();
        for name in names {
            if let Ok((shape, _, values)) = ckpt.read_f32(&name) {
                assert_eq!(shape.iter().product::<usize>(), values.len());
            }
        }
    }
});
