//! Floating-point storage types of weights and their byte encodings.

use crate::ConfigError;

/// A floating-point element type a checkpoint can store weights in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FloatDtype {
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16.
    BF16,
}

impl FloatDtype {
    /// Bytes per element.
    pub fn size_bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
        }
    }

    /// The name transformers uses in `config.json` (`torch_dtype` / `dtype`).
    pub fn hf_name(self) -> &'static str {
        match self {
            Self::F32 => "float32",
            Self::F16 => "float16",
            Self::BF16 => "bfloat16",
        }
    }

    /// Parses a transformers dtype name (`"bfloat16"`, `"float16"`, `"float32"`, also the short
    /// forms `bf16`, `f16`, `fp16`, `f32`, `fp32`, `half`, `float`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.trim_start_matches("torch.").to_ascii_lowercase().as_str() {
            "float32" | "f32" | "fp32" | "float" => Some(Self::F32),
            "float16" | "f16" | "fp16" | "half" => Some(Self::F16),
            "bfloat16" | "bf16" => Some(Self::BF16),
            _ => None,
        }
    }

    /// The safetensors dtype tag.
    pub fn safetensors(self) -> safetensors::Dtype {
        match self {
            Self::F32 => safetensors::Dtype::F32,
            Self::F16 => safetensors::Dtype::F16,
            Self::BF16 => safetensors::Dtype::BF16,
        }
    }

    /// The float dtype of a safetensors tag, if it is one slmc reads as weights.
    pub fn from_safetensors(dtype: safetensors::Dtype) -> Option<Self> {
        match dtype {
            safetensors::Dtype::F32 => Some(Self::F32),
            safetensors::Dtype::F16 => Some(Self::F16),
            safetensors::Dtype::BF16 => Some(Self::BF16),
            _ => None,
        }
    }

    /// Decodes little-endian bytes of this dtype into f32 (exact for all three types).
    pub fn decode(self, bytes: &[u8]) -> Vec<f32> {
        match self {
            Self::F32 => {
                bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
            }
            Self::F16 => {
                bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
            }
            Self::BF16 => {
                bytes.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
            }
        }
    }

    /// Encodes f32 values as little-endian bytes of this dtype (round to nearest even).
    pub fn encode(self, values: &[f32]) -> Vec<u8> {
        match self {
            Self::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Self::F16 => values.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect(),
            Self::BF16 => values.iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect(),
        }
    }
}

impl std::fmt::Display for FloatDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.hf_name())
    }
}

impl std::str::FromStr for FloatDtype {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_name(s).ok_or_else(|| ConfigError::UnknownDtype(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trips_representable_values() {
        let v = [0.0f32, -1.5, 3.25, 65504.0, 1.0e-3];
        assert_eq!(FloatDtype::F32.decode(&FloatDtype::F32.encode(&v)), v);
        let h = FloatDtype::F16.decode(&FloatDtype::F16.encode(&v));
        assert_eq!(&h[..4], &v[..4]);
        assert!((h[4] - 1.0e-3).abs() < 1e-6);
        // bf16 keeps 8 mantissa bits: 3.25 is exact, 65504 rounds to 65536.
        let b = FloatDtype::BF16.decode(&FloatDtype::BF16.encode(&v));
        assert_eq!(b[2], 3.25);
        assert_eq!(b[3], 65536.0);
    }

    #[test]
    fn parses_transformers_names() {
        assert_eq!(FloatDtype::from_name("torch.bfloat16"), Some(FloatDtype::BF16));
        assert_eq!(FloatDtype::from_name("float16"), Some(FloatDtype::F16));
        assert_eq!(FloatDtype::from_name("int8"), None);
    }
}
