//! Instruction rows tokenized with a loss mask: one row per sequence (no packing across rows),
//! padded to `seq-len + 1` tokens, with a flag per token saying whether it is a training target
//! (transformers' `labels = -100` marks the others).
//!
//! Which tokens train: with `train-on = "completions"`, the tokens of the assistant turns of a
//! conversation (located by [`ChatTemplate::assistant_spans`]: the content and what closes the
//! turn, e.g. the end-of-sequence token) or of a prompt/completion row's completion and the
//! end-of-sequence token appended to it; with `train-on = "all"` every token of the row. A token
//! trains when its byte range in the rendered text overlaps one of those spans (so a token that
//! straddles a boundary trains; on the shipped template and byte-level BPE none does); specials
//! the tokenizer inserts (zero-width, e.g. BOS) never train.
//!
//! On disk (`*.rows`): `rows × (seq-len + 1)` little-endian u32, the token id in the low 31 bits
//! and the training flag in bit 31; padding is the pad id, not trained.

use crate::DataError;
use crate::chat_rows::{ChatRow, RowFormat, for_each_chat_row};
use crate::chat_template::ChatTemplate;
use crate::tokens::TokenFile;
use slmc_formats::fsutil::{atomic_write, persist_path, temp_path_for};
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Which tokens of a row are trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainOn {
    /// Assistant turns / completions only.
    Completions,
    /// Every token of the row.
    All,
}

/// What happens to a row longer than `seq-len + 1` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlong {
    /// Keep its first `seq-len + 1` tokens.
    Truncate,
    /// Leave it out.
    Drop,
}

/// How rows become masked sequences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskOptions {
    /// Input tokens per sequence (rows hold `seq_len + 1` tokens).
    pub seq_len: usize,
    /// Which tokens train.
    pub train_on: TrainOn,
    /// Rows that do not fit.
    pub overlong: Overlong,
    /// Padding id.
    pub pad: u32,
    /// End-of-sequence id (appended to completions).
    pub eos: u32,
}

/// Token ids and the byte range of each token in the encoded text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids.
    pub ids: Vec<u32>,
    /// `(start, end)` byte offsets of each token in the text (zero-width for added specials).
    pub offsets: Vec<(usize, usize)>,
}

/// The tokenizer as row masking needs it: `encode(text, add_special_tokens)`.
pub type Encode<'a> = dyn FnMut(&str, bool) -> Result<Encoded, String> + 'a;

/// What happened to the rows of a split.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowStats {
    /// Rows read.
    pub rows: usize,
    /// Rows kept as sequences.
    pub kept: usize,
    /// Kept rows cut to `seq-len + 1` tokens.
    pub truncated: usize,
    /// Rows left out for being too long (`overlong = "drop"`).
    pub dropped_overlong: usize,
    /// Rows left out because no target token trains (after truncation, or no assistant turn).
    pub dropped_empty: usize,
    /// Tokens of the kept rows (without padding).
    pub tokens: u64,
    /// Target tokens that train.
    pub trained_tokens: u64,
}

impl RowStats {
    /// The counts as a JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "rows": self.rows, "kept": self.kept, "truncated": self.truncated,
            "dropped_overlong": self.dropped_overlong, "dropped_empty": self.dropped_empty,
            "tokens": self.tokens, "trained_tokens": self.trained_tokens,
        })
    }

    /// Reads what [`to_json`](Self::to_json) writes.
    pub fn from_json(v: &serde_json::Value) -> Option<Self> {
        let n = |k: &str| v.get(k)?.as_u64();
        Some(Self {
            rows: n("rows")? as usize,
            kept: n("kept")? as usize,
            truncated: n("truncated")? as usize,
            dropped_overlong: n("dropped_overlong")? as usize,
            dropped_empty: n("dropped_empty")? as usize,
            tokens: n("tokens")?,
            trained_tokens: n("trained_tokens")?,
        })
    }
}

/// Marks the tokens whose byte range overlaps a span. Zero-width tokens (specials the
/// tokenizer adds, such as BOS) never train.
fn flags(offsets: &[(usize, usize)], spans: &[Range<usize>]) -> Vec<bool> {
    offsets.iter().map(|&(s, e)| spans.iter().any(|r| s < r.end && e > r.start)).collect()
}

/// The tokens of one row and whether each trains (before fitting to the sequence length).
pub fn mask_row(
    row: &ChatRow,
    template: Option<&ChatTemplate>,
    train_on: TrainOn,
    eos: u32,
    encode: &mut Encode<'_>,
) -> Result<(Vec<u32>, Vec<bool>), String> {
    match row {
        ChatRow::Messages(messages) => {
            let t = template.ok_or(
                "chat rows are rendered with the model's chat template, and its tokenizer_config.json has no `chat_template`",
            )?;
            let (text, spans) = match train_on {
                TrainOn::All => {
                    let text = t.render(messages, false)?;
                    let all = 0..text.len();
                    (text, vec![all])
                }
                TrainOn::Completions => t.assistant_spans(messages)?,
            };
            // As transformers' apply_chat_template(tokenize=True): the template adds the specials.
            let enc = encode(&text, false)?;
            let trained = flags(&enc.offsets, &spans);
            Ok((enc.ids, trained))
        }
        ChatRow::PromptCompletion { prompt, completion } => {
            let text = format!("{prompt}{completion}");
            let enc = encode(&text, true)?;
            let mut trained = match train_on {
                TrainOn::All => vec![true; enc.ids.len()],
                TrainOn::Completions => {
                    flags(&enc.offsets, std::slice::from_ref(&(prompt.len()..text.len())))
                }
            };
            let mut ids = enc.ids;
            ids.push(eos);
            trained.push(true);
            Ok((ids, trained))
        }
    }
}

/// How a row fits a sequence of `seq_len + 1` tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fit {
    /// Kept (`truncated` when cut), padded to `seq_len + 1`: ids and training flags.
    Kept {
        /// Token ids, padded.
        ids: Vec<u32>,
        /// Training flags, false on padding.
        trained: Vec<bool>,
        /// Whether the row was cut.
        truncated: bool,
    },
    /// Too long, and `overlong = "drop"`.
    DroppedOverlong,
    /// No target token trains (token 0 is never a target).
    DroppedEmpty,
}

/// Fits one masked row into a sequence.
pub fn fit(mut ids: Vec<u32>, mut trained: Vec<bool>, o: &MaskOptions) -> Fit {
    let n = o.seq_len + 1;
    let truncated = ids.len() > n;
    if truncated {
        if o.overlong == Overlong::Drop {
            return Fit::DroppedOverlong;
        }
        ids.truncate(n);
        trained.truncate(n);
    }
    if !trained.iter().skip(1).any(|&t| t) {
        return Fit::DroppedEmpty;
    }
    ids.resize(n, o.pad);
    trained.resize(n, false);
    Fit::Kept { ids, trained, truncated }
}

/// Reads, masks and fits every row of `files` into `out` (the `*.rows` layout above, written
/// atomically) and its counts into `out` + `.json`. `progress(rows)` is called every 64 rows.
pub fn build_row_file(
    files: &[(PathBuf, RowFormat)],
    out: &Path,
    template: Option<&ChatTemplate>,
    options: &MaskOptions,
    encode: &mut Encode<'_>,
    progress: &mut dyn FnMut(usize),
) -> Result<RowStats, DataError> {
    let invalid = |reason: String| DataError::Invalid { path: out.into(), line: None, reason };
    let tmp = temp_path_for(out).map_err(|e| invalid(e.to_string()))?;
    let file = std::fs::File::create(&tmp).map_err(|e| DataError::Io { path: out.into(), source: e })?;
    let mut w = std::io::BufWriter::new(file);
    let mut stats = RowStats::default();
    for (path, format) in files {
        let mut line = 0;
        for_each_chat_row(path, *format, &mut |row| {
            line += 1;
            let at = |reason: String| DataError::Invalid { path: path.clone(), line: Some(line), reason };
            let (ids, trained) =
                mask_row(&row, template, options.train_on, options.eos, encode).map_err(at)?;
            stats.rows += 1;
            let real = ids.len().min(options.seq_len + 1);
            match fit(ids, trained, options) {
                Fit::DroppedOverlong => stats.dropped_overlong += 1,
                Fit::DroppedEmpty => stats.dropped_empty += 1,
                Fit::Kept { ids, trained, truncated } => {
                    stats.kept += 1;
                    stats.truncated += truncated as usize;
                    stats.tokens += real as u64;
                    stats.trained_tokens += trained.iter().skip(1).filter(|&&t| t).count() as u64;
                    for (id, t) in ids.iter().zip(&trained) {
                        if *id >= 1 << 31 {
                            return Err(at(format!("token id {id} does not fit the row file's 31 bits")));
                        }
                        let word = id | ((*t as u32) << 31);
                        w.write_all(&word.to_le_bytes())
                            .map_err(|e| DataError::Io { path: out.into(), source: e })?;
                    }
                }
            }
            if stats.rows % 64 == 0 {
                progress(stats.rows);
            }
            Ok(())
        })?;
    }
    progress(stats.rows);
    w.flush().map_err(|e| DataError::Io { path: out.into(), source: e })?;
    drop(w);
    persist_path(tmp, out).map_err(|e| invalid(e.to_string()))?;
    atomic_write(&stats_path(out), (stats.to_json().to_string() + "\n").as_bytes())
        .map_err(|e| invalid(e.to_string()))?;
    Ok(stats)
}

/// Where [`build_row_file`] writes the counts of `rows`.
pub fn stats_path(rows: &Path) -> PathBuf {
    let mut name = rows.as_os_str().to_owned();
    name.push(".json");
    PathBuf::from(name)
}

/// Reads the counts written beside a row file; `None` when missing or unreadable.
pub fn read_stats(rows: &Path) -> Option<RowStats> {
    let text = std::fs::read_to_string(stats_path(rows)).ok()?;
    RowStats::from_json(&serde_json::from_str(&text).ok()?)
}

/// Masked sequences of a `*.rows` file: row `i` is `seq_len + 1` tokens and their flags.
pub struct MaskedRows {
    file: TokenFile,
    seq_len: usize,
    range: Range<usize>,
}

impl MaskedRows {
    /// Every row of a file written by [`build_row_file`] with `seq_len`.
    pub fn open(path: &Path, seq_len: usize) -> Result<Self, DataError> {
        let file = TokenFile::open(path)?;
        if file.len() % (seq_len + 1) != 0 {
            return Err(DataError::Invalid {
                path: path.into(),
                line: None,
                reason: format!("{} tokens are not whole rows of {}", file.len(), seq_len + 1),
            });
        }
        if file.is_empty() {
            return Err(DataError::Invalid {
                path: path.into(),
                line: None,
                reason: "no row has a token to train on (see the dropped-row counts)".into(),
            });
        }
        let n = file.len() / (seq_len + 1);
        Ok(Self { file, seq_len, range: 0..n })
    }

    /// Splits off the last `fraction` of rows (at least one) as a held-out set.
    pub fn split_tail(self, fraction: f64) -> Result<(Self, Self), DataError> {
        let n = self.range.len();
        let held = ((n as f64 * fraction).round() as usize).max(1);
        if held >= n {
            return Err(DataError::Invalid {
                path: self.file.path().into(),
                line: None,
                reason: format!("only {n} rows: too few to hold out an eval split"),
            });
        }
        let cut = self.range.end - held;
        let other = TokenFile::open(self.file.path())?;
        Ok((
            Self { file: self.file, seq_len: self.seq_len, range: self.range.start..cut },
            Self { file: other, seq_len: self.seq_len, range: cut..self.range.end },
        ))
    }

    /// Another handle on the same rows.
    pub fn view(&self) -> Result<Self, DataError> {
        Ok(Self {
            file: TokenFile::open(self.file.path())?,
            seq_len: self.seq_len,
            range: self.range.clone(),
        })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.range.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }

    /// Input tokens per sequence.
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// Row `i`: `seq_len + 1` token ids and whether each trains.
    pub fn get(&self, i: usize) -> (Vec<u32>, Vec<bool>) {
        let n = self.seq_len + 1;
        let words = self.file.read((self.range.start + i) * n, n);
        words.iter().map(|&w| (w & !(1 << 31), w >> 31 == 1)).unzip()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One token per byte; offsets are byte ranges. `add_special_tokens` prepends 1 (BOS).
    fn bytes(text: &str, special: bool) -> Result<Encoded, String> {
        let mut e = Encoded::default();
        if special {
            e.ids.push(1);
            e.offsets.push((0, 0));
        }
        for (i, b) in text.bytes().enumerate() {
            e.ids.push(b as u32);
            e.offsets.push((i, i + 1));
        }
        Ok(e)
    }

    fn options(seq_len: usize, overlong: Overlong) -> MaskOptions {
        MaskOptions { seq_len, train_on: TrainOn::Completions, overlong, pad: 0, eos: 2 }
    }

    #[test]
    fn prompt_completion_trains_the_completion_and_eos() {
        let row = ChatRow::PromptCompletion { prompt: "Q:".into(), completion: "ab".into() };
        let (ids, trained) = mask_row(&row, None, TrainOn::Completions, 2, &mut bytes).unwrap();
        assert_eq!(ids, vec![1, b'Q' as u32, b':' as u32, b'a' as u32, b'b' as u32, 2]);
        assert_eq!(trained, vec![false, false, false, true, true, true]);
        let (_, all) = mask_row(&row, None, TrainOn::All, 2, &mut bytes).unwrap();
        assert_eq!(all, vec![true; 6]);
    }

    #[test]
    fn truncate_and_drop_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("pc.jsonl");
        // Row lengths with BOS + eos: 6, 10, 6 (only prompt fits 5 tokens → empty after cut), 3.
        std::fs::write(
            &src,
            "{\"prompt\":\"Q:\",\"completion\":\"ab\"}\n{\"prompt\":\"Q:\",\"completion\":\"abcdef\"}\n{\"prompt\":\"Long:\",\"completion\":\"z\"}\n{\"prompt\":\"\",\"completion\":\"x\"}\n",
        )
        .unwrap();
        let files = vec![(src, RowFormat::PromptCompletion)];
        let out = dir.path().join("t.rows");
        let s = build_row_file(&files, &out, None, &options(4, Overlong::Truncate), &mut bytes, &mut |_| {})
            .unwrap();
        // Fit 5 tokens: row 1 (6) cut to BOS Q : a b → trains a, b; row 2 cut likewise; row 3
        // cut to BOS L o n g → nothing trains → dropped; row 4 kept whole (BOS x eos).
        assert_eq!(
            s,
            RowStats {
                rows: 4,
                kept: 3,
                truncated: 2,
                dropped_overlong: 0,
                dropped_empty: 1,
                tokens: 13,
                trained_tokens: 6
            }
        );
        assert_eq!(read_stats(&out), Some(s));
        let rows = MaskedRows::open(&out, 4).unwrap();
        assert_eq!(rows.len(), 3);
        let (ids, trained) = rows.get(2);
        assert_eq!(ids, vec![1, b'x' as u32, 2, 0, 0]);
        assert_eq!(trained, vec![false, true, true, false, false]);

        let s =
            build_row_file(&files, &out, None, &options(4, Overlong::Drop), &mut bytes, &mut |_| {}).unwrap();
        assert_eq!(
            s,
            RowStats {
                rows: 4,
                kept: 1,
                truncated: 0,
                dropped_overlong: 3,
                dropped_empty: 0,
                tokens: 3,
                trained_tokens: 2
            }
        );
        assert!(MaskedRows::open(&out, 4).unwrap().split_tail(0.5).is_err(), "one row cannot be split");
    }
}
