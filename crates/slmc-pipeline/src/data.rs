//! The recipe's data, tokenized once into the run directory: training sequences and the held-out
//! evaluation stream (packed text), or masked instruction rows (see [`crate::data_rows`]).

use crate::PipelineError;
use crate::data_rows::{RowInputs, prepare_rows, split_format};
use crate::events::{Event, Observer};
use crate::run_dir::RunDir;
use slmc_data::{
    MaskedRows, Packed, RowFormat, Sequences, SourceOptions, TokenFile, build_token_file, expand,
};
use slmc_model::Tokenizer;
use slmc_recipe::{DataSpec, SourceSpec};
use std::path::{Path, PathBuf};

/// Tokenized train and eval sequences.
pub struct Prepared {
    /// Training sequences.
    pub train: Option<Sequences>,
    /// Held-out sequences (from the eval sources, or the tail of the training data).
    pub eval: Sequences,
    /// The eval token file (for perplexity over the raw stream; the rows file for masked rows).
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

/// A tokenized split on disk.
enum SplitFile {
    /// A token stream, packed into sequences.
    Tokens(PathBuf),
    /// Masked rows.
    Rows(PathBuf),
}

impl SplitFile {
    fn open(&self, seq_len: usize) -> Result<Sequences, PipelineError> {
        Ok(match self {
            Self::Tokens(p) => Sequences::Packed(Packed::new(TokenFile::open(p)?, seq_len)?),
            Self::Rows(p) => Sequences::Masked(MaskedRows::open(p, seq_len)?),
        })
    }

    fn path(&self) -> &Path {
        match self {
            Self::Tokens(p) | Self::Rows(p) => p,
        }
    }
}

/// Tokenizes the train and eval files into `data/` of the run directory (once; later runs reuse
/// the token files) and packs them into sequences of `seq-len`; instruction rows become one
/// masked sequence each.
pub(crate) fn prepare_data(
    dir: &RunDir,
    d: &DataSpec,
    train_files: &[(PathBuf, SourceOptions)],
    eval_files: &[(PathBuf, SourceOptions)],
    tokenizer: Option<&Tokenizer>,
    rows: &RowInputs<'_>,
    observer: &mut dyn Observer,
) -> Result<Prepared, PipelineError> {
    let data_dir = dir.data_dir();
    std::fs::create_dir_all(&data_dir).map_err(|e| PipelineError::io(&data_dir, e))?;
    let train_format = split_format(d, train_files)?;
    let eval_format = split_format(d, eval_files)?;
    let train_rows = match train_format {
        RowFormat::Text => None,
        f if !train_files.is_empty() => {
            Some(prepare_rows(&data_dir, "train", d, train_files, f, rows, observer)?)
        }
        _ => None,
    };
    let eval_rows = match eval_format {
        RowFormat::Text => None,
        f if !eval_files.is_empty() => {
            Some(prepare_rows(&data_dir, "eval", d, eval_files, f, rows, observer)?)
        }
        _ => None,
    };
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
    let train = match (train_rows, train_files.is_empty()) {
        (Some(r), _) => Some(SplitFile::Rows(r)),
        (None, false) => Some(SplitFile::Tokens(tokenize("train", train_files)?)),
        (None, true) => None,
    };
    let eval = match (eval_rows, eval_files.is_empty()) {
        (Some(r), _) => Some(SplitFile::Rows(r)),
        (None, false) => Some(SplitFile::Tokens(tokenize("eval", eval_files)?)),
        (None, true) => None,
    };
    let fraction = d.eval_fraction.max(1e-9);
    let (train, eval, eval_path) = match (train, eval) {
        (Some(t), Some(e)) => (Some(t.open(d.seq_len)?), e.open(d.seq_len)?, e.path().to_path_buf()),
        (Some(t), None) => {
            let (train, eval) = match t.open(d.seq_len)? {
                Sequences::Packed(p) => {
                    let (a, b) = p.split_tail(fraction)?;
                    (Sequences::Packed(a), Sequences::Packed(b))
                }
                Sequences::Masked(m) => {
                    let (a, b) = m.split_tail(fraction)?;
                    (Sequences::Masked(a), Sequences::Masked(b))
                }
            };
            (Some(train), eval, t.path().to_path_buf())
        }
        (None, Some(e)) => (None, e.open(d.seq_len)?, e.path().to_path_buf()),
        (None, None) => return Err(PipelineError::Recipe("[data] has neither train nor eval files".into())),
    };
    Ok(Prepared { train, eval, eval_tokens: eval_path, seq_len: d.seq_len })
}

/// Refuses data holding a token id the model cannot embed (pre-tokenized `input_ids` from
/// another tokenizer, or a `vocab_size` smaller than the tokenizer's), naming the split and the
/// largest id, before any stage runs.
pub(crate) fn check_vocab(p: &Prepared, vocab: usize, d: &DataSpec) -> Result<(), PipelineError> {
    let eval_max = match &p.eval {
        Sequences::Packed(_) => {
            let tokens = TokenFile::open(&p.eval_tokens)?;
            tokens.read(0, tokens.len()).into_iter().max()
        }
        masked => largest_id(masked),
    };
    let splits = [("train", p.train.as_ref().and_then(largest_id), &d.train), ("eval", eval_max, &d.eval)];
    for (split, max, specs) in splits {
        if let Some(id) = max.filter(|&id| id as usize >= vocab) {
            let files: Vec<String> = specs.iter().map(|s| s.path.clone()).collect();
            let from = if files.is_empty() { String::new() } else { format!(" (from {})", files.join(", ")) };
            return Err(PipelineError::Recipe(format!(
                "the {split} data{from} holds token id {id}, outside the model's vocabulary of {vocab} \
                 (`vocab_size` in its config): pre-tokenized ids must come from the model's tokenizer, \
                 and vocab_size must cover the tokenizer"
            )));
        }
    }
    Ok(())
}

/// The largest token id of every sequence.
fn largest_id(s: &Sequences) -> Option<u32> {
    (0..s.len()).filter_map(|i| s.get(i).tokens.into_iter().max()).max()
}
