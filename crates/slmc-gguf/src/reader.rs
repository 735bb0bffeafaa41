//! Reading GGUF files (v2 and v3, little-endian).
//!
//! Every length, count and offset is checked against the bytes actually present before anything
//! is allocated or indexed, so a truncated or hostile file is a one-line error, never a panic or
//! a huge allocation (a count is only trusted once `count × smallest encoding` fits in the rest
//! of the file). The checks are those of llama.cpp's `gguf.cpp`: magic, version, known value and
//! tensor types, no nested arrays, no duplicate keys or tensor names, names under 64 bytes, at
//! most 4 dimensions without overflow, whole blocks per row, `general.alignment` a UINT32 power of
//! two, offsets exactly cumulative in tensor-info order, and all data inside the file.

use super::tensor_info::{MAX_DIMS, align_up};
use super::value::{Array, Value, ValueType};
use super::{DEFAULT_ALIGNMENT, GGUF_MAGIC, TensorInfo};
use crate::GgufError;
use crate::ggml::GgmlType;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// gguf.cpp's cap on one string's length and on one array's element count.
const MAX_STRING_OR_ARRAY: u64 = 1 << 30;

/// A tensor of a parsed file: its record, where its data lives, and how big it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorEntry {
    /// Name, shape and type.
    pub info: TensorInfo,
    /// Offset of the data relative to the start of the data section.
    pub offset: u64,
    /// Bytes of data.
    pub n_bytes: u64,
}

/// The parsed structure of a GGUF file (everything except the tensor data itself).
#[derive(Debug, Clone, PartialEq)]
pub struct GgufFile {
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata in file order.
    pub metadata: Vec<(String, Value)>,
    /// Tensors in file order.
    pub tensors: Vec<TensorEntry>,
    /// Data alignment (32 unless `general.alignment` says otherwise).
    pub alignment: u64,
    /// Absolute file offset of the data section.
    pub data_offset: u64,
}

/// Why a byte string is not a valid GGUF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset where the problem was found.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
}

impl ParseError {
    fn into_format_error(self, source: impl Into<PathBuf>) -> GgufError {
        GgufError::InvalidGguf { path: source.into(), offset: self.offset, reason: self.reason }
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn err<T>(&self, reason: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError { offset: self.pos as u64, reason: reason.into() })
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ParseError> {
        if n > self.remaining() {
            return self.err(format!("file ends inside {what} (needs {n} bytes, {} left)", self.remaining()));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], ParseError> {
        Ok(self.take(N, what)?.try_into().expect("N bytes"))
    }

    fn u32(&mut self, what: &str) -> Result<u32, ParseError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, ParseError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count that is only trusted if `count × min_size` bytes are still available.
    fn count(&mut self, what: &str, min_size: usize) -> Result<usize, ParseError> {
        let start = self.pos;
        let n = self.u64(what)?;
        let fits = n.checked_mul(min_size as u64).is_some_and(|b| b <= self.remaining() as u64);
        if !fits {
            self.pos = start;
            return self.err(format!("{what} {n} cannot fit in the {} bytes left", self.remaining() - 8));
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &str) -> Result<String, ParseError> {
        let start = self.pos;
        let n = self.u64(what)?;
        if n > MAX_STRING_OR_ARRAY {
            self.pos = start;
            return self.err(format!("{what} length {n} exceeds llama.cpp's limit of 2^30"));
        }
        let raw = self.take(n as usize, what)?;
        Ok(String::from_utf8_lossy(raw).into_owned())
    }

    fn value_type(&mut self, what: &str) -> Result<ValueType, ParseError> {
        let start = self.pos;
        let id = self.u32(what)?;
        ValueType::from_id(id)
            .ok_or(ParseError { offset: start as u64, reason: format!("{what}: unknown type {id}") })
    }

    fn scalars<T, const N: usize>(&mut self, n: usize, f: fn([u8; N]) -> T) -> Result<Vec<T>, ParseError> {
        let raw = self.take(n * N, "array data")?;
        Ok(raw.chunks_exact(N).map(|c| f(c.try_into().expect("N bytes"))).collect())
    }

    fn value(&mut self, ty: ValueType, key: &str) -> Result<Value, ParseError> {
        let what = &format!("value of `{key}`");
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>(what)?[0]),
            ValueType::I8 => Value::I8(self.array::<1>(what)?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(what)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(what)?)),
            ValueType::U32 => Value::U32(self.u32(what)?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(what)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(what)?)),
            ValueType::Bool => Value::Bool(self.bool(what)?),
            ValueType::String => Value::String(self.string(what)?),
            ValueType::U64 => Value::U64(self.u64(what)?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(what)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(what)?)),
            ValueType::Array => Value::Array(self.array_value(key)?),
        })
    }

    fn bool(&mut self, what: &str) -> Result<bool, ParseError> {
        match self.array::<1>(what)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => {
                self.pos -= 1;
                self.err(format!("{what}: BOOL byte {b} is neither 0 nor 1"))
            }
        }
    }

    fn array_value(&mut self, key: &str) -> Result<Array, ParseError> {
        let at = self.pos;
        let elem = self.value_type(&format!("element type of `{key}`"))?;
        if elem == ValueType::Array {
            return Err(ParseError {
                offset: at as u64,
                reason: format!("`{key}` is a nested array, which llama.cpp rejects"),
            });
        }
        let n = self.count(&format!("element count of `{key}`"), elem.min_size())?;
        if n as u64 > MAX_STRING_OR_ARRAY {
            return self.err(format!("`{key}` has {n} elements, over llama.cpp's limit of 2^30"));
        }
        Ok(match elem {
            ValueType::U8 => Array::U8(self.take(n, "array data")?.to_vec()),
            ValueType::I8 => Array::I8(self.scalars(n, |b: [u8; 1]| b[0] as i8)?),
            ValueType::U16 => Array::U16(self.scalars(n, u16::from_le_bytes)?),
            ValueType::I16 => Array::I16(self.scalars(n, i16::from_le_bytes)?),
            ValueType::U32 => Array::U32(self.scalars(n, u32::from_le_bytes)?),
            ValueType::I32 => Array::I32(self.scalars(n, i32::from_le_bytes)?),
            ValueType::F32 => Array::F32(self.scalars(n, f32::from_le_bytes)?),
            ValueType::U64 => Array::U64(self.scalars(n, u64::from_le_bytes)?),
            ValueType::I64 => Array::I64(self.scalars(n, i64::from_le_bytes)?),
            ValueType::F64 => Array::F64(self.scalars(n, f64::from_le_bytes)?),
            ValueType::Bool => Array::Bool(
                (0..n).map(|_| self.bool(&format!("element of `{key}`"))).collect::<Result<_, _>>()?,
            ),
            ValueType::String => {
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.string(&format!("string in `{key}`"))?);
                }
                Array::String(v)
            }
            ValueType::Array => unreachable!("rejected above"),
        })
    }

    fn tensor_info(&mut self) -> Result<(TensorInfo, u64), ParseError> {
        let start = self.pos;
        let name = self.string("tensor name")?;
        let n_dims = self.u32("tensor dimension count")? as usize;
        if n_dims > MAX_DIMS {
            return self.err(format!("tensor `{name}` has {n_dims} dimensions; at most {MAX_DIMS}"));
        }
        let mut ne = Vec::with_capacity(n_dims);
        for _ in 0..n_dims {
            ne.push(self.u64("tensor dimension")?);
        }
        let at = self.pos;
        let id = self.u32("tensor type")?;
        let ggml_type = GgmlType::from_id(id).ok_or(ParseError {
            offset: at as u64,
            reason: format!("tensor `{name}` has unknown ggml type {id}"),
        })?;
        let offset = self.u64("tensor offset")?;
        let info = TensorInfo { name, ne, ggml_type };
        info.check().map_err(|reason| ParseError { offset: start as u64, reason })?;
        Ok((info, offset))
    }
}

impl GgufFile {
    /// Parses and validates a whole GGUF file held in memory.
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        let mut c = Cursor { bytes, pos: 0 };
        let magic = c.array::<4>("the magic bytes")?;
        if magic != GGUF_MAGIC {
            c.pos = 0;
            return c.err(format!("bad magic {magic:02x?}; not a GGUF file"));
        }
        let version = c.u32("the version")?;
        if version & 0xFFFF == 0 && version != 0 {
            c.pos = 4;
            return c.err("big-endian GGUF files are not supported");
        }
        if !(2..=3).contains(&version) {
            c.pos = 4;
            return c.err(format!("unsupported GGUF version {version} (slmc reads versions 2 and 3)"));
        }
        // Smallest tensor info: 8 (name len) + 4 (n_dims) + 4 (type) + 8 (offset);
        // smallest KV: 8 (key len) + 4 (type) + 1 (u8 value).
        let n_tensors = c.count("tensor count", 24)?;
        let n_kv = c.count("metadata count", 13)?;
        let mut metadata = Vec::with_capacity(n_kv);
        let mut keys = HashSet::with_capacity(n_kv);
        let mut alignment = DEFAULT_ALIGNMENT;
        for _ in 0..n_kv {
            let at = c.pos;
            let key = c.string("metadata key")?;
            if key.is_empty() {
                c.pos = at;
                return c.err("empty metadata key");
            }
            if !keys.insert(key.clone()) {
                c.pos = at;
                return c.err(format!("duplicate metadata key `{key}`"));
            }
            let ty = c.value_type(&format!("type of `{key}`"))?;
            let value = c.value(ty, &key)?;
            if key == "general.alignment" {
                match value {
                    Value::U32(a) if a.is_power_of_two() => alignment = u64::from(a),
                    _ => {
                        c.pos = at;
                        return c
                            .err(format!("general.alignment must be a UINT32 power of two, got {value:?}"));
                    }
                }
            }
            metadata.push((key, value));
        }
        let mut tensors = Vec::with_capacity(n_tensors);
        let mut names = HashSet::with_capacity(n_tensors);
        let mut expected = 0u64;
        for _ in 0..n_tensors {
            let at = c.pos;
            let (info, offset) = c.tensor_info()?;
            let fail = |reason: String| Err(ParseError { offset: at as u64, reason });
            if !names.insert(info.name.clone()) {
                return fail(format!("duplicate tensor name `{}`", info.name));
            }
            if offset != expected {
                return fail(format!(
                    "tensor `{}` has data offset {offset}, expected {expected} (llama.cpp requires tensors packed in order)",
                    info.name
                ));
            }
            let n_bytes = info.n_bytes();
            let Some(next) = align_up(n_bytes, alignment).and_then(|a| expected.checked_add(a)) else {
                return fail(format!("tensor `{}`: data offsets overflow", info.name));
            };
            expected = next;
            tensors.push(TensorEntry { info, offset, n_bytes });
        }
        let data_offset = if tensors.is_empty() {
            c.pos as u64
        } else {
            align_up(c.pos as u64, alignment).expect("within file")
        };
        if let Some(last) = tensors.last() {
            let end = data_offset.saturating_add(last.offset + last.n_bytes);
            if end > bytes.len() as u64 {
                return Err(ParseError {
                    offset: bytes.len() as u64,
                    reason: format!(
                        "tensor data ends at byte {end} but the file has {} bytes (truncated?)",
                        bytes.len()
                    ),
                });
            }
        }
        Ok(Self { version, metadata, tensors, alignment, data_offset })
    }

    /// The value of a metadata key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorEntry> {
        self.tensors.iter().find(|t| t.info.name == name)
    }

    /// The data bytes of `entry` within the file bytes `file` that were parsed.
    pub fn tensor_data<'a>(&self, file: &'a [u8], entry: &TensorEntry) -> &'a [u8] {
        let start = (self.data_offset + entry.offset) as usize;
        &file[start..start + entry.n_bytes as usize]
    }
}

/// A GGUF file on disk, memory-mapped and validated.
pub struct GgufReader {
    path: PathBuf,
    map: memmap2::Mmap,
    file: GgufFile,
}

impl GgufReader {
    /// Opens and validates `path`.
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        let f = std::fs::File::open(path).map_err(|e| GgufError::io(path, e))?;
        // SAFETY: the map is read-only and private to this reader; slmc never writes to a file it
        // has open for reading (all writes go to a temporary file that is renamed into place).
        let map = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| GgufError::io(path, e))?;
        let file = GgufFile::parse(&map).map_err(|e| e.into_format_error(path))?;
        Ok(Self { path: path.to_path_buf(), map, file })
    }

    /// Parses bytes already in memory; `source` names them in errors.
    pub fn parse_bytes(bytes: &[u8], source: &str) -> Result<GgufFile, GgufError> {
        GgufFile::parse(bytes).map_err(|e| e.into_format_error(source))
    }

    /// The parsed structure.
    pub fn file(&self) -> &GgufFile {
        &self.file
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the file in bytes.
    pub fn len(&self) -> u64 {
        self.map.len() as u64
    }

    /// Whether the file is empty (never true for a valid file).
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The raw data of tensor `name`.
    pub fn tensor_bytes(&self, name: &str) -> Result<(&TensorEntry, &[u8]), GgufError> {
        let t = self.file.tensor(name).ok_or_else(|| GgufError::MissingTensor { name: name.into() })?;
        Ok((t, self.file.tensor_data(&self.map, t)))
    }

    /// Tensor `name` dequantized to f32 (ggml order: `ne[0]` varies fastest).
    pub fn tensor_f32(&self, name: &str) -> Result<Vec<f32>, GgufError> {
        let (t, bytes) = self.tensor_bytes(name)?;
        crate::ggml::dequantize(t.info.ggml_type, bytes)
    }
}
