//! `slmc inspect DIR` (a Hugging Face model directory) and `slmc inspect FILE.gguf`.

use slmc_formats::Checkpoint;
use slmc_gguf::{GgufReader, Value};
use slmc_model::ModelConfig;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Arguments of `slmc inspect`.
#[derive(clap::Args)]
pub struct Args {
    /// A Hugging Face model directory, a GGUF file or a PEFT adapter directory.
    pub path: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn run(a: Args) -> anyhow::Result<()> {
    if is_gguf(&a.path) {
        return run_gguf(&a.path, a.json);
    }
    if super::inspect_adapter::is_adapter_dir(&a.path) {
        return super::inspect_adapter::run(&a.path, a.json);
    }
    let config_path = a.path.join("config.json");
    if !config_path.is_file() {
        anyhow::bail!(
            "{} is not a Hugging Face model directory (no config.json), a PEFT adapter or a .gguf file",
            a.path.display()
        );
    }
    let config = ModelConfig::from_file(&config_path)?;
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
    let sparsity = sparsity_of(&ckpt)?;
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
            "features": config.features.describe(),
            "attention_scale": config.features.attention_scale,
            "sparsity": {
                "overall": sparsity.overall(),
                "by_module": sparsity.by_kind.iter().map(|(k, (z, t))| (k.clone(), serde_json::json!({"zeros": z, "weights": t, "fraction": *z as f64 / (*t).max(1) as f64}))).collect::<serde_json::Map<_, _>>(),
                "pattern": sparsity.pattern,
            },
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
    let features = config.features.describe();
    if !features.is_empty() {
        row("family features", features.join(", "));
    }
    if config.sliding_windows.iter().any(Option::is_some) {
        let w: Vec<String> =
            config.sliding_windows.iter().map(|w| w.map_or("full".into(), |w| w.to_string())).collect();
        row("sliding window", w.join(","));
    }
    // Pruned models: zeros per module kind (dense checkpoints hold next to none).
    if sparsity.overall() >= 0.01 {
        let kinds: Vec<String> = sparsity
            .by_kind
            .iter()
            .map(|(k, (z, t))| format!("{k} {:.1} %", 100.0 * *z as f64 / (*t).max(1) as f64))
            .collect();
        row(
            "sparsity",
            format!(
                "{:.2} % of decoder linear weights are zero{}",
                sparsity.overall() * 100.0,
                sparsity.pattern.as_ref().map_or(String::new(), |p| format!(", every row {p}"))
            ),
        );
        row("  by module", kinds.join(", "));
    }
    Ok(())
}

/// Exact zeros of the decoder linear weights, per module kind, and their N:M pattern.
fn sparsity_of(ckpt: &Checkpoint) -> anyhow::Result<slmc_prune::SparsitySummary> {
    let mut weights = Vec::new();
    for name in ckpt.names().filter(|n| n.starts_with("model.layers.") && n.ends_with("_proj.weight")) {
        let (shape, _, values) = ckpt.read_f32(name)?;
        if let [rows, cols] = shape[..] {
            weights.push((name.to_string(), rows, cols, values));
        }
    }
    Ok(slmc_prune::SparsitySummary::of(weights.iter().map(|(n, r, c, v)| (n.as_str(), *r, *c, v.as_slice()))))
}

fn is_gguf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    path.is_file()
        && std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok()
        && &magic == b"GGUF"
}

/// Metadata, tensor types and sizes of a GGUF file (validated with llama.cpp's rules).
fn run_gguf(path: &Path, json: bool) -> anyhow::Result<()> {
    let r = GgufReader::open(path)?;
    let f = r.file();
    let n_elements: u64 = f.tensors.iter().map(|t| t.info.n_elements()).sum();
    let data_bytes: u64 = f.tensors.iter().map(|t| t.n_bytes).sum();
    let bpw = data_bytes as f64 * 8.0 / n_elements.max(1) as f64;
    let mut hist: BTreeMap<&str, (usize, u64, u64)> = BTreeMap::new();
    for t in &f.tensors {
        let e = hist.entry(t.info.ggml_type.name()).or_default();
        e.0 += 1;
        e.1 += t.info.n_elements();
        e.2 += t.n_bytes;
    }
    if json {
        let meta: serde_json::Map<String, serde_json::Value> = f
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::json!({"type": v.type_name(), "value": v.summary(200)})))
            .collect();
        let tensors: Vec<serde_json::Value> = f
            .tensors
            .iter()
            .map(|t| {
                serde_json::json!({"name": t.info.name, "type": t.info.ggml_type.name(), "ne": t.info.ne,
                "bytes": t.n_bytes, "offset": t.offset})
            })
            .collect();
        let v = serde_json::json!({
            "format": "gguf", "version": f.version, "file_bytes": r.len(), "alignment": f.alignment,
            "data_offset": f.data_offset, "parameters": n_elements, "bits_per_weight": bpw,
            "types": hist.iter().map(|(k, (n, e, b))| (k.to_string(), serde_json::json!({"tensors": n, "elements": e, "bytes": b}))).collect::<serde_json::Map<_, _>>(),
            "metadata": meta, "tensors": tensors,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let row = |k: &str, v: String| println!("{k:<18} {v}");
    row("path", path.display().to_string());
    row("format", format!("GGUF v{}, alignment {}", f.version, f.alignment));
    if let Some(a) = f.get("general.architecture").and_then(Value::as_str) {
        row("architecture", a.to_string());
    }
    row("parameters", format!("{n_elements} ({:.2}M)", n_elements as f64 / 1e6));
    row("size on disk", format!("{:.2} MB ({bpw:.2} bits/weight)", r.len() as f64 / 1e6));
    let types: Vec<String> =
        hist.iter().map(|(k, (n, e, _))| format!("{k} ({n} tensors, {e} values)")).collect();
    row("tensor types", types.join(", "));
    println!();
    println!("metadata ({} keys):", f.metadata.len());
    for (k, v) in &f.metadata {
        println!("  {k:<44} {:<14} {}", v.type_name(), v.summary(80));
    }
    println!();
    println!("tensors ({}):", f.tensors.len());
    for t in &f.tensors {
        println!(
            "  {:<36} {:<6} {:<22} {} bytes",
            t.info.name,
            t.info.ggml_type.name(),
            format!("{:?}", t.info.ne),
            t.n_bytes
        );
    }
    Ok(())
}
