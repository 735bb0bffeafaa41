//! GGUF export throughput on a random ~96M-parameter Llama, and single-threaded block-quantizer
//! speed on a fixed sample (the numbers `scripts/bench_export.py` puts beside ggml's own
//! `ggml_quantize_chunk` on the same bytes).
//!
//!     cargo run --release -p slmc-gguf --example bench_export -- OUT_DIR [TYPES]
//!
//! Writes OUT_DIR/sample.f32 (the quantizer sample, raw little-endian f32, 4096 rows × 4096)
//! and OUT_DIR/sample.TYPE (slmc's encoding of it), and prints one JSON object per line: `{"kind": "export", ...}` per export type (file MB
//! written per second of wall time, quantization included) and `{"kind": "quantize", ...}` per
//! ggml type (MB of f32 input per second on one thread).

// A developer tool run from scripts/: it reports on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use slmc_config::hf_config::ModelConfig;
use slmc_gguf::export::{ExportTensor, GgufContents, TensorData, export_gguf};
use slmc_gguf::ggml::{self, GgmlType};
use slmc_gguf::{FileType, GgufVocab, PreSource};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

const CONFIG: &str = r#"{"model_type":"llama","vocab_size":16384,"hidden_size":768,"intermediate_size":2048,
  "num_hidden_layers":12,"num_attention_heads":12,"num_key_value_heads":4,"max_position_embeddings":2048,
  "rope_theta":10000.0,"rms_norm_eps":1e-5,"tie_word_embeddings":false}"#;

/// Approximately N(0, 0.02) values from a xorshift stream (sum of four uniforms).
fn random(n: usize, seed: u32) -> Vec<f32> {
    let mut x = seed | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x as f32 / u32::MAX as f32
    };
    (0..n).map(|_| (next() + next() + next() + next() - 2.0) * 0.035).collect()
}

fn tensors(c: &ModelConfig) -> Vec<ExportTensor> {
    let (h, f, v, q, kv) = (c.hidden_size, c.intermediate_size, c.vocab_size, c.q_dim(), c.kv_dim());
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        ("model.embed_tokens.weight".into(), vec![v, h]),
        ("model.norm.weight".into(), vec![h]),
        ("lm_head.weight".into(), vec![v, h]),
    ];
    for i in 0..c.num_layers {
        let p = format!("model.layers.{i}.");
        shapes.extend([
            (format!("{p}input_layernorm.weight"), vec![h]),
            (format!("{p}post_attention_layernorm.weight"), vec![h]),
            (format!("{p}self_attn.q_proj.weight"), vec![q, h]),
            (format!("{p}self_attn.k_proj.weight"), vec![kv, h]),
            (format!("{p}self_attn.v_proj.weight"), vec![kv, h]),
            (format!("{p}self_attn.o_proj.weight"), vec![h, q]),
            (format!("{p}mlp.gate_proj.weight"), vec![f, h]),
            (format!("{p}mlp.up_proj.weight"), vec![f, h]),
            (format!("{p}mlp.down_proj.weight"), vec![h, f]),
        ]);
    }
    shapes
        .into_iter()
        .enumerate()
        .map(|(i, (name, shape))| {
            let n = shape.iter().product();
            ExportTensor { name, shape, data: TensorData::Dense(random(n, 0x9E37_79B9 ^ i as u32)) }
        })
        .collect()
}

fn vocab(n: usize) -> GgufVocab {
    GgufVocab {
        model: "gpt2",
        pre: "gpt-2".into(),
        pre_source: PreSource::Hash,
        tokens: (0..n).map(|i| format!("t{i}")).collect(),
        token_types: vec![1; n],
        scores: None,
        merges: vec!["t 1".into()],
        special_ids: BTreeMap::from([("bos", 0), ("eos", 1)]),
        add_special: BTreeMap::new(),
        chat_templates: vec![],
        add_space_prefix: None,
        warnings: vec![],
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out_dir = PathBuf::from(args.next().ok_or("usage: bench_export OUT_DIR [TYPES]")?);
    let types: Vec<FileType> = match args.next() {
        Some(list) => list.split(',').map(|t| t.parse::<FileType>()).collect::<Result<_, _>>()?,
        None => ["f32", "f16", "bf16", "q8_0", "q4_0", "q5_1", "q6_k", "q5_k_m", "q4_k_m"]
            .iter()
            .map(|t| t.parse())
            .collect::<Result<_, _>>()?,
    };
    std::fs::create_dir_all(&out_dir)?;

    // Single-threaded quantizer speed on a fixed sample.
    let sample = random(4096 * 4096, 7);
    let bytes: Vec<u8> = sample.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(out_dir.join("sample.f32"), &bytes)?;
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4K, GgmlType::Q5K, GgmlType::Q6K] {
        let mut best = f64::MAX;
        let mut q = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            q = one.install(|| ggml::quantize(ty, &sample))?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        std::fs::write(out_dir.join(format!("sample.{}", ty.name())), &q)?;
        let mb = sample.len() as f64 * 4.0 / 1e6;
        println!(
            "{}",
            serde_json::json!({"kind": "quantize", "type": ty.name(), "threads": 1, "input_mb": mb,
                "seconds": best, "input_mb_per_s": mb / best})
        );
    }

    // Whole-model export.
    let config = ModelConfig::from_json_str(CONFIG, "bench config")?;
    let tensors = tensors(&config);
    let params: usize = tensors.iter().map(|t| t.shape.iter().product::<usize>()).sum();
    let vocab = vocab(config.vocab_size);
    for ft in types {
        let path = out_dir.join(format!("bench.{ft}.gguf"));
        let req = GgufContents {
            config: &config,
            tensors: tensors.clone(),
            vocab: &vocab,
            file_type: ft,
            name: None,
        };
        let t = Instant::now();
        let report = export_gguf(req, &path)?;
        let secs = t.elapsed().as_secs_f64();
        std::fs::remove_file(&path)?;
        println!(
            "{}",
            serde_json::json!({"kind": "export", "type": ft.name(), "params": params, "threads": rayon::current_num_threads(),
                "file_mb": report.file_bytes as f64 / 1e6, "seconds": secs,
                "mb_written_per_s": report.file_bytes as f64 / 1e6 / secs, "bits_per_weight": report.bits_per_weight()})
        );
    }
    Ok(())
}
