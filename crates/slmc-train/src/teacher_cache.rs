//! Offline teacher: the teacher's top-K log-probabilities (at the distillation temperature) for
//! every training sequence a run will draw, computed once and stored compactly (u32 ids + f16
//! log-probs, ~6 bytes per entry) with the run's fingerprint, so training needs no teacher.

use crate::TrainError;
use burn::prelude::*;
use safetensors::Dtype;
use slmc_data::{Order, Sequences};
use slmc_formats::record_file::{RecordFile, RecordTensor, read_bytes, write_records};
use slmc_model::CausalLm;
use slmc_model::kernels::log_softmax;
use std::collections::HashMap;
use std::path::Path;

/// Positions whose logits are made at once while building a cache.
const HEAD_CHUNK: usize = 1024;

/// What a cache keeps: the top `k` entries of the teacher's distribution at temperature `tau`
/// over its first `vocab` logits, computed `batch_size` sequences at a time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopKSpec {
    /// Entries kept per token.
    pub k: usize,
    /// Distillation temperature.
    pub tau: f64,
    /// Vocabulary entries compared.
    pub vocab: usize,
    /// Sequences per teacher forward.
    pub batch_size: usize,
}

/// Cached top-K teacher distributions, per training sequence.
pub struct TopKCache {
    k: usize,
    seq_len: usize,
    slots: HashMap<usize, usize>,
    ids: Vec<u32>,
    logp: Vec<u16>,
}

/// The distinct training sequences a run of `draws` sequences over `n` with `seed` visits (the
/// trainer's data order), sorted.
pub fn sequences_drawn(n: usize, seed: u64, draws: u64) -> Vec<usize> {
    // Each epoch is a permutation: a full epoch or more visits every sequence.
    if draws >= n as u64 {
        return (0..n).collect();
    }
    let mut order = Order::new(n, seed);
    let mut out: Vec<usize> = (0..draws).map(|p| order.at(p)).collect();
    out.sort_unstable();
    out
}

impl TopKCache {
    /// Runs `teacher` over the training sequences `indices` of `data` and keeps, per token, the
    /// top `spec.k` of `log_softmax(logits[..spec.vocab] / spec.tau)`.
    pub fn build(
        teacher: &CausalLm,
        data: &Sequences,
        indices: &[usize],
        spec: TopKSpec,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Self {
        let TopKSpec { k, tau, vocab, batch_size } = spec;
        let t = data.seq_len();
        let device = teacher.device();
        let mut cache = Self { k, seq_len: t, slots: HashMap::new(), ids: Vec::new(), logp: Vec::new() };
        for (done, chunk) in indices.chunks(batch_size.max(1)).enumerate() {
            let flat: Vec<i32> = chunk
                .iter()
                .flat_map(|&i| data.get(i).tokens[..t].iter().map(|&x| x as i32).collect::<Vec<_>>())
                .collect();
            let ids = Tensor::<2, Int>::from_data(TensorData::new(flat, [chunk.len(), t]), &device);
            // The head and the top-K run over chunks of positions: `[B, T, V]` logits never
            // exist whole.
            let hn = teacher.hidden(ids, None);
            let [b, _, d] = hn.dims();
            let flat = hn.reshape([b * t, d]);
            let (mut vals, mut top) = (Vec::with_capacity(b * t * k), Vec::with_capacity(b * t * k));
            for start in (0..b * t).step_by(HEAD_CHUNK) {
                let len = HEAD_CHUNK.min(b * t - start);
                let logits = crate::chunked::head_logits(teacher, flat.clone().narrow(0, start, len));
                let logits = if logits.dims()[1] == vocab { logits } else { logits.narrow(1, 0, vocab) };
                let (v, i) = log_softmax(logits / tau).topk_with_indices(k, 1);
                vals.extend(v.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32"));
                top.extend(i.into_data().convert::<i64>().try_to_vec::<i64>().expect("ids"));
            }
            for (j, &seq) in chunk.iter().enumerate() {
                cache.slots.insert(seq, cache.slots.len());
                let range = j * t * k..(j + 1) * t * k;
                cache.ids.extend(top[range.clone()].iter().map(|&x| x as u32));
                cache.logp.extend(vals[range].iter().map(|&x| half::f16::from_f32(x).to_bits()));
            }
            progress((done + 1) * batch_size.max(1), indices.len());
        }
        cache
    }

    /// Number of cached sequences.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Bytes of cached entries.
    pub fn bytes(&self) -> usize {
        self.ids.len() * 4 + self.logp.len() * 2
    }

    /// The cached `[B, T, K]` ids and log-probabilities of training sequences `indices`.
    pub fn batch(&self, indices: &[usize], device: &Device) -> (Tensor<3, Int>, Tensor<3>) {
        let (t, k) = (self.seq_len, self.k);
        let mut ids = Vec::with_capacity(indices.len() * t * k);
        let mut logp = Vec::with_capacity(indices.len() * t * k);
        for i in indices {
            let slot = *self.slots.get(i).expect("every drawn sequence was cached");
            let r = slot * t * k..(slot + 1) * t * k;
            ids.extend(self.ids[r.clone()].iter().map(|&x| x as i32));
            logp.extend(self.logp[r].iter().map(|&b| half::f16::from_bits(b).to_f32()));
        }
        let shape = [indices.len(), t, k];
        (
            Tensor::from_data(TensorData::new(ids, shape), device),
            Tensor::from_data(TensorData::new(logp, shape), device),
        )
    }

    /// Writes the cache with `fingerprint` (what it was computed from) as a record file, atomically:
    /// `ids` (u32) and `logp` (f16) tensors of `[sequences, seq_len, k]`, and the fingerprint, `k`,
    /// `seq_len` and the cached sequences in order under the metadata key `slmc.teacher_cache`.
    pub fn save(&self, path: &Path, fingerprint: &str) -> Result<(), TrainError> {
        let mut order: Vec<(usize, usize)> = self.slots.iter().map(|(s, i)| (*i, *s)).collect();
        order.sort();
        let meta = serde_json::json!({
            "fingerprint": fingerprint, "k": self.k, "seq_len": self.seq_len,
            "sequences": order.iter().map(|p| p.1).collect::<Vec<_>>(),
        });
        let shape = vec![order.len(), self.seq_len, self.k];
        let tensors = [
            RecordTensor {
                name: "ids".into(),
                dtype: Dtype::U32,
                shape: shape.clone(),
                data: self.ids.iter().flat_map(|x| x.to_le_bytes()).collect(),
            },
            RecordTensor {
                name: "logp".into(),
                dtype: Dtype::F16,
                shape,
                data: self.logp.iter().flat_map(|x| x.to_le_bytes()).collect(),
            },
        ];
        Ok(write_records(path, &tensors, Some((META_KEY, &meta)))?)
    }

    /// Reads a cache written by [`save`](Self::save); `None` when it is missing, was computed from
    /// something else than `fingerprint`, or is not a cache record file (one of an older slmc:
    /// it is rebuilt). A cache that does not hold every sequence of `needed` (the ones the run will
    /// draw), or whose tensors disagree with its header, is an error.
    pub fn load(path: &Path, fingerprint: &str, needed: &[usize]) -> Result<Option<Self>, TrainError> {
        let bad =
            |r: &str| TrainError::Checkpoint { path: path.display().to_string(), reason: r.to_string() };
        let Ok(bytes) = read_bytes(path) else {
            return Ok(None);
        };
        let Ok(file) = RecordFile::parse(path, &bytes, Some(META_KEY)) else {
            return Ok(None);
        };
        let header = &file.meta;
        if header["fingerprint"].as_str() != Some(fingerprint) {
            return Ok(None);
        }
        let k = header["k"].as_u64().ok_or_else(|| bad("no k"))? as usize;
        let seq_len = header["seq_len"].as_u64().ok_or_else(|| bad("no seq_len"))? as usize;
        let seqs: Vec<usize> = header["sequences"]
            .as_array()
            .ok_or_else(|| bad("no sequences"))?
            .iter()
            .filter_map(|x| x.as_u64().map(|x| x as usize))
            .collect();
        let held: std::collections::HashSet<usize> = seqs.iter().copied().collect();
        if let Some(missing) = needed.iter().find(|i| !held.contains(i)) {
            return Err(bad(&format!(
                "holds {} sequences but not sequence {missing}, which the run draws (delete the file to rebuild it)",
                seqs.len()
            )));
        }
        let want = vec![seqs.len(), seq_len, k];
        let (ids_shape, ids) = file.tensor("ids", Dtype::U32, 3)?;
        let (logp_shape, logp) = file.tensor("logp", Dtype::F16, 3)?;
        if ids_shape != want || logp_shape != want {
            return Err(bad("tensor shapes do not match the header"));
        }
        let ids = ids.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let logp = logp.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
        let slots = seqs.into_iter().enumerate().map(|(slot, s)| (s, slot)).collect();
        Ok(Some(Self { k, seq_len, slots, ids, logp }))
    }
}

/// The metadata key of a teacher-cache record file.
const META_KEY: &str = "slmc.teacher_cache";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_missing_a_drawn_sequence_is_a_clear_error() {
        let cache =
            TopKCache { k: 1, seq_len: 2, slots: HashMap::from([(3, 0)]), ids: vec![7, 8], logp: vec![0, 0] };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.cache");
        cache.save(&path, "fp").unwrap();
        assert_eq!(TopKCache::load(&path, "fp", &[3]).unwrap().unwrap().len(), 1);
        assert!(TopKCache::load(&path, "other", &[3]).unwrap().is_none());
        let err = TopKCache::load(&path, "fp", &[3, 5]).err().unwrap().to_string();
        assert!(err.contains("not sequence 5"), "{err}");
    }

    #[test]
    fn drawn_sequences_follow_the_training_order() {
        assert_eq!(sequences_drawn(10, 3, 25), (0..10).collect::<Vec<_>>());
        let some = sequences_drawn(10, 3, 4);
        let mut order = Order::new(10, 3);
        let mut want: Vec<usize> = (0..4).map(|p| order.at(p)).collect();
        want.sort_unstable();
        assert_eq!(some, want);
        assert!(some.windows(2).all(|w| w[0] < w[1]), "distinct, sorted: {some:?}");
    }
}
