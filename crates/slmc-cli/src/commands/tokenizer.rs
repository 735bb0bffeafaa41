//! `slmc tokenizer train`: a byte-level BPE tokenizer from text files.

use slmc_data::{Record, SourceOptions, expand, for_each_record};
use std::path::PathBuf;

/// Tokenizer commands.
#[derive(clap::Subcommand)]
pub enum TokenizerCmd {
    /// Train a byte-level BPE tokenizer (special tokens <s>=0, </s>=1, <pad>=2; BOS added on encode)
    /// and write tokenizer.json + tokenizer_config.json that transformers loads.
    Train {
        /// Text sources: .txt, .jsonl or .parquet files or globs.
        #[arg(long, required = true, num_args = 1..)]
        data: Vec<String>,
        /// Vocabulary size, including 256 byte symbols and 3 special tokens.
        #[arg(long, default_value_t = 4096)]
        vocab_size: usize,
        /// Minimum pair frequency for a merge.
        #[arg(long, default_value_t = 2)]
        min_frequency: u64,
        /// jsonl field / parquet column holding text.
        #[arg(long, default_value = "text")]
        text_field: String,
        /// Output directory.
        #[arg(short, long)]
        output: PathBuf,
    },
}

/// Runs the command.
pub fn run(cmd: TokenizerCmd) -> anyhow::Result<()> {
    match cmd {
        TokenizerCmd::Train { data, vocab_size, min_frequency, text_field, output } => {
            let options = SourceOptions { text_field, ..Default::default() };
            let mut texts = Vec::new();
            for pattern in &data {
                for path in expand(pattern)? {
                    for_each_record(&path, &options, &mut |r| {
                        if let Record::Text(t) = r {
                            texts.push(t);
                        }
                        Ok(())
                    })?;
                }
            }
            anyhow::ensure!(!texts.is_empty(), "no text records in {}", data.join(", "));
            let chars: usize = texts.iter().map(String::len).sum();
            slmc_model::tokenizer_train::train_bpe(texts.into_iter(), vocab_size, min_frequency, &output)?;
            println!(
                "wrote {} (vocab {vocab_size}, trained on {:.1} MB of text)",
                output.join("tokenizer.json").display(),
                chars as f64 / 1e6
            );
            Ok(())
        }
    }
}
