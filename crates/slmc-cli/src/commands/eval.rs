//! `slmc eval DIR --data FILE`: perplexity with a sliding window.

use crate::progress::bar;
use anyhow::{Context, bail};
use burn::prelude::Device;
use slmc_data::{Record, SourceOptions, read_records};
use slmc_model::HfModel;
use slmc_model::perplexity::{WindowSpec, evaluate};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `slmc eval`.
#[derive(clap::Args)]
#[command(
    after_help = "Text rows (a .txt file, or the text field of .jsonl / .parquet rows) are joined with \
blank lines and tokenized once, with the tokenizer's special tokens (usually one BOS at the start). \
Rows that carry pre-tokenized input_ids are evaluated exactly as given: no BOS added, each row its own \
sequence. Every token after the first of a sequence is scored once; a window of --ctx tokens advances \
by --stride, so each scored token sees at least ctx - stride tokens of context (the Hugging Face \
perplexity protocol)."
)]
pub struct Args {
    /// A Hugging Face model directory.
    pub model: PathBuf,
    /// Evaluation data: .txt, .jsonl or .parquet.
    #[arg(long)]
    pub data: PathBuf,
    /// Window length in tokens (default: the model's context, at most 1024).
    #[arg(long)]
    pub ctx: Option<usize>,
    /// Step between windows (default: half the window).
    #[arg(long)]
    pub stride: Option<usize>,
    /// Windows per forward pass.
    #[arg(long, default_value_t = 4)]
    pub batch_size: usize,
    /// jsonl field / parquet column holding text.
    #[arg(long, default_value = "text")]
    pub text_field: String,
    /// jsonl field / parquet column holding token ids (preferred when present).
    #[arg(long, default_value = "input_ids")]
    pub ids_field: String,
    /// Print `{"mean_nll":…, "ppl":…, "tokens":…}` instead of a sentence.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn run(a: Args, device: &Device) -> anyhow::Result<()> {
    let hf = HfModel::load(&a.model, device)?;
    let options = SourceOptions { text_field: a.text_field.clone(), ids_field: a.ids_field.clone() };
    let records = read_records(&a.data, &options)?;
    let mut texts = Vec::new();
    let mut rows: Vec<Vec<u32>> = Vec::new();
    for r in records {
        match r {
            Record::Text(t) => texts.push(t),
            Record::Tokens(ids) => rows.push(ids),
        }
    }
    if !texts.is_empty() {
        let tok = hf.tokenizer.as_ref().with_context(|| {
            format!("{} has text rows but {} has no tokenizer.json", a.data.display(), a.model.display())
        })?;
        rows.push(tok.encode(&texts.join("\n\n"), true)?);
    }
    let ctx = a.ctx.unwrap_or(hf.config.max_position_embeddings.min(1024));
    let stride = a.stride.unwrap_or((ctx / 2).max(1));
    let spec = WindowSpec { max_length: ctx, stride };
    let scored: usize = rows.iter().map(|r| r.len().saturating_sub(1)).sum();
    if scored == 0 {
        bail!("{}: nothing to score (every sequence has fewer than 2 tokens)", a.data.display());
    }
    let pb = bar(scored as u64, "eval", "tok");
    let start = Instant::now();
    let summary =
        evaluate(&hf.model, &rows, spec, a.batch_size, &mut |done, _| pb.set_position(done as u64))?;
    pb.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    let tps = summary.tokens as f64 / secs;
    if a.json {
        let v = serde_json::json!({"mean_nll": summary.mean_nll(), "ppl": summary.ppl(), "tokens": summary.tokens,
            "ctx": ctx, "stride": stride, "tokens_per_s": tps});
        println!("{v}");
    } else {
        println!(
            "ppl {:.4}  mean NLL {:.6}  over {} tokens ({} sequences, ctx {ctx}, stride {stride})  {:.0} tok/s",
            summary.ppl(),
            summary.mean_nll(),
            summary.tokens,
            rows.len(),
            tps
        );
    }
    Ok(())
}
