//! GGUF writer/reader round trips, the layout llama.cpp requires, and hostile input.

use slmc_gguf::ggml::{self, GgmlType};
use slmc_gguf::{Array, GgufFile, GgufReader, GgufWriter, TensorInfo, Value};
use std::borrow::Cow;

fn sample_writer() -> (GgufWriter, Vec<Vec<u8>>) {
    let mut w = GgufWriter::new();
    w.add("general.architecture", "llama").unwrap();
    w.add("llama.block_count", 2u32).unwrap();
    w.add("llama.attention.layer_norm_rms_epsilon", 1e-5f32).unwrap();
    w.add("flag", true).unwrap();
    w.add("u8", Value::U8(7)).unwrap();
    w.add("i8", Value::I8(-7)).unwrap();
    w.add("u16", Value::U16(65535)).unwrap();
    w.add("i16", Value::I16(-300)).unwrap();
    w.add("i32", Value::I32(-5)).unwrap();
    w.add("u64", Value::U64(1 << 40)).unwrap();
    w.add("i64", Value::I64(-(1 << 40))).unwrap();
    w.add("f64", Value::F64(0.1)).unwrap();
    w.add("tokens", Array::String(vec!["a".into(), "ü".into(), "".into()])).unwrap();
    w.add("types", Array::I32(vec![1, 3, 6])).unwrap();
    w.add("scores", Array::F32(vec![0.5, -1.0])).unwrap();
    w.add("bools", Array::Bool(vec![true, false])).unwrap();
    w.add("bytes", Array::U8(vec![1, 2, 3])).unwrap();
    let x: Vec<f32> = (0..512).map(|i| (i as f32 * 0.37).sin()).collect();
    let specs = [
        ("token_embd.weight", vec![2usize, 256], GgmlType::Q4K),
        ("blk.0.attn_norm.weight", vec![3], GgmlType::F32),
        ("odd.weight", vec![5, 32], GgmlType::Q8_0),
        ("half.weight", vec![7], GgmlType::F16),
    ];
    let mut data = Vec::new();
    for (name, shape, ty) in specs {
        let n: usize = shape.iter().product();
        data.push(ggml::quantize(ty, &x[..n]).unwrap());
        w.add_tensor(TensorInfo::from_torch_shape(name, &shape, ty)).unwrap();
    }
    (w, data)
}

fn write_bytes(w: &GgufWriter, data: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    let n = w.write(&mut out, |i, _| Ok(Cow::Borrowed(&data[i][..]))).unwrap();
    assert_eq!(n as usize, out.len());
    assert_eq!(n, w.file_size());
    out
}

#[test]
fn round_trip_keeps_every_value_and_tensor() {
    let (w, data) = sample_writer();
    let bytes = write_bytes(&w, &data);
    let f = GgufFile::parse(&bytes).unwrap();
    assert_eq!(f.version, 3);
    assert_eq!(f.alignment, 32);
    assert_eq!(f.metadata, w.metadata());
    assert_eq!(f.get("llama.block_count").unwrap().as_u32(), Some(2));
    assert_eq!(f.tensors.len(), 4);
    for (i, t) in f.tensors.iter().enumerate() {
        assert_eq!(&t.info, &w.tensors()[i]);
        assert_eq!(f.tensor_data(&bytes, t), &data[i][..]);
    }
}

#[test]
fn layout_is_what_llama_cpp_requires() {
    let (w, data) = sample_writer();
    let bytes = write_bytes(&w, &data);
    let f = GgufFile::parse(&bytes).unwrap();
    assert_eq!(&bytes[..4], b"GGUF");
    assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()), 3);
    assert_eq!(f.data_offset % 32, 0);
    let mut expected = 0u64;
    for t in &f.tensors {
        assert_eq!(t.offset, expected, "offsets are exactly cumulative");
        let end = (f.data_offset + t.offset + t.n_bytes) as usize;
        let padded = (f.data_offset + t.offset + t.n_bytes.div_ceil(32) * 32) as usize;
        assert!(bytes[end..padded].iter().all(|&b| b == 0), "zero padding after {}", t.info.name);
        expected += t.n_bytes.div_ceil(32) * 32;
    }
    // The last tensor is padded too, and nothing follows.
    assert_eq!(f.data_offset + expected, bytes.len() as u64);
    // ne is the reversed PyTorch shape.
    assert_eq!(f.tensor("odd.weight").unwrap().info.ne, vec![32, 5]);
}

#[test]
fn writer_refuses_what_llama_cpp_would_refuse() {
    let mut w = GgufWriter::new();
    w.add("a", 1u32).unwrap();
    let e = |r: Result<(), slmc_gguf::GgufError>| r.unwrap_err().to_string();
    assert!(e(w.add("a", 2u32)).contains("duplicate metadata key `a`"));
    assert!(e(w.add("empty", Array::U32(vec![]))).contains("empty array"));
    assert!(e(w.add("general.alignment", Value::U64(32))).contains("UINT32 power of two"));
    assert!(e(w.add("general.alignment", 48u32)).contains("UINT32 power of two"));
    assert!(e(w.add("", 1u32)).contains("invalid metadata key"));
    let t = |name: &str, shape: &[usize], ty| TensorInfo::from_torch_shape(name, shape, ty);
    w.add_tensor(t("x", &[4], GgmlType::F32)).unwrap();
    assert!(e(w.add_tensor(t("x", &[4], GgmlType::F32))).contains("duplicate tensor name"));
    assert!(e(w.add_tensor(t(&"n".repeat(64), &[4], GgmlType::F32))).contains("at most 63"));
    assert!(
        e(w.add_tensor(t("q", &[2, 100], GgmlType::Q8_0))).contains("not a multiple of the Q8_0 block size")
    );
    assert!(e(w.add_tensor(t("d", &[1, 1, 1, 1, 2], GgmlType::F32))).contains("at most 4"));
    let err = w.write(&mut Vec::new(), |_, _| Ok(Cow::Owned(vec![0u8; 15]))).unwrap_err().to_string();
    assert!(err.contains("needs 16 bytes of data, got 15"), "{err}");
}

#[test]
fn custom_alignment_is_honoured() {
    let mut w = GgufWriter::new();
    w.add("general.alignment", 64u32).unwrap();
    w.add_tensor(TensorInfo::from_torch_shape("a", &[3], GgmlType::F32)).unwrap();
    w.add_tensor(TensorInfo::from_torch_shape("b", &[3], GgmlType::F32)).unwrap();
    let mut out = Vec::new();
    w.write(&mut out, |_, _| Ok(Cow::Owned(vec![1u8; 12]))).unwrap();
    let f = GgufFile::parse(&out).unwrap();
    assert_eq!(f.alignment, 64);
    assert_eq!(f.data_offset % 64, 0);
    assert_eq!(f.tensors[1].offset, 64);
}

#[test]
fn failed_write_leaves_no_file_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    let (w, data) = sample_writer();
    let err = w.write_file(&path, |i, _| {
        if i == 2 {
            Err(slmc_gguf::GgufError::Ggml { reason: "boom".into() })
        } else {
            Ok(Cow::Borrowed(&data[i][..]))
        }
    });
    assert!(err.is_err());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no partial or temporary file");
    w.write_file(&path, |i, _| Ok(Cow::Borrowed(&data[i][..]))).unwrap();
    let r = GgufReader::open(&path).unwrap();
    assert_eq!(r.file().tensors.len(), 4);
    let (_, raw) = r.tensor_bytes("half.weight").unwrap();
    assert_eq!(raw, &data[3][..]);
}

// ---------------------------------------------------------------- hostile input

fn header(n_tensors: u64, n_kv: u64) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&n_tensors.to_le_bytes());
    b.extend_from_slice(&n_kv.to_le_bytes());
    b
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(&(s.len() as u64).to_le_bytes());
    b.extend_from_slice(s.as_bytes());
}

fn parse_err(bytes: &[u8]) -> String {
    let e = GgufFile::parse(bytes).unwrap_err();
    assert!(!e.reason.contains('\n'), "one-line errors: {}", e.reason);
    e.reason
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let (w, data) = sample_writer();
    let bytes = write_bytes(&w, &data);
    let f = GgufFile::parse(&bytes).unwrap();
    let last = f.tensors.last().unwrap();
    let data_end = (f.data_offset + last.offset + last.n_bytes) as usize;
    for len in 0..data_end {
        assert!(GgufFile::parse(&bytes[..len]).is_err(), "truncated to {len} bytes parsed");
    }
    // Like llama.cpp (which maps the file and checks each tensor's bytes), the last tensor's
    // trailing padding is not required.
    for len in data_end..=bytes.len() {
        assert!(GgufFile::parse(&bytes[..len]).is_ok());
    }
}

#[test]
fn huge_counts_are_refused_before_allocating() {
    assert!(parse_err(&header(u64::MAX, 0)).contains("tensor count"));
    assert!(parse_err(&header(0, u64::MAX)).contains("metadata count"));
    assert!(parse_err(&header(1 << 40, 1 << 40)).contains("cannot fit"));
    // A string claiming 2^62 bytes.
    let mut b = header(0, 1);
    b.extend_from_slice(&(1u64 << 62).to_le_bytes());
    b.extend_from_slice(&[0u8; 16]);
    assert!(parse_err(&b).contains("length 4611686018427387904 exceeds"));
    let mut b = header(0, 1);
    b.extend_from_slice(&1000u64.to_le_bytes());
    b.extend_from_slice(&[b'k'; 16]);
    assert!(parse_err(&b).contains("file ends inside metadata key"));
    // An array claiming 2^60 u64 elements.
    let mut b = header(0, 1);
    put_str(&mut b, "arr");
    b.extend_from_slice(&9u32.to_le_bytes());
    b.extend_from_slice(&10u32.to_le_bytes());
    b.extend_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(parse_err(&b).contains("cannot fit"));
    // An array of 1000 strings with only a few bytes left.
    let mut b = header(0, 1);
    put_str(&mut b, "arr");
    b.extend_from_slice(&9u32.to_le_bytes());
    b.extend_from_slice(&8u32.to_le_bytes());
    b.extend_from_slice(&1000u64.to_le_bytes());
    b.extend_from_slice(&[0u8; 16]);
    assert!(parse_err(&b).contains("cannot fit"));
}

#[test]
fn malformed_structures_are_errors() {
    assert!(parse_err(b"GGML\x03\0\0\0").contains("bad magic"));
    let mut b = header(0, 0);
    b[4..8].copy_from_slice(&1u32.to_le_bytes());
    assert!(parse_err(&b).contains("unsupported GGUF version 1"));
    b[4..8].copy_from_slice(&0x0300_0000u32.to_le_bytes());
    assert!(parse_err(&b).contains("big-endian"));
    // Unknown value type, nested array, bad bool, duplicate key, bad alignment.
    let kv = |key: &str, ty: u32, payload: &[u8]| {
        let mut b = header(0, 1);
        put_str(&mut b, key);
        b.extend_from_slice(&ty.to_le_bytes());
        b.extend_from_slice(payload);
        b
    };
    assert!(parse_err(&kv("k", 13, &[0; 8])).contains("unknown type 13"));
    let mut nested = 9u32.to_le_bytes().to_vec();
    nested.extend_from_slice(&1u64.to_le_bytes());
    assert!(parse_err(&kv("k", 9, &nested)).contains("nested array"));
    assert!(parse_err(&kv("k", 7, &[2])).contains("neither 0 nor 1"));
    assert!(parse_err(&kv("general.alignment", 10, &32u64.to_le_bytes())).contains("UINT32 power of two"));
    assert!(parse_err(&kv("general.alignment", 4, &0u32.to_le_bytes())).contains("UINT32 power of two"));
    let mut dup = header(0, 2);
    for _ in 0..2 {
        put_str(&mut dup, "k");
        dup.extend_from_slice(&4u32.to_le_bytes());
        dup.extend_from_slice(&1u32.to_le_bytes());
    }
    assert!(parse_err(&dup).contains("duplicate metadata key `k`"));
    assert!(parse_err(&kv("", 4, &[0; 4])).contains("empty metadata key"));
}

/// A file with one tensor-info record built from parts, and `data_len` bytes of data.
fn one_tensor(name: &str, ne: &[u64], ty: u32, offset: u64, data_len: usize) -> Vec<u8> {
    let mut b = header(1, 0);
    put_str(&mut b, name);
    b.extend_from_slice(&(ne.len() as u32).to_le_bytes());
    for d in ne {
        b.extend_from_slice(&d.to_le_bytes());
    }
    b.extend_from_slice(&ty.to_le_bytes());
    b.extend_from_slice(&offset.to_le_bytes());
    b.resize(b.len().div_ceil(32) * 32 + data_len, 0);
    b
}

#[test]
fn bad_tensor_records_are_errors() {
    assert!(GgufFile::parse(&one_tensor("t", &[8], 0, 0, 32)).is_ok());
    assert!(parse_err(&one_tensor("t", &[8], 0, 32, 64)).contains("expected 0"));
    assert!(parse_err(&one_tensor("t", &[8], 0, 0, 31)).contains("truncated"));
    assert!(parse_err(&one_tensor("t", &[8], 4, 0, 32)).contains("unknown ggml type 4"));
    assert!(parse_err(&one_tensor("t", &[8], 99, 0, 32)).contains("unknown ggml type 99"));
    assert!(parse_err(&one_tensor("t", &[8], 8, 0, 34)).contains("not a multiple"));
    assert!(parse_err(&one_tensor("t", &[1, 1, 1, 1, 1], 0, 0, 4)).contains("at most 4"));
    assert!(parse_err(&one_tensor("t", &[u64::MAX, 2], 0, 0, 4)).contains("i64::MAX"));
    assert!(parse_err(&one_tensor("t", &[1 << 40, 1 << 40], 0, 0, 4)).contains("overflow"));
    // Found by the fuzzer: a zero dimension hides a row whose byte size overflows.
    assert!(parse_err(&one_tensor("t", &[1 << 62, 0], 0, 0, 4)).contains("overflow"));
    assert!(parse_err(&one_tensor(&"x".repeat(64), &[8], 0, 0, 32)).contains("at most 63"));
    // Data offsets far beyond the file.
    let mut two = header(2, 0);
    for (name, off) in [("a", 0u64), ("b", 1 << 50)] {
        put_str(&mut two, name);
        two.extend_from_slice(&1u32.to_le_bytes());
        two.extend_from_slice(&8u64.to_le_bytes());
        two.extend_from_slice(&0u32.to_le_bytes());
        two.extend_from_slice(&off.to_le_bytes());
    }
    assert!(parse_err(&two).contains("expected 32"));
}

#[test]
fn flipping_any_byte_never_panics() {
    // A deterministic mini-fuzz: every byte of a valid file replaced by a few values.
    let (w, data) = sample_writer();
    let good = write_bytes(&w, &data);
    let header_end = GgufFile::parse(&good).unwrap().data_offset as usize;
    for i in 0..header_end {
        for v in [0u8, 0xFF, good[i] ^ 0x80, good[i].wrapping_add(1)] {
            let mut b = good.clone();
            b[i] = v;
            let _ = GgufFile::parse(&b);
        }
    }
}
