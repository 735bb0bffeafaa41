//! `slmc export DIR --format safetensors -o OUT` and `slmc export DIR --format gguf --type TYPE -o FILE`;
//! with `--adapter ADIR` (a PEFT LoRA/DoRA directory) the adapter is merged into the model first,
//! or converted on its own (`--format gguf-lora`, `--format peft`).

use anyhow::bail;
use burn::prelude::Device;
use slmc_config::FloatDtype;
use slmc_gguf::FileType;
use slmc_model::HfModel;
use slmc_pipeline::export::{ExportOutcome, ExportRequest, ExportSource, export, gguf_type};
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

impl Format {
    /// The format in the recipe's (and the export path's) terms.
    fn recipe_format(self) -> slmc_recipe::ExportFormat {
        use slmc_recipe::ExportFormat as F;
        match self {
            Self::Safetensors => F::Safetensors,
            Self::Gguf => F::Gguf,
            Self::GgufLora => F::GgufLora,
            Self::Peft => F::Peft,
        }
    }
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
    /// Default: bf16 for bf16 checkpoints, else f16 (what convert_hf_to_gguf.py's auto picks;
    /// recipes' `[export]` has the same default). gguf-lora: f32 (default), f16 or bf16.
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
            hf.model = slmc_model::lora::attach(hf.model.clone(), &adapter).map_err(|e| {
                anyhow::anyhow!("adapter {} does not fit {}: {e}", dir.display(), a.model.display())
            })?;
            Some(adapter)
        }
        None if matches!(a.format, Format::GgufLora | Format::Peft) => {
            bail!("--format gguf-lora and peft convert an adapter: give --adapter ADIR")
        }
        None => None,
    };
    let mut req = ExportRequest::new(a.format.recipe_format(), a.output.clone());
    req.tokenizer_dir = Some(a.model.clone());
    req.name =
        a.model.canonicalize().ok().and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    req.dtype = a.dtype;
    req.gguf_type = a.gguf_type;
    req.max_shard_bytes = a.max_shard_mb.map(|m| m * 1_000_000);
    let records = slmc_pipeline::Records::default();
    let src = ExportSource {
        model: &hf.model,
        records: &records,
        stored_dtype: hf.stored_dtype,
        adapter: adapter.as_ref(),
    };
    let out = a.output.display();
    match export(&src, &req)? {
        ExportOutcome::Files(files) => match &adapter {
            Some(ad) if matches!(a.format, Format::Peft) => {
                println!("wrote {out} ({} files, {} adapted modules)", files.len(), ad.modules.len())
            }
            _ => println!("wrote {out} ({} files)", files.len()),
        },
        ExportOutcome::GgufLora(report) => {
            println!(
                "wrote {out} (llama.cpp LoRA adapter, {}, {} tensors, alpha {}, {:.2} MB)",
                req.gguf_type.unwrap_or(FileType::F32),
                report.tensors.len(),
                report.alpha,
                report.file_bytes as f64 / 1e6
            );
            for n in &report.notes {
                println!("note: {n}");
            }
        }
        ExportOutcome::Gguf(report) => {
            print_gguf(&report, gguf_type(&req, &src), &out.to_string(), a.verbose)
        }
    }
    Ok(())
}

/// The summary of a GGUF export: type, size, bits per weight, tensors per ggml type (each
/// tensor with `verbose`), notes.
fn print_gguf(report: &slmc_gguf::ExportReport, file_type: FileType, out: &str, verbose: bool) {
    let mut hist: BTreeMap<&str, usize> = BTreeMap::new();
    for t in &report.tensors {
        *hist.entry(t.ggml_type.name()).or_default() += 1;
        if verbose {
            println!("{:<32} {:<5} {:?} {} bytes", t.name, t.ggml_type.name(), t.ne, t.n_bytes);
        }
    }
    let types: Vec<String> = hist.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
    println!(
        "wrote {out} ({file_type}, {:.2} MB, {:.2} bits/weight; tensors: {})",
        report.file_bytes as f64 / 1e6,
        report.bits_per_weight(),
        types.join(", ")
    );
    for n in &report.notes {
        println!("note: {n}");
    }
}
