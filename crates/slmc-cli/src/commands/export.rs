//! `slmc export DIR --format safetensors -o OUT`.

use burn::prelude::Device;
use slmc_formats::FloatDtype;
use slmc_model::HfModel;
use slmc_model::hf_dir::{SaveOptions, save};
use std::path::PathBuf;

/// Output formats.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// A Hugging Face directory (config.json, model.safetensors, tokenizer files).
    Safetensors,
}

/// Arguments of `slmc export`.
#[derive(clap::Args)]
pub struct Args {
    /// A Hugging Face model directory.
    pub model: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "safetensors")]
    pub format: Format,
    /// Storage dtype: float32, float16 or bfloat16 (default: as loaded).
    #[arg(long)]
    pub dtype: Option<FloatDtype>,
    /// Split weights into shards of at most this many megabytes.
    #[arg(long)]
    pub max_shard_mb: Option<u64>,
    /// Output directory (written atomically).
    #[arg(short, long)]
    pub output: PathBuf,
}

/// Runs the command.
pub fn run(a: Args, device: &Device) -> anyhow::Result<()> {
    let hf = HfModel::load(&a.model, device)?;
    match a.format {
        Format::Safetensors => {
            let options = SaveOptions {
                dtype: Some(a.dtype.unwrap_or(hf.stored_dtype)),
                max_shard_bytes: a.max_shard_mb.map(|m| m * 1_000_000),
                tokenizer_dir: Some(a.model.clone()),
            };
            let files = save(&hf.model, &a.output, &options)?;
            println!("wrote {} ({} files)", a.output.display(), files.len());
        }
    }
    Ok(())
}
