//! Instruction rows of `[data]` (chat or prompt-completion), tokenized once into the run
//! directory as masked rows (`data/<split>.rows`), with the counts of what became of them in the
//! log and `metrics.jsonl`.

use crate::PipelineError;
use crate::events::{Event, Observer};
use crate::metrics::MetricsLog;
use slmc_data::masked::{MaskOptions, Overlong, RowStats, TrainOn, build_row_file, read_stats};
use slmc_data::{ChatTemplate, Encoded, RowFormat, SourceOptions, detect_format};
use slmc_model::Tokenizer;
use slmc_recipe::{DataFormat, DataSpec, OverlongSpec, TrainOnSpec};
use std::path::{Path, PathBuf};

/// The row format of a split: `format`, or detected from its files (which must agree).
pub(crate) fn split_format(
    d: &DataSpec,
    files: &[(PathBuf, SourceOptions)],
) -> Result<RowFormat, PipelineError> {
    match d.rows.format {
        DataFormat::Text => Ok(RowFormat::Text),
        DataFormat::Chat => Ok(RowFormat::Chat),
        DataFormat::PromptCompletion => Ok(RowFormat::PromptCompletion),
        DataFormat::Auto => {
            let mut found: Option<(RowFormat, &Path)> = None;
            for (path, _) in files {
                let f = detect_format(path)?;
                match found {
                    Some((g, first)) if g != f => {
                        return Err(PipelineError::Recipe(format!(
                            "{} holds {} rows and {} {} rows; set `format` in [data] or keep one kind per split",
                            first.display(),
                            g.name(),
                            path.display(),
                            f.name()
                        )));
                    }
                    _ => found = Some((f, path)),
                }
            }
            Ok(found.map_or(RowFormat::Text, |f| f.0))
        }
    }
}

/// Everything row masking needs from the model.
pub(crate) struct RowInputs<'a> {
    /// The model's tokenizer.
    pub tokenizer: Option<&'a Tokenizer>,
    /// The directory of its tokenizer files (holding the chat template).
    pub tokenizer_dir: Option<&'a Path>,
    /// `metrics.jsonl`, for the counts of a freshly built split.
    pub metrics: &'a MetricsLog,
}

/// Tokenizes the rows of `files` into `data_dir/<split>.rows` (once; a later run reuses the file
/// and its counts) and reports the counts. Returns the file.
pub(crate) fn prepare_rows(
    data_dir: &Path,
    split: &'static str,
    d: &DataSpec,
    files: &[(PathBuf, SourceOptions)],
    format: RowFormat,
    inputs: &RowInputs<'_>,
    observer: &mut dyn Observer,
) -> Result<PathBuf, PipelineError> {
    let out = data_dir.join(format!("{split}.rows"));
    if out.is_file()
        && let Some(stats) = read_stats(&out)
    {
        observer.event(&Event::Info(summary(split, &stats)));
        return Ok(out);
    }
    let tok = inputs.tokenizer.ok_or_else(|| {
        PipelineError::Recipe(format!("{} rows need the model's tokenizer.json", format.name()))
    })?;
    let eos = *tok
        .eos_ids
        .first()
        .ok_or_else(|| PipelineError::Recipe("the model's tokenizer has no end-of-sequence token".into()))?;
    let template = match (format, inputs.tokenizer_dir) {
        (RowFormat::Chat, Some(dir)) => Some(ChatTemplate::from_dir(dir)?.ok_or_else(|| {
            PipelineError::Recipe(format!(
                "chat rows are rendered with the model's chat template, and {} has none (no `chat_template` in tokenizer_config.json, no chat_template.jinja)",
                dir.display()
            ))
        })?),
        (RowFormat::Chat, None) => {
            return Err(PipelineError::Recipe("chat rows need the model's tokenizer directory".into()));
        }
        _ => None,
    };
    let options = MaskOptions {
        seq_len: d.seq_len,
        train_on: match d.rows.train_on {
            TrainOnSpec::Completions => TrainOn::Completions,
            TrainOnSpec::All => TrainOn::All,
        },
        overlong: match d.rows.overlong {
            OverlongSpec::Truncate => Overlong::Truncate,
            OverlongSpec::Drop => Overlong::Drop,
        },
        pad: tok.pad_id.unwrap_or(eos),
        eos,
    };
    let mut encode = |text: &str, special: bool| -> Result<Encoded, String> {
        let (ids, offsets) = tok.encode_with_offsets(text, special).map_err(|e| e.to_string())?;
        Ok(Encoded { ids, offsets })
    };
    let files: Vec<(PathBuf, RowFormat)> = files.iter().map(|(p, _)| (p.clone(), format)).collect();
    let stats = build_row_file(&files, &out, template.as_ref(), &options, &mut encode, &mut |rows| {
        observer.event(&Event::Tokenizing { split, docs: rows, tokens: 0 })
    })?;
    let details = match stats.to_json() {
        serde_json::Value::Object(m) => m,
        _ => Default::default(),
    };
    let line =
        crate::metrics::MetricLine::Data { split: split.into(), format: format.name().into(), details };
    inputs.metrics.log(&line)?;
    observer.event(&Event::Info(summary(split, &stats)));
    Ok(out)
}

/// `train: 120 rows → 118 sequences (3 truncated; dropped: 1 too long, 1 with nothing to train
/// on); 5,210 of 30,344 tokens train`.
fn summary(split: &str, s: &RowStats) -> String {
    format!(
        "{split}: {} rows → {} sequences ({} truncated; dropped: {} too long, {} with nothing to train on); {} of {} tokens train",
        s.rows, s.kept, s.truncated, s.dropped_overlong, s.dropped_empty, s.trained_tokens, s.tokens
    )
}
