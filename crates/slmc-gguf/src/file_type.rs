//! Export types (`--type q4_k_m`) and which ggml type each tensor gets under them.
//!
//! The per-tensor rules are those of llama.cpp's `llama-quantize` without an importance matrix
//! (`llama_tensor_get_type` in `src/llama-quant.cpp`, vendored by llama-cpp-python 0.3.36), so
//! a file slmc writes with `--type q4_k_m` has the same tensor types as
//! `convert_hf_to_gguf.py --outtype f32` followed by `llama-quantize … Q4_K_M`:
//!
//! * only tensors whose name ends in `weight`, with at least 2 dimensions, and that are not
//!   `*_norm.weight` are quantized; everything else (norms, biases, `rope_freqs`) stays F32;
//! * `output.weight` (or `token_embd.weight` when embeddings are tied) becomes Q6_K for every
//!   quantized type except Q8_0, and Q8_0 if its rows are not a whole number of blocks;
//! * the `_m` / `_s` mixes bump `attn_v` (and Phi-3's fused `attn_qkv`) and `ffn_down` of some
//!   layers (`use_more_bits`) to Q6_K / Q5_K;
//! * a row that is not a whole number of blocks falls back Q4_K → Q5_0, Q5_K → Q5_1,
//!   Q6_K → Q8_0, and to F16 if even 32 does not divide it.
//!
//! Note: in the llama.cpp version read (and unlike older ones), `attn_qkv` goes through the
//! `attn_v` rule, so for Q4_K_M it is Q6_K in the `use_more_bits` layers and Q4_K elsewhere.

use crate::ggml::GgmlType;

/// The type of a whole export, as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // named after llama.cpp's file types
pub enum FileType {
    F32,
    F16,
    BF16,
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    /// Every quantizable tensor Q4_K (llama-quantize `--pure Q4_K_S`).
    Q4K,
    /// Every quantizable tensor Q5_K (llama-quantize `--pure Q5_K_S`).
    Q5K,
    Q6K,
    Q4KS,
    Q4KM,
    Q5KS,
    Q5KM,
}

/// `(file type, CLI name, llama_ftype value, base ggml type)`.
const TABLE: &[(FileType, &str, u32, GgmlType)] = &[
    (FileType::F32, "f32", 0, GgmlType::F32),
    (FileType::F16, "f16", 1, GgmlType::F16),
    (FileType::BF16, "bf16", 32, GgmlType::BF16),
    (FileType::Q8_0, "q8_0", 7, GgmlType::Q8_0),
    (FileType::Q4_0, "q4_0", 2, GgmlType::Q4_0),
    (FileType::Q4_1, "q4_1", 3, GgmlType::Q4_1),
    (FileType::Q5_0, "q5_0", 8, GgmlType::Q5_0),
    (FileType::Q5_1, "q5_1", 9, GgmlType::Q5_1),
    (FileType::Q4K, "q4_k", 14, GgmlType::Q4K),
    (FileType::Q5K, "q5_k", 16, GgmlType::Q5K),
    (FileType::Q6K, "q6_k", 18, GgmlType::Q6K),
    (FileType::Q4KS, "q4_k_s", 14, GgmlType::Q4K),
    (FileType::Q4KM, "q4_k_m", 15, GgmlType::Q4K),
    (FileType::Q5KS, "q5_k_s", 16, GgmlType::Q5K),
    (FileType::Q5KM, "q5_k_m", 17, GgmlType::Q5K),
];

/// What the type rules need to know about one tensor.
#[derive(Debug, Clone, Copy)]
pub struct TensorRole<'a> {
    /// GGUF name (`blk.3.attn_v.weight`).
    pub name: &'a str,
    /// ggml dimensions (innermost first).
    pub ne: &'a [u64],
    /// Decoder layers of the model.
    pub n_layers: usize,
    /// Whether the file has no `output.weight` (the embeddings double as the output).
    pub tied: bool,
}

impl FileType {
    /// Every export type, in the order `--help` lists them.
    pub fn all() -> impl Iterator<Item = FileType> {
        TABLE.iter().map(|e| e.0)
    }

    fn entry(self) -> &'static (FileType, &'static str, u32, GgmlType) {
        TABLE.iter().find(|e| e.0 == self).expect("every variant is in TABLE")
    }

    /// Parses a CLI name (`q4_k_m`, case-insensitive; `-` accepted for `_`).
    pub fn from_name(name: &str) -> Option<Self> {
        let n = name.to_ascii_lowercase().replace('-', "_");
        TABLE.iter().find(|e| e.1 == n).map(|e| e.0)
    }

    /// The CLI name.
    pub fn name(self) -> &'static str {
        self.entry().1
    }

    /// The `general.file_type` value (`enum llama_ftype`, not a ggml type id).
    pub fn llama_ftype(self) -> u32 {
        self.entry().2
    }

    /// The export type whose blocks hold the codes of a uniform grid exactly (a GPTQ or RTN
    /// record written as-is): 4-bit symmetric in groups of 32 input columns → `q4_0`, 4-bit
    /// asymmetric → `q4_1`, 8-bit symmetric → `q8_0`. `None` for every other grid.
    pub fn for_uniform_grid(bits: u8, group_size: Option<usize>, sym: bool) -> Option<FileType> {
        match (bits, group_size, sym) {
            (4, Some(32), true) => Some(Self::Q4_0),
            (4, Some(32), false) => Some(Self::Q4_1),
            (8, Some(32), true) => Some(Self::Q8_0),
            _ => None,
        }
    }

    /// The type a model stored in `stored` is exported as when none is asked for: bf16 for a
    /// bf16 checkpoint, else f16 (what `convert_hf_to_gguf.py --outtype auto` picks).
    pub fn default_for(stored: slmc_config::FloatDtype) -> FileType {
        match stored {
            slmc_config::FloatDtype::BF16 => Self::BF16,
            _ => Self::F16,
        }
    }

    /// Bits per weight of the base type's blocks (`q4_0`: 18 bytes per 32 → 4.5). The `_s` /
    /// `_m` mixes store some tensors in a larger type, so their files run a little above this.
    pub fn bits_per_weight(self) -> f64 {
        let t = self.base_type();
        t.type_size() as f64 * 8.0 / t.block_size() as f64
    }

    /// The ggml type most weights get.
    pub fn base_type(self) -> GgmlType {
        self.entry().3
    }

    fn is_quantized(self) -> bool {
        !matches!(self, Self::F32 | Self::F16 | Self::BF16)
    }

    /// The ggml type tensor `t` is stored as.
    pub fn tensor_type(self, t: &TensorRole<'_>) -> GgmlType {
        if !is_quantizable(t) {
            return GgmlType::F32;
        }
        let base = self.base_type();
        if !self.is_quantized() {
            return base;
        }
        let chosen = if matches!(self, Self::Q4K | Self::Q5K) { base } else { self.refine(base, t) };
        fallback(chosen, t.ne[0])
    }

    /// `llama_tensor_get_type_impl` restricted to these file types (no imatrix, no experts).
    fn refine(self, base: GgmlType, t: &TensorRole<'_>) -> GgmlType {
        let layer = layer_of(t.name);
        let n = t.n_layers;
        let is_output = t.name == "output.weight" || (t.tied && t.name == "token_embd.weight");
        if is_output {
            return if !t.ne[0].is_multiple_of(base.block_size() as u64) {
                GgmlType::Q8_0
            } else if base != GgmlType::Q8_0 {
                GgmlType::Q6K
            } else {
                base
            };
        }
        let is_attn_v = t.name.contains("attn_v.weight") || t.name.contains("attn_qkv.weight");
        if is_attn_v && let Some(i) = layer {
            return match self {
                Self::Q4KM | Self::Q5KM if use_more_bits(i, n) => GgmlType::Q6K,
                Self::Q4KS if i < 4 => GgmlType::Q5K,
                _ => base,
            };
        }
        if t.name.contains("ffn_down")
            && let Some(i) = layer
        {
            return match self {
                Self::Q4KM | Self::Q5KM if use_more_bits(i, n) => GgmlType::Q6K,
                Self::Q4KS if i < n / 8 => GgmlType::Q5K,
                _ => base,
            };
        }
        base
    }
}

impl std::fmt::Display for FileType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for FileType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_name(s).ok_or_else(|| {
            let names: Vec<&str> = Self::all().map(|t| t.name()).collect();
            format!("unknown GGUF type `{s}`; expected one of {}", names.join(", "))
        })
    }
}

/// `use_more_bits` of llama-quant.cpp: the first and last eighth of the layers, and every third
/// one in between.
pub fn use_more_bits(i: usize, n: usize) -> bool {
    let (i, n) = (i as i64, n as i64);
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// ggml's `ggml_n_dims`: dimensions up to the last one larger than 1 (at least 1).
fn n_dims(ne: &[u64]) -> usize {
    ne.iter().rposition(|&d| d > 1).map_or(1, |i| i + 1)
}

/// Whether llama-quantize would quantize the tensor at all.
fn is_quantizable(t: &TensorRole<'_>) -> bool {
    t.name.ends_with("weight") && n_dims(t.ne) >= 2 && !t.name.ends_with("_norm.weight")
}

fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

/// `tensor_type_fallback`: a type whose block fits a row of `ncols` values.
fn fallback(ty: GgmlType, ncols: u64) -> GgmlType {
    if ncols.is_multiple_of(ty.block_size() as u64) {
        return ty;
    }
    let alt = match ty {
        GgmlType::Q4K => GgmlType::Q5_0,
        GgmlType::Q5K => GgmlType::Q5_1,
        GgmlType::Q6K => GgmlType::Q8_0,
        other => other,
    };
    if ncols.is_multiple_of(alt.block_size() as u64) { alt } else { GgmlType::F16 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(ft: FileType, name: &str, ne: &[u64], n_layers: usize, tied: bool) -> GgmlType {
        ft.tensor_type(&TensorRole { name, ne, n_layers, tied })
    }

    #[test]
    fn names_and_ftype_numbers() {
        assert_eq!(FileType::from_name("Q4_K_M"), Some(FileType::Q4KM));
        assert_eq!(FileType::from_name("q5-k-m"), Some(FileType::Q5KM));
        assert_eq!(FileType::Q8_0.llama_ftype(), 7);
        assert_eq!(FileType::BF16.llama_ftype(), 32);
        assert!("q3_k".parse::<FileType>().unwrap_err().contains("q4_k_m"));
        for t in FileType::all() {
            assert_eq!(FileType::from_name(t.name()), Some(t));
        }
    }

    #[test]
    fn use_more_bits_matches_llama_cpp_for_32_layers() {
        let bumped: Vec<usize> = (0..32).filter(|&i| use_more_bits(i, 32)).collect();
        assert_eq!(bumped, vec![0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]);
    }

    #[test]
    fn q4_k_m_mix() {
        let w = [4096u64, 4096];
        let m = FileType::Q4KM;
        assert_eq!(ty(m, "blk.0.attn_v.weight", &w, 32, false), GgmlType::Q6K);
        assert_eq!(ty(m, "blk.4.attn_v.weight", &w, 32, false), GgmlType::Q4K);
        assert_eq!(ty(m, "blk.6.ffn_down.weight", &w, 32, false), GgmlType::Q6K);
        assert_eq!(ty(m, "blk.7.ffn_down.weight", &w, 32, false), GgmlType::Q4K);
        assert_eq!(ty(m, "blk.7.attn_q.weight", &w, 32, false), GgmlType::Q4K);
        assert_eq!(ty(m, "blk.0.attn_qkv.weight", &w, 32, false), GgmlType::Q6K);
        assert_eq!(ty(m, "output.weight", &w, 32, false), GgmlType::Q6K);
        assert_eq!(ty(m, "token_embd.weight", &w, 32, false), GgmlType::Q4K);
        assert_eq!(ty(m, "token_embd.weight", &w, 32, true), GgmlType::Q6K);
        assert_eq!(ty(m, "blk.0.attn_norm.weight", &[4096], 32, false), GgmlType::F32);
        assert_eq!(ty(m, "blk.0.attn_q.bias", &[4096], 32, false), GgmlType::F32);
        assert_eq!(ty(m, "rope_freqs.weight", &[64], 32, false), GgmlType::F32);
        assert_eq!(ty(FileType::Q4KS, "blk.3.attn_v.weight", &w, 32, false), GgmlType::Q5K);
        assert_eq!(ty(FileType::Q4KS, "blk.4.ffn_down.weight", &w, 32, false), GgmlType::Q4K);
        assert_eq!(ty(FileType::Q4KS, "blk.3.ffn_down.weight", &w, 32, false), GgmlType::Q5K);
        assert_eq!(ty(FileType::Q5KM, "blk.31.attn_v.weight", &w, 32, false), GgmlType::Q6K);
        assert_eq!(ty(FileType::Q5KM, "blk.4.attn_v.weight", &w, 32, false), GgmlType::Q5K);
    }

    #[test]
    fn legacy_and_float_types() {
        let w = [64u64, 384];
        assert_eq!(ty(FileType::Q4_0, "output.weight", &[256, 384], 2, false), GgmlType::Q6K);
        assert_eq!(ty(FileType::Q4_0, "output.weight", &w, 2, false), GgmlType::Q8_0);
        assert_eq!(ty(FileType::Q8_0, "output.weight", &[256, 384], 2, false), GgmlType::Q8_0);
        assert_eq!(ty(FileType::Q4_0, "blk.0.attn_v.weight", &w, 2, false), GgmlType::Q4_0);
        assert_eq!(ty(FileType::F16, "output.weight", &w, 2, false), GgmlType::F16);
        assert_eq!(ty(FileType::BF16, "blk.0.attn_norm.weight", &[64], 2, false), GgmlType::F32);
        assert_eq!(ty(FileType::Q4K, "output.weight", &[256, 8], 2, false), GgmlType::Q4K);
    }

    #[test]
    fn rows_that_do_not_fit_fall_back() {
        // 64-wide rows cannot hold a 256-value super-block.
        assert_eq!(ty(FileType::Q4KM, "blk.1.attn_q.weight", &[64, 64], 2, false), GgmlType::Q5_0);
        assert_eq!(ty(FileType::Q5KS, "blk.1.attn_q.weight", &[64, 64], 2, false), GgmlType::Q5_1);
        assert_eq!(ty(FileType::Q4KM, "blk.1.attn_v.weight", &[64, 32], 2, false), GgmlType::Q8_0);
        assert_eq!(ty(FileType::Q4_0, "blk.0.attn_q.weight", &[48, 64], 2, false), GgmlType::F16);
    }
}
