//! Writing GGUF v3 files.
//!
//! The writer enforces at insertion time every rule llama.cpp's loader checks (see
//! `docs/formats.md` §1.4): no duplicate keys or tensor names, no empty or nested arrays, tensor names
//! under 64 bytes, `general.alignment` exactly UINT32 and a power of two. Tensor data is then
//! streamed in tensor-info order with offsets that are exactly cumulative and every tensor
//! (the last one included) zero-padded to the alignment, so huge models never have to be held
//! in memory twice and the offsets can never disagree with the data.

use super::tensor_info::align_up;
use super::value::{Array, Value, ValueType};
use super::{DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION, TensorInfo};
use crate::GgufError;
use slmc_formats::fsutil::{persist_path, temp_path_for};
use std::borrow::Cow;
use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

/// A GGUF file being assembled: metadata and tensor infos first, data streamed by [`GgufWriter::write`].
#[derive(Debug, Clone, Default)]
pub struct GgufWriter {
    kvs: Vec<(String, Value)>,
    keys: HashSet<String>,
    tensors: Vec<TensorInfo>,
    names: HashSet<String>,
    alignment: u64,
}

fn bad(reason: impl Into<String>) -> GgufError {
    GgufError::GgufWrite { reason: reason.into() }
}

impl GgufWriter {
    /// An empty file with the default 32-byte alignment.
    pub fn new() -> Self {
        Self { alignment: DEFAULT_ALIGNMENT, ..Self::default() }
    }

    /// Adds a metadata key. Keys must be unique, non-empty ASCII; arrays must be non-empty
    /// (gguf-py refuses empty ones); `general.alignment` must be a UINT32 power of two.
    pub fn add(&mut self, key: &str, value: impl Into<Value>) -> Result<(), GgufError> {
        let value = value.into();
        if key.is_empty() || !key.is_ascii() || key.len() > 65535 {
            return Err(bad(format!("invalid metadata key {key:?}: must be 1..=65535 ASCII bytes")));
        }
        if self.keys.contains(key) {
            return Err(bad(format!("duplicate metadata key `{key}`")));
        }
        if let Value::Array(a) = &value
            && a.is_empty()
        {
            return Err(bad(format!(
                "metadata key `{key}` is an empty array (gguf-py cannot read those back)"
            )));
        }
        if key == "general.alignment" {
            match value {
                Value::U32(a) if a.is_power_of_two() => self.alignment = u64::from(a),
                _ => return Err(bad("general.alignment must be a UINT32 power of two")),
            }
        }
        self.keys.insert(key.to_string());
        self.kvs.push((key.to_string(), value));
        Ok(())
    }

    /// Adds a tensor-info record; data is supplied later, in the same order, by [`GgufWriter::write`].
    pub fn add_tensor(&mut self, info: TensorInfo) -> Result<(), GgufError> {
        info.check().map_err(bad)?;
        if !self.names.insert(info.name.clone()) {
            return Err(bad(format!("duplicate tensor name `{}`", info.name)));
        }
        self.tensors.push(info);
        Ok(())
    }

    /// The metadata added so far, in order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.kvs
    }

    /// The tensors added so far, in order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// Header, metadata and tensor infos (everything before the alignment padding).
    fn header(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&GGUF_MAGIC);
        out.extend_from_slice(&GGUF_VERSION.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.kvs.len() as u64).to_le_bytes());
        for (k, v) in &self.kvs {
            put_str(&mut out, k);
            out.extend_from_slice(&(v.value_type() as u32).to_le_bytes());
            put_value(&mut out, v);
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            put_str(&mut out, &t.name);
            out.extend_from_slice(&(t.ne.len() as u32).to_le_bytes());
            for d in &t.ne {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.ggml_type.id().to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offset += align_up(t.n_bytes(), self.alignment).expect("checked sizes");
        }
        out
    }

    /// Total file size the writer will produce.
    pub fn file_size(&self) -> u64 {
        let data_start = align_up(self.header().len() as u64, self.alignment).expect("small header");
        data_start
            + self
                .tensors
                .iter()
                .map(|t| align_up(t.n_bytes(), self.alignment).expect("checked"))
                .sum::<u64>()
    }

    /// Writes the file to `w`. `data(i, info)` must return exactly `info.n_bytes()` bytes for
    /// tensor `i`; it is called once per tensor, in order. Returns the bytes written.
    pub fn write<'d, W, F>(&self, w: &mut W, mut data: F) -> Result<u64, GgufError>
    where
        W: Write,
        F: FnMut(usize, &TensorInfo) -> Result<Cow<'d, [u8]>, GgufError>,
    {
        let io = |e: std::io::Error| bad(format!("write failed: {e}"));
        let header = self.header();
        let mut written = header.len() as u64;
        w.write_all(&header).map_err(io)?;
        let zeros = vec![0u8; self.alignment as usize];
        let pad = |n: u64| (align_up(n, self.alignment).expect("small") - n) as usize;
        if !self.tensors.is_empty() {
            let p = pad(written);
            w.write_all(&zeros[..p]).map_err(io)?;
            written += p as u64;
        }
        for (i, t) in self.tensors.iter().enumerate() {
            let bytes = data(i, t)?;
            if bytes.len() as u64 != t.n_bytes() {
                return Err(bad(format!(
                    "tensor `{}` ({} {:?}) needs {} bytes of data, got {}",
                    t.name,
                    t.ggml_type,
                    t.ne,
                    t.n_bytes(),
                    bytes.len()
                )));
            }
            w.write_all(&bytes).map_err(io)?;
            let p = pad(bytes.len() as u64);
            w.write_all(&zeros[..p]).map_err(io)?;
            written += bytes.len() as u64 + p as u64;
        }
        Ok(written)
    }

    /// Writes the file to `path` atomically (temporary file in the same directory, synced, then
    /// renamed): a failure, including one inside `data`, leaves no partial file behind.
    pub fn write_file<'d, F>(&self, path: &Path, data: F) -> Result<u64, GgufError>
    where
        F: FnMut(usize, &TensorInfo) -> Result<Cow<'d, [u8]>, GgufError>,
    {
        let tmp = temp_path_for(path)?;
        let file = std::fs::File::create(&tmp).map_err(|e| GgufError::io(path, e))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        let n = self.write(&mut w, data)?;
        let file = w.into_inner().map_err(|e| GgufError::io(path, e.into_error()))?;
        file.sync_all().map_err(|e| GgufError::io(path, e))?;
        drop(file);
        persist_path(tmp, path)?;
        Ok(n)
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::String(s) => put_str(out, s),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Array(a) => put_array(out, a),
    }
}

fn put_array(out: &mut Vec<u8>, a: &Array) {
    debug_assert_ne!(a.elem_type(), ValueType::Array);
    out.extend_from_slice(&(a.elem_type() as u32).to_le_bytes());
    out.extend_from_slice(&(a.len() as u64).to_le_bytes());
    match a {
        Array::U8(v) => out.extend_from_slice(v),
        Array::I8(v) => out.extend(v.iter().map(|x| *x as u8)),
        Array::U16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Array::I16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Array::U32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Array::I32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Array::F32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Array::Bool(v) => out.extend(v.iter().map(|x| u8::from(*x))),
        Array::String(v) => v.iter().for_each(|s| put_str(out, s)),
        Array::U64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Array::I64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Array::F64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
    }
}
