//! Token streams on disk: sources are tokenized once into a flat file of little-endian u32 ids
//! (documents separated by EOS), memory-mapped for training, so corpora larger than memory train
//! fine. Sequences are packed from the stream, shuffled by seed, split, and sampled.

use crate::DataError;
use crate::source::{Record, SourceOptions, for_each_record};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use slmc_formats::fsutil::{persist_path, temp_path_for};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Expands a path that may contain glob characters into the files it names, sorted. A plain path
/// that does not exist is an error.
pub fn expand(pattern: &str) -> Result<Vec<PathBuf>, DataError> {
    let invalid = |reason: String| DataError::Invalid { path: pattern.into(), line: None, reason };
    if !pattern.contains(['*', '?', '[']) {
        let p = PathBuf::from(pattern);
        if !p.is_file() {
            return Err(DataError::Io {
                path: p,
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        return Ok(vec![p]);
    }
    let mut out: Vec<PathBuf> = glob::glob(pattern)
        .map_err(|e| invalid(format!("bad glob: {e}")))?
        .filter_map(Result::ok)
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    if out.is_empty() {
        return Err(invalid("the glob matches no file".into()));
    }
    Ok(out)
}

/// Tokenizes every record of `files` into `out` (u32 LE ids, each document followed by `eos`).
/// Text goes through `encode`; pre-tokenized rows are copied as given. `progress(docs, tokens)`
/// is called every 64 documents. Written atomically. Returns the number of tokens.
pub fn build_token_file(
    files: &[(PathBuf, SourceOptions)],
    out: &Path,
    eos: u32,
    encode: &mut dyn FnMut(&str) -> Result<Vec<u32>, String>,
    progress: &mut dyn FnMut(usize, u64),
) -> Result<u64, DataError> {
    let tmp = temp_path_for(out).map_err(|e| DataError::Invalid {
        path: out.into(),
        line: None,
        reason: e.to_string(),
    })?;
    let file = std::fs::File::create(&tmp).map_err(|e| DataError::Io { path: out.into(), source: e })?;
    let mut w = std::io::BufWriter::new(file);
    let (mut docs, mut tokens) = (0usize, 0u64);
    for (path, options) in files {
        for_each_record(path, options, &mut |r| {
            let ids = match r {
                Record::Tokens(ids) => ids,
                Record::Text(t) => encode(&t).map_err(|reason| DataError::Invalid {
                    path: path.clone(),
                    line: Some(docs + 1),
                    reason,
                })?,
            };
            for id in ids.iter().chain(std::iter::once(&eos)) {
                w.write_all(&id.to_le_bytes()).map_err(|e| DataError::Io { path: out.into(), source: e })?;
            }
            tokens += ids.len() as u64 + 1;
            docs += 1;
            if docs % 64 == 0 {
                progress(docs, tokens);
            }
            Ok(())
        })?;
    }
    progress(docs, tokens);
    w.flush().map_err(|e| DataError::Io { path: out.into(), source: e })?;
    drop(w);
    persist_path(tmp, out).map_err(|e| DataError::Invalid {
        path: out.into(),
        line: None,
        reason: e.to_string(),
    })?;
    Ok(tokens)
}

/// A memory-mapped token file.
pub struct TokenFile {
    map: memmap2::Mmap,
    path: PathBuf,
}

impl TokenFile {
    /// Opens a file written by [`build_token_file`].
    pub fn open(path: &Path) -> Result<Self, DataError> {
        let file = std::fs::File::open(path).map_err(|e| DataError::Io { path: path.into(), source: e })?;
        // SAFETY: read-only map of a file slmc wrote and does not modify while it is open.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| DataError::Io { path: path.into(), source: e })?;
        if map.len() % 4 != 0 {
            return Err(DataError::Invalid {
                path: path.into(),
                line: None,
                reason: "token file length is not a multiple of 4".into(),
            });
        }
        Ok(Self { map, path: path.into() })
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.map.len() / 4
    }

    /// Whether the file holds no tokens.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies tokens `start..start + n`.
    pub fn read(&self, start: usize, n: usize) -> Vec<u32> {
        self.map[start * 4..(start + n) * 4]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Fixed-length training sequences packed from a token stream: sequence `i` is tokens
/// `i·L .. i·L + L + 1` (L inputs and their L next-token targets; consecutive sequences share one
/// token so every token is a target exactly once).
pub struct Packed {
    tokens: TokenFile,
    seq_len: usize,
    /// Sequence indices of this split.
    range: std::ops::Range<usize>,
}

impl Packed {
    /// All sequences of `tokens`.
    pub fn new(tokens: TokenFile, seq_len: usize) -> Result<Self, DataError> {
        let n = tokens.len().saturating_sub(1) / seq_len;
        if n == 0 {
            return Err(DataError::Invalid {
                path: tokens.path().into(),
                line: None,
                reason: format!("{} tokens do not fill one sequence of {seq_len}+1", tokens.len()),
            });
        }
        Ok(Self { tokens, seq_len, range: 0..n })
    }

    /// Splits off the last `fraction` of sequences (at least one) as a held-out set.
    pub fn split_tail(self, fraction: f64) -> Result<(Packed, Packed), DataError> {
        let n = self.range.len();
        let held = ((n as f64 * fraction).round() as usize).max(1);
        if held >= n {
            return Err(DataError::Invalid {
                path: self.tokens.path().into(),
                line: None,
                reason: format!("only {n} sequences: too few to hold out an eval split"),
            });
        }
        let tokens = TokenFile::open(self.tokens.path())?;
        let cut = self.range.start + n - held;
        Ok((
            Packed { tokens: self.tokens, seq_len: self.seq_len, range: self.range.start..cut },
            Packed { tokens, seq_len: self.seq_len, range: cut..self.range.end },
        ))
    }

    /// Number of sequences.
    pub fn len(&self) -> usize {
        self.range.len()
    }

    /// Another handle on the same sequences (the token file is mapped again).
    pub fn view(&self) -> Result<Packed, DataError> {
        Ok(Packed {
            tokens: TokenFile::open(self.tokens.path())?,
            seq_len: self.seq_len,
            range: self.range.clone(),
        })
    }

    /// The token positions this split covers in its token file.
    pub fn token_range(&self) -> std::ops::Range<usize> {
        self.range.start * self.seq_len..(self.range.end * self.seq_len + 1).min(self.tokens.len())
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }

    /// Tokens per sequence (inputs).
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// Sequence `i` of this split: `seq_len + 1` tokens.
    pub fn get(&self, i: usize) -> Vec<u32> {
        self.tokens.read((self.range.start + i) * self.seq_len, self.seq_len + 1)
    }
}

/// A deterministic, resumable order over `n` sequences: each epoch is a fresh permutation drawn
/// from `(seed, epoch)`, so position `p` always maps to the same sequence.
pub struct Order {
    n: usize,
    seed: u64,
    epoch: u64,
    perm: Vec<u32>,
}

impl Order {
    /// The order for `n` sequences.
    pub fn new(n: usize, seed: u64) -> Self {
        let mut o = Self { n, seed, epoch: u64::MAX, perm: Vec::new() };
        o.load_epoch(0);
        o
    }

    fn load_epoch(&mut self, epoch: u64) {
        if self.epoch == epoch {
            return;
        }
        let mut rng = StdRng::seed_from_u64(self.seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        self.perm = (0..self.n as u32).collect();
        self.perm.shuffle(&mut rng);
        self.epoch = epoch;
    }

    /// The sequence at global position `p` (epoch `p / n`).
    pub fn at(&mut self, p: u64) -> usize {
        self.load_epoch(p / self.n as u64);
        self.perm[(p % self.n as u64) as usize] as usize
    }
}

/// `n` calibration samples of `seq_len` tokens at seeded random offsets inside the tokens of
/// `split` (the GPTQ/SparseGPT protocol: whole windows of real tokens, never padded).
pub fn calibration_samples(
    split: &Packed,
    n: usize,
    seq_len: usize,
    seed: u64,
) -> Result<Vec<Vec<u32>>, DataError> {
    let range = split.token_range();
    if range.len() <= seq_len {
        return Err(DataError::Invalid {
            path: split.tokens.path().into(),
            line: None,
            reason: format!("{} tokens: too few for calibration samples of {seq_len}", range.len()),
        });
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let hi = range.end - seq_len;
    Ok((0..n)
        .map(|_| split.tokens.read(rand::RngExt::random_range(&mut rng, range.start..hi), seq_len))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_ids(dir: &Path, docs: &[&[u32]]) -> PathBuf {
        let src = dir.join("d.jsonl");
        let text: String = docs.iter().map(|d| format!("{{\"input_ids\": {:?}}}\n", d)).collect();
        std::fs::write(&src, text).unwrap();
        let out = dir.join("d.tokens");
        let n = build_token_file(
            &[(src, SourceOptions::default())],
            &out,
            99,
            &mut |_| Ok(vec![]),
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(n as usize, docs.iter().map(|d| d.len() + 1).sum::<usize>());
        out
    }

    #[test]
    fn packing_makes_every_token_a_target_once() {
        let dir = tempfile::tempdir().unwrap();
        let out = write_ids(dir.path(), &[&[1, 2, 3, 4], &[5, 6, 7]]);
        // stream: 1 2 3 4 99 5 6 7 99 (9 tokens) → (9-1)/4 = 2 sequences of 4+1.
        let p = Packed::new(TokenFile::open(&out).unwrap(), 4).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p.get(0), vec![1, 2, 3, 4, 99]);
        assert_eq!(p.get(1), vec![99, 5, 6, 7, 99]);
    }

    #[test]
    fn split_and_order_are_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let doc: Vec<u32> = (0..200).collect();
        let out = write_ids(dir.path(), &[&doc]);
        let (train, eval) = Packed::new(TokenFile::open(&out).unwrap(), 10).unwrap().split_tail(0.1).unwrap();
        assert_eq!((train.len(), eval.len()), (18, 2));
        assert_eq!(eval.get(0)[0], 180);
        let (mut a, mut b) = (Order::new(18, 7), Order::new(18, 7));
        let first: Vec<usize> = (0..36).map(|p| a.at(p)).collect();
        let again: Vec<usize> = (0..36).map(|p| b.at(p)).collect();
        assert_eq!(first, again);
        let mut e0 = first[..18].to_vec();
        e0.sort();
        assert_eq!(e0, (0..18).collect::<Vec<_>>(), "each epoch is a permutation");
        assert_ne!(first[..18], first[18..], "epochs differ");
        // Resuming at a position gives the same sequence.
        assert_eq!(Order::new(18, 7).at(25), first[25]);
    }

    #[test]
    fn calibration_samples_are_seeded_windows() {
        let dir = tempfile::tempdir().unwrap();
        let doc: Vec<u32> = (0..500).collect();
        let out = write_ids(dir.path(), &[&doc]);
        let (train, held) = Packed::new(TokenFile::open(&out).unwrap(), 10).unwrap().split_tail(0.5).unwrap();
        let s = calibration_samples(&train, 40, 16, 0).unwrap();
        assert_eq!(s, calibration_samples(&train, 40, 16, 0).unwrap());
        assert!(s.iter().all(|w| w.len() == 16 && w.windows(2).all(|p| p[1] == p[0] + 1 || p[1] == 99)));
        // Windows stay inside their split.
        let end = train.token_range().end as u32;
        assert!(s.iter().flatten().all(|&t| t < end || t == 99), "{end}");
        assert!(calibration_samples(&held, 1, 300, 0).is_err());
    }
}
