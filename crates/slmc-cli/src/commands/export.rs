//! `slmc export DIR --format safetensors -o OUT` and `slmc export DIR --format gguf --type TYPE -o FILE`.

use anyhow::bail;
use burn::prelude::Device;
use slmc_formats::FloatDtype;
use slmc_formats::gguf::FileType;
use slmc_model::HfModel;
use slmc_model::export::{ExportOutcome, ExportRequest, export};
use slmc_model::gguf_export::GgufOptions;
use slmc_model::hf_dir::SaveOptions;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Output formats.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// A Hugging Face directory (config.json, model.safetensors, tokenizer files).
    Safetensors,
    /// A single GGUF file for llama.cpp (replaces convert_hf_to_gguf.py + llama-quantize).
    Gguf,
}

/// Arguments of `slmc export`.
#[derive(clap::Args)]
pub struct Args {
    /// A Hugging Face model directory.
    pub model: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "safetensors")]
    pub format: Format,
    /// safetensors: storage dtype, float32, float16 or bfloat16 (default: as loaded).
    #[arg(long)]
    pub dtype: Option<FloatDtype>,
    /// safetensors: split weights into shards of at most this many megabytes.
    #[arg(long)]
    pub max_shard_mb: Option<u64>,
    /// gguf: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k, q4_k_s, q4_k_m,
    /// q5_k_s or q5_k_m (per-tensor types as llama-quantize picks them; q4_k/q5_k are "pure").
    /// Default: bf16 for bf16 checkpoints, else f16 (what convert_hf_to_gguf.py's auto picks).
    #[arg(long = "type", value_name = "TYPE")]
    pub gguf_type: Option<FileType>,
    /// gguf: print every tensor's type and size.
    #[arg(long)]
    pub verbose: bool,
    /// Output directory (safetensors) or file (gguf); written atomically.
    #[arg(short, long)]
    pub output: PathBuf,
}

/// Runs the command.
pub fn run(a: Args, device: &Device) -> anyhow::Result<()> {
    match a.format {
        Format::Safetensors if a.gguf_type.is_some() => {
            bail!("--type applies to --format gguf; use --dtype for safetensors")
        }
        Format::Gguf if a.dtype.is_some() || a.max_shard_mb.is_some() => {
            bail!("--dtype/--max-shard-mb apply to --format safetensors; use --type for gguf")
        }
        _ => {}
    }
    let hf = HfModel::load(&a.model, device)?;
    let request = match a.format {
        Format::Safetensors => ExportRequest::Safetensors(SaveOptions {
            dtype: Some(a.dtype.unwrap_or(hf.stored_dtype)),
            max_shard_bytes: a.max_shard_mb.map(|m| m * 1_000_000),
            tokenizer_dir: Some(a.model.clone()),
        }),
        Format::Gguf => ExportRequest::Gguf(GgufOptions {
            file_type: a.gguf_type.unwrap_or(match hf.stored_dtype {
                FloatDtype::BF16 => FileType::BF16,
                _ => FileType::F16,
            }),
            tokenizer_dir: a.model.clone(),
            name: a
                .model
                .canonicalize()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())),
            encoded: Default::default(),
        }),
    };
    match export(&hf.model, &request, &a.output)? {
        ExportOutcome::Safetensors(files) => println!("wrote {} ({} files)", a.output.display(), files.len()),
        ExportOutcome::Gguf(report) => {
            let mut hist: BTreeMap<&str, usize> = BTreeMap::new();
            for t in &report.tensors {
                *hist.entry(t.ggml_type.name()).or_default() += 1;
                if a.verbose {
                    println!("{:<32} {:<5} {:?} {} bytes", t.name, t.ggml_type.name(), t.ne, t.n_bytes);
                }
            }
            let types: Vec<String> = hist.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
            let file_type = match &request {
                ExportRequest::Gguf(o) => o.file_type,
                ExportRequest::Safetensors(_) => unreachable!("gguf outcome"),
            };
            println!(
                "wrote {} ({file_type}, {:.2} MB, {:.2} bits/weight; tensors: {})",
                a.output.display(),
                report.file_bytes as f64 / 1e6,
                report.bits_per_weight(),
                types.join(", ")
            );
            for n in &report.notes {
                println!("note: {n}");
            }
        }
    }
    Ok(())
}
