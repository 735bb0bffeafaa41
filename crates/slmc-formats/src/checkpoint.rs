//! Hugging Face safetensors checkpoints: `model.safetensors`, or shards listed by
//! `model.safetensors.index.json`.
//!
//! Files are memory-mapped and every header is validated by the `safetensors` crate before any
//! tensor is touched: offsets must tile the data buffer exactly and the buffer must end at EOF,
//! so a truncated file or a header whose offsets lie is an error, never a panic or an
//! out-of-bounds read.

use crate::FormatError;
use crate::fsutil::{atomic_write, persist_path, temp_path_for};
use safetensors::tensor::{Metadata, TensorView};
use slmc_config::FloatDtype;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Name of a single-file checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";
/// Name of the index of a sharded checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
const HEADER_LEN_BYTES: usize = 8;

/// Shape and element type of one stored tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorMeta {
    /// Stored element type (any safetensors type; weights must be F32/F16/BF16).
    pub dtype: safetensors::Dtype,
    /// Shape, outermost first.
    pub shape: Vec<usize>,
}

impl TensorMeta {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

struct Shard {
    path: PathBuf,
    map: memmap2::Mmap,
    data_start: usize,
    metadata: Metadata,
}

/// An opened, validated checkpoint. Tensors are read lazily, one at a time.
pub struct Checkpoint {
    shards: Vec<Shard>,
    /// tensor name → shard index
    names: BTreeMap<String, usize>,
}

impl Checkpoint {
    /// Opens the safetensors weights of a Hugging Face model directory.
    pub fn open_dir(dir: &Path) -> Result<Self, FormatError> {
        let index = dir.join(INDEX_FILE);
        let single = dir.join(SINGLE_FILE);
        if index.is_file() {
            Self::open_index(&index)
        } else if single.is_file() {
            Self::open_files(&[single])
        } else {
            Err(FormatError::NoWeights { dir: dir.to_path_buf() })
        }
    }

    /// Opens a sharded checkpoint from its index file; the union of the shards' tensors must equal
    /// the index's `weight_map`.
    pub fn open_index(index: &Path) -> Result<Self, FormatError> {
        let text = std::fs::read_to_string(index).map_err(|e| FormatError::io(index, e))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| FormatError::Json { path: index.into(), reason: e.to_string() })?;
        let map = json.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| FormatError::Json {
            path: index.into(),
            reason: "missing `weight_map` object".into(),
        })?;
        let dir = index.parent().unwrap_or(Path::new("."));
        let mut files: Vec<String> = Vec::new();
        let mut expected: BTreeMap<String, String> = BTreeMap::new();
        for (name, file) in map {
            let file = file.as_str().ok_or_else(|| FormatError::Json {
                path: index.into(),
                reason: format!("weight_map[`{name}`] is not a file name"),
            })?;
            if file.contains('/') || file.contains('\\') || file.starts_with('.') {
                return Err(FormatError::InconsistentIndex {
                    index: index.into(),
                    reason: format!("shard name `{file}` must be a plain file name in the same directory"),
                });
            }
            if !files.iter().any(|f| f == file) {
                files.push(file.to_string());
            }
            expected.insert(name.clone(), file.to_string());
        }
        files.sort();
        let paths: Vec<PathBuf> = files.iter().map(|f| dir.join(f)).collect();
        let ckpt = Self::open_files(&paths)?;
        for (name, file) in &expected {
            match ckpt.names.get(name) {
                Some(&i) if ckpt.shards[i].path.file_name().and_then(|f| f.to_str()) == Some(file) => {}
                Some(&i) => {
                    return Err(FormatError::InconsistentIndex {
                        index: index.into(),
                        reason: format!(
                            "`{name}` is listed in {file} but stored in {}",
                            ckpt.shards[i].path.display()
                        ),
                    });
                }
                None => {
                    return Err(FormatError::InconsistentIndex {
                        index: index.into(),
                        reason: format!("`{name}` is listed in {file} but no shard holds it"),
                    });
                }
            }
        }
        if let Some(extra) = ckpt.names.keys().find(|n| !expected.contains_key(*n)) {
            return Err(FormatError::InconsistentIndex {
                index: index.into(),
                reason: format!("a shard holds `{extra}`, which the index does not list"),
            });
        }
        Ok(ckpt)
    }

    /// Opens one or more safetensors files as one checkpoint; a tensor name present in two files
    /// is an error.
    pub fn open_files(paths: &[PathBuf]) -> Result<Self, FormatError> {
        let mut shards = Vec::with_capacity(paths.len());
        let mut names = BTreeMap::new();
        for path in paths {
            let shard = open_shard(path)?;
            let idx = shards.len();
            for name in shard.metadata.offset_keys() {
                if names.insert(name.clone(), idx).is_some() {
                    return Err(FormatError::Safetensors {
                        path: path.clone(),
                        reason: format!("tensor `{name}` also appears in another shard"),
                    });
                }
            }
            shards.push(shard);
        }
        Ok(Self { shards, names })
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.keys().map(String::as_str)
    }

    /// Whether the checkpoint holds `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.names.contains_key(name)
    }

    /// Shape and dtype of `name`.
    pub fn meta(&self, name: &str) -> Option<TensorMeta> {
        let shard = &self.shards[*self.names.get(name)?];
        let info = shard.metadata.info(name)?;
        Some(TensorMeta { dtype: info.dtype, shape: info.shape.clone() })
    }

    /// The stored bytes of `name` (little-endian, C order).
    pub fn bytes(&self, name: &str) -> Result<&[u8], FormatError> {
        let idx = *self.names.get(name).ok_or_else(|| FormatError::MissingTensor { name: name.into() })?;
        let shard = &self.shards[idx];
        let info =
            shard.metadata.info(name).ok_or_else(|| FormatError::MissingTensor { name: name.into() })?;
        let (s, e) = info.data_offsets;
        // Validated at open: offsets tile the buffer, which ends exactly at EOF.
        Ok(&shard.map[shard.data_start + s..shard.data_start + e])
    }

    /// Reads a floating-point tensor (F32, F16 or BF16) as f32 values with its shape and stored
    /// dtype.
    pub fn read_f32(&self, name: &str) -> Result<(Vec<usize>, FloatDtype, Vec<f32>), FormatError> {
        let meta = self.meta(name).ok_or_else(|| FormatError::MissingTensor { name: name.into() })?;
        let dtype = FloatDtype::from_safetensors(meta.dtype).ok_or_else(|| {
            FormatError::UnsupportedDtype { name: name.into(), dtype: format!("{:?}", meta.dtype) }
        })?;
        Ok((meta.shape, dtype, dtype.decode(self.bytes(name)?)))
    }

    /// Total size of all tensor data in bytes.
    pub fn data_bytes(&self) -> u64 {
        self.shards.iter().map(|s| s.metadata.data_len() as u64).sum()
    }

    /// The files this checkpoint was read from.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.shards.iter().map(|s| s.path.as_path())
    }

    /// Count of elements per stored dtype, e.g. `{"BF16": 1234}`.
    pub fn dtype_histogram(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for name in self.names.keys() {
            if let Some(m) = self.meta(name) {
                *out.entry(format!("{:?}", m.dtype)).or_insert(0) += m.numel();
            }
        }
        out
    }
}

fn open_shard(path: &Path) -> Result<Shard, FormatError> {
    let file = std::fs::File::open(path).map_err(|e| FormatError::io(path, e))?;
    // SAFETY: the map is read-only and slmc does not modify checkpoint files while they are open;
    // all accesses are bounds-checked against the header validated below.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| FormatError::io(path, e))?;
    let (header_len, metadata) = safetensors::SafeTensors::read_metadata(&map).map_err(|e| {
        FormatError::Safetensors { path: path.into(), reason: describe_safetensors_error(&e, map.len()) }
    })?;
    Ok(Shard { path: path.into(), data_start: HEADER_LEN_BYTES + header_len, map, metadata })
}

fn describe_safetensors_error(e: &safetensors::SafeTensorError, file_len: usize) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::MetadataIncompleteBuffer => {
            format!(
                "the header's offsets do not match the file size ({file_len} bytes): the file is truncated or has trailing bytes"
            )
        }
        E::HeaderTooSmall | E::InvalidHeaderLength => {
            format!(
                "the header length field points past the end of the file ({file_len} bytes): the file is truncated"
            )
        }
        E::InvalidOffset(name) => {
            format!("tensor `{name}` has data offsets that overlap or leave a gap")
        }
        E::TensorInvalidInfo => "a tensor's byte range does not match its shape and dtype".into(),
        E::HeaderTooLarge => format!(
            "the header length field claims more than safetensors' 100 MB header limit ({file_len}-byte file): \
             not a safetensors file, or its first 8 bytes are damaged"
        ),
        other => other.to_string(),
    }
}

/// One tensor handed to [`write_checkpoint`].
pub struct TensorToWrite {
    /// Hugging Face tensor name.
    pub name: String,
    /// Element type of `data`.
    pub dtype: safetensors::Dtype,
    /// Shape, outermost first.
    pub shape: Vec<usize>,
    /// Little-endian bytes, C order.
    pub data: Vec<u8>,
}

impl TensorToWrite {
    /// Encodes f32 values as `dtype`.
    pub fn from_f32(name: impl Into<String>, shape: Vec<usize>, values: &[f32], dtype: FloatDtype) -> Self {
        Self { name: name.into(), dtype: dtype.safetensors(), shape, data: dtype.encode(values) }
    }
}

/// Writes tensors as a Hugging Face checkpoint in `dir`: one `model.safetensors` when they fit in
/// `max_shard_bytes` (or it is `None`), else `model-0000i-of-0000n.safetensors` shards plus
/// `model.safetensors.index.json`, as transformers' `save_pretrained` does. Every file is written
/// atomically; stale weight files of the other layout are removed. Returns the files written.
pub fn write_checkpoint(
    dir: &Path,
    tensors: Vec<TensorToWrite>,
    max_shard_bytes: Option<u64>,
) -> Result<Vec<PathBuf>, FormatError> {
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    for t in &tensors {
        let expected = t.shape.iter().product::<usize>() * t.dtype.bitsize() / 8;
        if expected != t.data.len() {
            return Err(FormatError::BadTensor {
                name: t.name.clone(),
                reason: format!(
                    "shape {:?} needs {expected} bytes of {:?}, got {}",
                    t.shape,
                    t.dtype,
                    t.data.len()
                ),
            });
        }
    }
    let total: u64 = tensors.iter().map(|t| t.data.len() as u64).sum();
    let mut groups: Vec<Vec<TensorToWrite>> = vec![Vec::new()];
    let mut current = 0u64;
    for t in tensors {
        let size = t.data.len() as u64;
        if let Some(limit) = max_shard_bytes
            && current > 0
            && current + size > limit
        {
            groups.push(Vec::new());
            current = 0;
        }
        current += size;
        groups.last_mut().expect("non-empty").push(t);
    }
    std::fs::create_dir_all(dir).map_err(|e| FormatError::io(dir, e))?;
    let n = groups.len();
    let mut written = Vec::new();
    let mut weight_map = BTreeMap::new();
    for (i, group) in groups.iter().enumerate() {
        let file = if n == 1 {
            SINGLE_FILE.to_string()
        } else {
            format!("model-{:05}-of-{:05}.safetensors", i + 1, n)
        };
        let path = dir.join(&file);
        let views = group
            .iter()
            .map(|t| {
                TensorView::new(t.dtype, t.shape.clone(), &t.data)
                    .map(|v| (t.name.clone(), v))
                    .map_err(|e| FormatError::BadTensor { name: t.name.clone(), reason: e.to_string() })
            })
            .collect::<Result<Vec<_>, _>>()?;
        for t in group {
            weight_map.insert(t.name.clone(), file.clone());
        }
        let tmp = temp_path_for(&path)?;
        safetensors::serialize_to_file(views, Some(meta.clone()), &tmp).map_err(|e| match e {
            // A full disk or a failed write is the file system's error, not the format's.
            safetensors::SafeTensorError::IoError(io) => FormatError::io(&path, io),
            other => FormatError::Safetensors { path: path.clone(), reason: other.to_string() },
        })?;
        persist_path(tmp, &path)?;
        written.push(path);
    }
    if n > 1 {
        let index = serde_json::json!({ "metadata": { "total_size": total }, "weight_map": weight_map });
        let text = serde_json::to_string_pretty(&index).expect("json") + "\n";
        let path = dir.join(INDEX_FILE);
        atomic_write(&path, text.as_bytes())?;
        written.push(path);
        remove_if_exists(&dir.join(SINGLE_FILE))?;
    } else {
        remove_if_exists(&dir.join(INDEX_FILE))?;
    }
    Ok(written)
}

fn remove_if_exists(path: &Path) -> Result<(), FormatError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FormatError::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<TensorToWrite> {
        vec![
            TensorToWrite::from_f32("a.weight", vec![2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], FloatDtype::F32),
            TensorToWrite::from_f32("b.weight", vec![4], &[0.5, -0.25, 8.0, 1.0], FloatDtype::BF16),
            TensorToWrite::from_f32("c.bias", vec![3], &[1.0, 2.0, 3.0], FloatDtype::F16),
        ]
    }

    #[test]
    fn single_file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_checkpoint(dir.path(), sample(), None).unwrap();
        assert_eq!(files.len(), 1);
        let ck = Checkpoint::open_dir(dir.path()).unwrap();
        assert_eq!(ck.names().collect::<Vec<_>>(), ["a.weight", "b.weight", "c.bias"]);
        let (shape, dtype, v) = ck.read_f32("b.weight").unwrap();
        assert_eq!((shape, dtype, v), (vec![4], FloatDtype::BF16, vec![0.5, -0.25, 8.0, 1.0]));
        assert!(matches!(ck.read_f32("zzz"), Err(FormatError::MissingTensor { .. })));
    }

    #[test]
    fn sharded_round_trip_with_index() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_checkpoint(dir.path(), sample(), Some(10)).unwrap();
        assert_eq!(files.len(), 4, "3 shards + index");
        assert!(dir.path().join(INDEX_FILE).is_file());
        let ck = Checkpoint::open_dir(dir.path()).unwrap();
        assert_eq!(ck.files().count(), 3);
        assert_eq!(ck.read_f32("a.weight").unwrap().2, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(ck.data_bytes(), 24 + 8 + 6);
    }

    #[test]
    fn index_listing_a_missing_tensor_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        write_checkpoint(dir.path(), sample(), Some(10)).unwrap();
        let idx = dir.path().join(INDEX_FILE);
        let mut json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&idx).unwrap()).unwrap();
        json["weight_map"]["ghost.weight"] = "model-00001-of-00003.safetensors".into();
        std::fs::write(&idx, json.to_string()).unwrap();
        let err = Checkpoint::open_dir(dir.path()).err().unwrap().to_string();
        assert!(err.contains("ghost.weight"), "{err}");
    }

    #[test]
    fn truncated_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        write_checkpoint(dir.path(), sample(), None).unwrap();
        let path = dir.path().join(SINGLE_FILE);
        let bytes = std::fs::read(&path).unwrap();
        for cut in [0, 5, 8, 20, bytes.len() - 1] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let err = Checkpoint::open_dir(dir.path()).err().expect("must fail").to_string();
            assert!(err.contains("not a valid safetensors file"), "cut {cut}: {err}");
        }
    }

    #[test]
    fn lying_offsets_are_an_error() {
        let dir = tempfile::tempdir().unwrap();
        write_checkpoint(dir.path(), sample(), None).unwrap();
        let path = dir.path().join(SINGLE_FILE);
        let bytes = std::fs::read(&path).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header = String::from_utf8(bytes[8..8 + n].to_vec()).unwrap();
        // Claim a.weight is one element bigger than its shape says.
        let forged = header.replacen("\"shape\":[2,3]", "\"shape\":[2,4]", 1);
        assert_ne!(forged, header);
        let mut out = (forged.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(forged.as_bytes());
        out.extend_from_slice(&bytes[8 + n..]);
        std::fs::write(&path, out).unwrap();
        assert!(Checkpoint::open_dir(dir.path()).is_err());
    }

    #[test]
    fn directory_without_weights_names_safetensors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pytorch_model.bin"), b"pickle").unwrap();
        let err = Checkpoint::open_dir(dir.path()).err().unwrap().to_string();
        assert!(err.contains("pickled"), "{err}");
    }
}
