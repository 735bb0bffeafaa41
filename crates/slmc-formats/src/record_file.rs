//! Record files: the exact results a stage hands on (quantization codes, sparsity masks, a
//! block's solved weights, calibration windows), each one safetensors file written atomically,
//! with a JSON document under one metadata key describing its contents. One writer and one
//! reader for every kind, so each kind only says what its tensors are.

use crate::FormatError;
use crate::fsutil::atomic_write;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::Path;

/// One tensor of a record file: name, element type, shape and little-endian bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordTensor {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
    /// Little-endian bytes, `shape.product() × dtype size` of them.
    pub data: Vec<u8>,
}

impl RecordTensor {
    /// An f32 tensor.
    pub fn f32(name: impl Into<String>, shape: Vec<usize>, values: &[f32]) -> Self {
        Self {
            name: name.into(),
            dtype: Dtype::F32,
            shape,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// A u8 tensor.
    pub fn u8(name: impl Into<String>, shape: Vec<usize>, data: Vec<u8>) -> Self {
        Self { name: name.into(), dtype: Dtype::U8, shape, data }
    }
}

/// Writes `tensors` to `path` atomically, with `meta` (when given) as the JSON text of metadata
/// key `key`.
pub fn write_records(
    path: &Path,
    tensors: &[RecordTensor],
    meta: Option<(&str, &serde_json::Value)>,
) -> Result<(), FormatError> {
    let bad = |e: safetensors::SafeTensorError| FormatError::Record {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let views = tensors
        .iter()
        .map(|t| Ok((t.name.clone(), TensorView::new(t.dtype, t.shape.clone(), &t.data).map_err(bad)?)))
        .collect::<Result<Vec<_>, FormatError>>()?;
    let meta = meta.map(|(k, v)| HashMap::from([(k.to_string(), v.to_string())]));
    let bytes = safetensors::serialize(views, meta).map_err(bad)?;
    atomic_write(path, &bytes)
}

/// A record file read back: its tensors and, when asked for, its metadata document.
pub struct RecordFile<'a> {
    path: &'a Path,
    tensors: SafeTensors<'a>,
    /// The JSON document under the metadata key (`Null` when none was asked for).
    pub meta: serde_json::Value,
}

impl<'a> RecordFile<'a> {
    /// Parses `bytes` (the content of `path`); with `key`, the metadata document under it must
    /// be there (else the file is not a record file of that kind).
    pub fn parse(path: &'a Path, bytes: &'a [u8], key: Option<&str>) -> Result<Self, FormatError> {
        let bad = |reason: String| FormatError::Record { path: path.to_path_buf(), reason };
        let (_, header) =
            SafeTensors::read_metadata(bytes).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let meta = match key {
            None => serde_json::Value::Null,
            Some(k) => {
                let text =
                    header.metadata().as_ref().and_then(|m| m.get(k)).ok_or_else(|| {
                        bad(format!("no `{k}` metadata: not an slmc record file of this kind"))
                    })?;
                serde_json::from_str(text).map_err(|e| bad(format!("bad `{k}` metadata: {e}")))?
            }
        };
        let tensors =
            SafeTensors::deserialize(bytes).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        Ok(Self { path, tensors, meta })
    }

    /// The names of every tensor.
    pub fn names(&self) -> Vec<String> {
        self.tensors.names().into_iter().map(str::to_string).collect()
    }

    /// Tensor `name`'s shape and bytes, which must be of `dtype` and `rank` dimensions.
    pub fn tensor(
        &self,
        name: &str,
        dtype: Dtype,
        rank: usize,
    ) -> Result<(Vec<usize>, &'a [u8]), FormatError> {
        let t = self.tensors.tensor(name).map_err(|_| self.error(format!("missing {name}")))?;
        if t.dtype() != dtype || t.shape().len() != rank {
            return Err(self.error(format!(
                "{name} is {:?} {:?}, expected a {rank}-d {dtype:?} tensor",
                t.dtype(),
                t.shape()
            )));
        }
        Ok((t.shape().to_vec(), t.data()))
    }

    /// Tensor `name` as f32 values (an f32 tensor of `rank` dimensions).
    pub fn f32s(&self, name: &str, rank: usize) -> Result<(Vec<usize>, Vec<f32>), FormatError> {
        let (shape, data) = self.tensor(name, Dtype::F32, rank)?;
        Ok((shape, data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()))
    }

    /// An error about this file.
    pub fn error(&self, reason: String) -> FormatError {
        FormatError::Record { path: self.path.to_path_buf(), reason }
    }
}

/// Reads the file at `path` for [`RecordFile::parse`] (its bytes outlive the parse).
pub fn read_bytes(path: &Path) -> Result<Vec<u8>, FormatError> {
    std::fs::read(path).map_err(|e| FormatError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_a_foreign_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.safetensors");
        let meta = serde_json::json!({"a": [2, 3]});
        let tensors = [
            RecordTensor::f32("w", vec![2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
            RecordTensor::u8("m", vec![2], vec![7, 8]),
        ];
        write_records(&path, &tensors, Some(("slmc.test", &meta))).unwrap();
        let bytes = read_bytes(&path).unwrap();
        let r = RecordFile::parse(&path, &bytes, Some("slmc.test")).unwrap();
        assert_eq!(r.meta, meta);
        assert_eq!(r.f32s("w", 2).unwrap(), (vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
        assert_eq!(r.tensor("m", Dtype::U8, 1).unwrap().1, &[7, 8]);
        assert!(r.tensor("m", Dtype::F32, 1).unwrap_err().to_string().contains("expected a 1-d F32"));
        let err = RecordFile::parse(&path, &bytes, Some("slmc.other")).err().unwrap().to_string();
        assert!(err.contains("no `slmc.other` metadata") && err.contains("r.safetensors"), "{err}");
        let err = RecordFile::parse(&path, b"not at all", None).err().unwrap().to_string();
        assert!(err.contains("not a safetensors file"), "{err}");
    }
}
