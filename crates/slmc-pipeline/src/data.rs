//! The recipe's data, tokenized once into the run directory: training sequences and the held-out
//! evaluation stream.

use crate::PipelineError;
use crate::events::{Event, Observer};
use crate::run_dir::RunDir;
use slmc_data::{Packed, SourceOptions, TokenFile, build_token_file, expand};
use slmc_model::Tokenizer;
use slmc_recipe::{DataSpec, SourceSpec};
use std::path::{Path, PathBuf};

/// Tokenized train and eval sequences.
pub struct Prepared {
    /// Training sequences.
    pub train: Option<Packed>,
    /// Held-out token stream (from the eval sources, or the tail of the training stream).
    pub eval: Packed,
    /// The eval token file (for perplexity over the raw stream).
    pub eval_tokens: PathBuf,
    /// Sequence length.
    pub seq_len: usize,
}

/// The files a list of `[data]` sources expands to, with their column options.
pub(crate) fn files_of(specs: &[SourceSpec]) -> Result<Vec<(PathBuf, SourceOptions)>, PipelineError> {
    let mut out = Vec::new();
    for s in specs {
        let opts = SourceOptions { text_field: s.text_column.clone(), ids_field: s.ids_column.clone() };
        for p in expand(&s.path)? {
            out.push((p, opts.clone()));
        }
    }
    Ok(out)
}

/// The `tokenizer.json` of a `[model] tokenizer` given as a file or a directory.
pub(crate) fn tokenizer_file(p: &Path) -> PathBuf {
    if p.is_dir() { p.join("tokenizer.json") } else { p.to_path_buf() }
}

/// The directory holding a `[model] tokenizer` given as a file or a directory.
pub(crate) fn tokenizer_dir_of(p: &Path) -> PathBuf {
    if p.is_dir() {
        p.to_path_buf()
    } else {
        p.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    }
}

/// Tokenizes the train and eval files into `data/` of the run directory (once; later runs reuse
/// the token files) and packs them into sequences of `seq-len`.
pub(crate) fn prepare_data(
    dir: &RunDir,
    d: &DataSpec,
    train_files: &[(PathBuf, SourceOptions)],
    eval_files: &[(PathBuf, SourceOptions)],
    tokenizer: Option<&Tokenizer>,
    observer: &mut dyn Observer,
) -> Result<Prepared, PipelineError> {
    let data_dir = dir.data_dir();
    std::fs::create_dir_all(&data_dir).map_err(|e| PipelineError::io(&data_dir, e))?;
    let eos = tokenizer.and_then(|t| t.eos_ids.first().copied());
    let mut tokenize =
        |split: &'static str, files: &[(PathBuf, SourceOptions)]| -> Result<PathBuf, PipelineError> {
            let out = data_dir.join(format!("{split}.tokens"));
            if out.is_file() {
                return Ok(out);
            }
            let eos = eos.ok_or_else(|| {
                PipelineError::Recipe("the model has no tokenizer with an end-of-sequence token".into())
            })?;
            let mut encode = |text: &str| -> Result<Vec<u32>, String> {
                let tok = tokenizer.ok_or("text data needs a tokenizer.json next to the model")?;
                tok.encode(text, true).map_err(|e| e.to_string())
            };
            build_token_file(files, &out, eos, &mut encode, &mut |docs, tokens| {
                observer.event(&Event::Tokenizing { split, docs, tokens })
            })?;
            Ok(out)
        };
    let train_tokens = if train_files.is_empty() { None } else { Some(tokenize("train", train_files)?) };
    let eval_tokens = if eval_files.is_empty() { None } else { Some(tokenize("eval", eval_files)?) };
    let (train, eval, eval_path) = match (train_tokens, eval_tokens) {
        (Some(t), Some(e)) => (
            Some(Packed::new(TokenFile::open(&t)?, d.seq_len)?),
            Packed::new(TokenFile::open(&e)?, d.seq_len)?,
            e,
        ),
        (Some(t), None) => {
            let (train, eval) =
                Packed::new(TokenFile::open(&t)?, d.seq_len)?.split_tail(d.eval_fraction.max(1e-9))?;
            (Some(train), eval, t)
        }
        (None, Some(e)) => (None, Packed::new(TokenFile::open(&e)?, d.seq_len)?, e),
        (None, None) => return Err(PipelineError::Recipe("[data] has neither train nor eval files".into())),
    };
    Ok(Prepared { train, eval, eval_tokens: eval_path, seq_len: d.seq_len })
}
