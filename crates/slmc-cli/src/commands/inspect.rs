//! `slmc inspect DIR`.

use anyhow::Context;
use slmc_formats::Checkpoint;
use slmc_model::ModelConfig;
use std::path::PathBuf;

/// Arguments of `slmc inspect`.
#[derive(clap::Args)]
pub struct Args {
    /// A Hugging Face model directory.
    pub path: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn run(a: Args) -> anyhow::Result<()> {
    let config = ModelConfig::from_file(&a.path.join("config.json"))
        .with_context(|| format!("{} is not a Hugging Face model directory", a.path.display()))?;
    let ckpt = Checkpoint::open_dir(&a.path)?;
    let stored: usize = ckpt.names().filter_map(|n| ckpt.meta(n)).map(|m| m.numel()).sum();
    let disk: u64 = std::fs::read_dir(&a.path)?
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum();
    let tokenizer = slmc_model::Tokenizer::from_dir(&a.path, Some(&config)).ok();
    let dtypes: Vec<String> =
        ckpt.dtype_histogram().into_iter().map(|(d, n)| format!("{d} ({n} values)")).collect();
    let rope = format!("{:?}", config.rope.scaling);
    if a.json {
        let v = serde_json::json!({
            "architecture": config.arch.model_type(),
            "parameters": config.num_params(),
            "stored_values": stored,
            "dtypes": ckpt.dtype_histogram(),
            "disk_bytes": disk,
            "vocab_size": config.vocab_size,
            "tokenizer_vocab_size": tokenizer.as_ref().map(|t| t.vocab_size()),
            "context_length": config.max_position_embeddings,
            "layers": config.num_layers,
            "hidden_size": config.hidden_size,
            "intermediate_size": config.intermediate_size,
            "heads": config.num_heads,
            "kv_heads": config.num_kv_heads,
            "head_dim": config.head_dim,
            "tied_embeddings": config.tie_word_embeddings,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let row = |k: &str, v: String| println!("{k:<18} {v}");
    row("path", a.path.display().to_string());
    row("architecture", format!("{} ({})", config.arch.model_type(), config.arch.hf_class()));
    row("parameters", format!("{} ({:.2}M)", config.num_params(), config.num_params() as f64 / 1e6));
    row("dtypes", dtypes.join(", "));
    row("size on disk", format!("{:.2} MB", disk as f64 / 1e6));
    row("layers", config.num_layers.to_string());
    row("hidden / mlp", format!("{} / {}", config.hidden_size, config.intermediate_size));
    row(
        "heads",
        format!(
            "{} query, {} key/value, head_dim {}",
            config.num_heads, config.num_kv_heads, config.head_dim
        ),
    );
    row(
        "vocab",
        match &tokenizer {
            Some(t) => format!("{} (tokenizer: {})", config.vocab_size, t.vocab_size()),
            None => format!("{} (no tokenizer.json)", config.vocab_size),
        },
    );
    row("context length", config.max_position_embeddings.to_string());
    row("rope", format!("theta {} {rope}", config.rope.theta));
    row("tied embeddings", config.tie_word_embeddings.to_string());
    if config.sliding_windows.iter().any(Option::is_some) {
        let w: Vec<String> =
            config.sliding_windows.iter().map(|w| w.map_or("full".into(), |w| w.to_string())).collect();
        row("sliding window", w.join(","));
    }
    Ok(())
}
