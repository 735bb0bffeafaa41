//! The JSON bitsandbytes stores in the uint8 tensor `<weight>.quant_state.bitsandbytes__nf4`
//! (`QuantState.as_dict(packed=True)` → `pack_dict_to_tensor`: Python's `json.dumps` of the
//! non-tensor items), written byte for byte as Python writes it and read back with every key checked.

use serde_json::Value;
use slmc_config::FloatDtype;

/// The non-tensor items of a bitsandbytes 4-bit quant state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantStateJson {
    /// Values per absmax.
    pub blocksize: usize,
    /// The weight's dtype before quantization.
    pub dtype: FloatDtype,
    /// `[rows, cols]`.
    pub shape: [usize; 2],
    /// With double quantization: `(nested_blocksize, nested_offset)`; `nested_dtype` is float32.
    pub nested: Option<(usize, f32)>,
}

const KEYS: [&str; 7] =
    ["quant_type", "blocksize", "dtype", "shape", "nested_blocksize", "nested_dtype", "nested_offset"];

impl QuantStateJson {
    /// `json.dumps` of the dict `as_dict` builds, in its key order: `{"quant_type": "nf4",
    /// "blocksize": 64, "dtype": "float32", "shape": [64, 64], "nested_blocksize": 256,
    /// "nested_dtype": "float32", "nested_offset": 0.15888582170009613}`.
    pub fn to_json(&self) -> String {
        let [rows, cols] = self.shape;
        let mut s = format!(
            r#"{{"quant_type": "nf4", "blocksize": {}, "dtype": "{}", "shape": [{rows}, {cols}]"#,
            self.blocksize,
            self.dtype.hf_name()
        );
        if let Some((nested_blocksize, offset)) = self.nested {
            s.push_str(&format!(
                r#", "nested_blocksize": {nested_blocksize}, "nested_dtype": "float32", "nested_offset": {}"#,
                python_float_repr(f64::from(offset))
            ));
        }
        s.push('}');
        s
    }

    /// Parses the stored bytes; the reason is returned on anything bitsandbytes would not have
    /// written for an NF4 `[rows, cols]` weight (another quant type, a missing or unknown key, a
    /// partial set of nested keys, a non-float32 nested dtype, a non-finite offset).
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(bytes).map_err(|e| format!("quant state is not UTF-8: {e}"))?;
        let value: Value = serde_json::from_str(text).map_err(|e| format!("quant state is not JSON: {e}"))?;
        let obj = value.as_object().ok_or("quant state JSON is not an object")?;
        if let Some(key) = obj.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(format!("quant state has an unknown key `{key}`"));
        }
        match obj.get("quant_type").and_then(Value::as_str) {
            Some("nf4") => {}
            Some(other) => return Err(format!("quant_type is `{other}`; only nf4 is supported")),
            None => return Err("quant state has no string `quant_type`".into()),
        }
        let blocksize = uint(obj.get("blocksize"), "blocksize")?;
        let dtype = obj
            .get("dtype")
            .and_then(Value::as_str)
            .and_then(FloatDtype::from_name)
            .ok_or("quant state `dtype` is not float32, float16 or bfloat16")?;
        let shape = match obj.get("shape").and_then(Value::as_array).map(Vec::as_slice) {
            Some([r, c]) => [uint(Some(r), "shape[0]")?, uint(Some(c), "shape[1]")?],
            _ => return Err("quant state `shape` is not a 2-D shape [rows, cols]".into()),
        };
        let nested_keys = ["nested_blocksize", "nested_dtype", "nested_offset"];
        let present = nested_keys.iter().filter(|k| obj.contains_key(**k)).count();
        let nested = match present {
            0 => None,
            3 => {
                if obj.get("nested_dtype").and_then(Value::as_str) != Some("float32") {
                    return Err("quant state `nested_dtype` is not float32".into());
                }
                let offset = obj
                    .get("nested_offset")
                    .and_then(Value::as_f64)
                    .map(|v| v as f32)
                    .filter(|v| v.is_finite())
                    .ok_or("quant state `nested_offset` is not a finite number")?;
                Some((uint(obj.get("nested_blocksize"), "nested_blocksize")?, offset))
            }
            _ => {
                return Err(
                    "quant state has only some of nested_blocksize, nested_dtype, nested_offset".into()
                );
            }
        };
        Ok(Self { blocksize, dtype, shape, nested })
    }
}

fn uint(value: Option<&Value>, what: &str) -> Result<usize, String> {
    value
        .and_then(Value::as_u64)
        .and_then(|v| usize::try_from(v).ok())
        .ok_or_else(|| format!("quant state `{what}` is not a non-negative integer"))
}

/// Python's `repr` of a float (what `json.dumps` writes): the shortest digits that round-trip,
/// positional for decimal exponents −4…15 (`0.0001`, `123.0`), else scientific with a signed
/// exponent of at least two digits (`1e-05`, `1.5e+16`).
pub fn python_float_repr(x: f64) -> String {
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0".into() } else { "0.0".into() };
    }
    let sci = format!("{:e}", x.abs()); // shortest round-trip digits: "1.5888e-1"
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if x < 0.0 { "-" } else { "" };
    if !(-4..16).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() { String::new() } else { format!(".{rest}") };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}e{exp_sign}{:02}", exp.abs());
    }
    if exp < 0 {
        let zeros = "0".repeat((-exp - 1) as usize);
        return format!("{sign}0.{zeros}{digits}");
    }
    let int_len = exp as usize + 1;
    if digits.len() <= int_len {
        format!("{sign}{digits}{}.0", "0".repeat(int_len - digits.len()))
    } else {
        format!("{sign}{}.{}", &digits[..int_len], &digits[int_len..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_python_prints_them() {
        let cases = [
            (0.15888582170009613, "0.15888582170009613"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-5, "1.5e-05"),
            (123.0, "123.0"),
            (1.0, "1.0"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.25e100, "1.25e+100"),
            (-2.5, "-2.5"),
            (0.0, "0.0"),
            (f64::from(0.1f32), "0.10000000149011612"),
        ];
        for (x, want) in cases {
            assert_eq!(python_float_repr(x), want, "{x}");
        }
    }

    #[test]
    fn writes_and_parses_the_double_quant_state() {
        let state = QuantStateJson {
            blocksize: 64,
            dtype: FloatDtype::F32,
            shape: [64, 64],
            nested: Some((256, "0.15888582170009613".parse().unwrap())),
        };
        let json = state.to_json();
        assert_eq!(
            json,
            r#"{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [64, 64], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 0.15888582170009613}"#
        );
        assert_eq!(QuantStateJson::parse(json.as_bytes()).unwrap(), state);
        let plain = QuantStateJson { nested: None, dtype: FloatDtype::BF16, ..state };
        assert_eq!(
            plain.to_json(),
            r#"{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [64, 64]}"#
        );
        assert_eq!(QuantStateJson::parse(plain.to_json().as_bytes()).unwrap(), plain);
    }

    #[test]
    fn refuses_what_bitsandbytes_would_not_write() {
        let bad = [
            (&b"\xff"[..], "UTF-8"),
            (b"[1]", "not an object"),
            (br#"{"quant_type": "fp4", "blocksize": 64, "dtype": "float32", "shape": [2, 2]}"#, "fp4"),
            (br#"{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [4]}"#, "2-D"),
            (br#"{"quant_type": "nf4", "blocksize": -1, "dtype": "float32", "shape": [2, 2]}"#, "blocksize"),
            (br#"{"quant_type": "nf4", "blocksize": 64, "dtype": "int8", "shape": [2, 2]}"#, "dtype"),
            (br#"{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [2, 2], "x": 1}"#, "`x`"),
            (
                br#"{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [2, 2], "nested_offset": 0.5}"#,
                "only some",
            ),
            (br#"{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [2, 2]"#, "JSON"),
        ];
        for (bytes, want) in bad {
            let err = QuantStateJson::parse(bytes).unwrap_err();
            assert!(err.contains(want), "{err} should mention {want}");
        }
    }
}
