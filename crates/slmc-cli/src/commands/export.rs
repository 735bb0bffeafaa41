//! `slmc export DIR --format safetensors -o OUT` and `slmc export DIR --format gguf --type TYPE -o FILE`;
//! with `--adapter ADIR` (a PEFT LoRA/DoRA directory) the adapter is merged into the model first,
//! or converted on its own (`--format gguf-lora`, `--format peft`).

use anyhow::bail;
use burn::prelude::Device;
use slmc_config::FloatDtype;
use slmc_gguf::FileType;
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
    /// With --adapter: the adapter as a llama.cpp LoRA GGUF (replaces convert_lora_to_gguf.py);
    /// --type f32 (default), f16 or bf16.
    GgufLora,
    /// With --adapter: the adapter rewritten as a PEFT directory (checked against the model).
    Peft,
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
    /// A PEFT LoRA/DoRA adapter directory (adapter_config.json + adapter_model.safetensors) for the
    /// model: merged into the weights for safetensors/gguf, converted for gguf-lora/peft. An
    /// adapter whose modules or shapes do not fit the model is refused, naming the tensor.
    #[arg(long, value_name = "ADIR")]
    pub adapter: Option<PathBuf>,
    /// gguf: print every tensor's type and size.
    #[arg(long)]
    pub verbose: bool,
    /// Output directory (safetensors, peft) or file (gguf, gguf-lora); written atomically. An
    /// existing output is refused unless --force.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Replace an existing output (only once the new one is complete).
    #[arg(long)]
    pub force: bool,
}

/// Refuses to overwrite an existing output unless `force`, and a file output over a directory;
/// removes the temporary files that killed exports left beside it.
fn check_output(a: &Args) -> anyhow::Result<()> {
    let out = &a.output;
    let writes_file = matches!(a.format, Format::Gguf | Format::GgufLora);
    if let Ok(meta) = std::fs::symlink_metadata(out) {
        if writes_file && meta.is_dir() {
            bail!("{} is a directory; --format gguf writes a file: give a file name", out.display());
        }
        if !a.force {
            let what = if meta.is_dir() { "directory" } else { "file" };
            bail!("{} exists (a {what}); pass --force to replace it, or choose another -o", out.display());
        }
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    slmc_formats::fsutil::sweep_stale_temporaries(parent)?;
    Ok(())
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
    check_output(&a)?;
    let mut hf = HfModel::load(&a.model, device)?;
    let adapter = match &a.adapter {
        Some(dir) => {
            let adapter = slmc_formats::adapter::read_peft(dir)?;
            // Attaching checks that every module and shape fits the model.
            let attached = slmc_model::lora::attach(hf.model.clone(), &adapter).map_err(|e| {
                anyhow::anyhow!("adapter {} does not fit {}: {e}", dir.display(), a.model.display())
            })?;
            hf.model = slmc_model::lora::merge(attached);
            Some(adapter)
        }
        None => None,
    };
    match (a.format, &adapter) {
        (Format::GgufLora | Format::Peft, None) => {
            bail!("--format gguf-lora and peft convert an adapter: give --adapter ADIR")
        }
        (Format::GgufLora, Some(adapter)) => {
            let file_type = a.gguf_type.unwrap_or(FileType::F32);
            let target = slmc_gguf::GgufLoraTarget::from_config(&hf.config);
            let report = slmc_gguf::write_gguf_lora(adapter, &target, file_type, &a.output)?;
            println!(
                "wrote {} (llama.cpp LoRA adapter, {file_type}, {} tensors, alpha {}, {:.2} MB)",
                a.output.display(),
                report.tensors.len(),
                report.alpha,
                report.file_bytes as f64 / 1e6
            );
            for n in &report.notes {
                println!("note: {n}");
            }
            return Ok(());
        }
        (Format::Peft, Some(adapter)) => {
            // For the language model of a multimodal checkpoint: the multimodal class's names.
            let multimodal = hf.config.features.multimodal.then(|| adapter.for_multimodal_base());
            let files = slmc_formats::adapter::write_peft(multimodal.as_ref().unwrap_or(adapter), &a.output)?;
            println!(
                "wrote {} ({} files, {} adapted modules)",
                a.output.display(),
                files.len(),
                adapter.modules.len()
            );
            return Ok(());
        }
        _ => {}
    }
    let request = match a.format {
        Format::GgufLora | Format::Peft => unreachable!("handled above"),
        Format::Safetensors => ExportRequest::Safetensors(SaveOptions {
            dtype: Some(a.dtype.unwrap_or(hf.stored_dtype)),
            max_shard_bytes: a.max_shard_mb.map(|m| m * 1_000_000),
            tokenizer_dir: Some(a.model.clone()),
            tensor_dtype: None,
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
