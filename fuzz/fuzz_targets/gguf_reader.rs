//! Any byte string given to the GGUF reader is either parsed or rejected with an error: never a
//! panic, an out-of-bounds read or an allocation larger than the input justifies. A parsed file
//! must also have every tensor's data inside the input and dequantize without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slmc_gguf::ggml;
use slmc_gguf::GgufFile;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = GgufFile::parse(data) {
        for t in &f.tensors {
            let bytes = f.tensor_data(data, t);
            assert_eq!(bytes.len() as u64, t.n_bytes);
            if t.info.ggml_type.is_supported() && bytes.len() <= 1 << 20 {
                let _ = ggml::dequantize(t.info.ggml_type, bytes);
            }
        }
        for (_, v) in &f.metadata {
            let _ = v.summary(80);
        }
    }
});
