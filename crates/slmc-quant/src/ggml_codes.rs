//! Records → ggml blocks, so a GGUF file holds exactly the codes the quantizer chose (see
//! [`FileType::for_uniform_grid`] for the grids that map onto a ggml type).
//!
//! Q4_0 and Q8_0 reproduce the fake-quantized weights bit for bit (f16 scales, zero point 8 /
//! 128 folded into the code offset). Q4_1 stores `ŵ = d·q + m` with `m = −scale·zero` rounded to
//! f16, so its dequantized values differ from the record's by at most that rounding.

use crate::QuantError;
use crate::record::{QuantRecord, Records};
use slmc_calib::weight_values;
use slmc_gguf::FileType;
use slmc_gguf::ggml::{Block, BlockQ4_0, BlockQ4_1, BlockQ8_0, GgmlType};
use slmc_model::CausalLm;
use slmc_model::gguf_export::EncodedTensor;
use std::collections::HashMap;

/// The ggml type holding `rec`'s grid exactly, if any.
pub fn ggml_type_of(rec: &QuantRecord) -> Option<GgmlType> {
    FileType::for_uniform_grid(rec.grid.bits, rec.grid.group_size, rec.grid.sym).map(FileType::base_type)
}

/// Encodes `rec` as rows of ggml blocks (Hugging Face `[out, in]` row order).
pub fn encode(name: &str, rec: &QuantRecord) -> Result<(GgmlType, Vec<u8>), QuantError> {
    let ty = ggml_type_of(rec).ok_or_else(|| QuantError::Record {
        name: name.into(),
        reason: format!(
            "a {}-bit {} grid with group size {:?} has no GGUF block type (4-bit g32 → q4_0/q4_1, 8-bit sym g32 → q8_0)",
            rec.grid.bits,
            if rec.grid.sym { "symmetric" } else { "asymmetric" },
            rec.grid.group_size
        ),
    })?;
    if !rec.cols.is_multiple_of(32) {
        return Err(QuantError::Record {
            name: name.into(),
            reason: format!("{} input columns is not a multiple of 32", rec.cols),
        });
    }
    let blocks = rec.cols / 32;
    let mut out = vec![0u8; rec.rows * blocks * ty.type_size()];
    let mut chunks = out.chunks_exact_mut(ty.type_size());
    for r in 0..rec.rows {
        for b in 0..blocks {
            let p = rec.params(r, b);
            let codes = &rec.codes[r * rec.cols + b * 32..r * rec.cols + (b + 1) * 32];
            let dst = chunks.next().expect("sized above");
            match ty {
                GgmlType::Q4_0 => {
                    BlockQ4_0::from_codes(p.scale, std::array::from_fn(|j| codes[j])).write(dst)
                }
                GgmlType::Q4_1 => BlockQ4_1::from_codes(
                    p.scale,
                    -p.scale * f32::from(p.zero),
                    std::array::from_fn(|j| codes[j]),
                )
                .write(dst),
                GgmlType::Q8_0 => {
                    BlockQ8_0::from_codes(p.scale, std::array::from_fn(|j| (i16::from(codes[j]) - 128) as i8))
                        .write(dst)
                }
                _ => unreachable!("for_uniform_grid maps to these three"),
            }
        }
    }
    Ok((ty, out))
}

/// The pre-encoded tensors a GGUF export of a quantized `model` needs (by Hugging Face weight
/// name): every record as-is, and the decoder linears the quantize stage left out (`ignore`,
/// `targets`) as F16, so they stay full precision instead of following the file type's grid.
pub fn gguf_tensors(
    model: &CausalLm,
    records: &Records,
) -> Result<HashMap<String, EncodedTensor>, QuantError> {
    let mut out = HashMap::new();
    for (name, rec) in records {
        let (ggml_type, bytes) = encode(name, rec)?;
        out.insert(format!("{name}.weight"), EncodedTensor { ggml_type, bytes });
    }
    for name in model.config.linear_modules().into_iter().filter(|m| !records.contains_key(m)) {
        let lin = model
            .decoder_linear(&name)
            .ok_or_else(|| QuantError::Input(format!("`{name}` is not a linear module of this model")))?;
        let (wt, rows, cols) = weight_values(lin);
        let bytes =
            slmc_gguf::ggml::quantize(GgmlType::F16, &slmc_model::weights::transpose(&wt, cols, rows))?;
        out.insert(format!("{name}.weight"), EncodedTensor { ggml_type: GgmlType::F16, bytes });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::Grid;

    fn record(bits: u8, sym: bool) -> QuantRecord {
        let grid = Grid { bits, group_size: Some(32), sym, f16_scales: true };
        let (rows, cols) = (3, 64);
        let wt: Vec<f32> = (0..rows * cols).map(|k| ((k * 37 % 101) as f32 - 50.0) / 300.0).collect();
        crate::gptq::rtn(&wt, rows, cols, grid)
    }

    #[test]
    fn q4_0_and_q8_0_dequantize_to_the_fake_quantized_weights_exactly() {
        for (bits, ty) in [(4, GgmlType::Q4_0), (8, GgmlType::Q8_0)] {
            let rec = record(bits, true);
            let (got_ty, bytes) = encode("m", &rec).unwrap();
            assert_eq!(got_ty, ty);
            assert_eq!(slmc_gguf::ggml::dequantize(ty, &bytes).unwrap(), rec.dequantize());
        }
    }

    #[test]
    fn q4_1_matches_up_to_the_f16_rounding_of_the_minimum() {
        let rec = record(4, false);
        let (ty, bytes) = encode("m", &rec).unwrap();
        assert_eq!(ty, GgmlType::Q4_1);
        let got = slmc_gguf::ggml::dequantize(ty, &bytes).unwrap();
        for (g, w) in got.iter().zip(rec.dequantize()) {
            assert!((g - w).abs() <= 1e-3 * 0.2, "{g} vs {w}");
        }
        let g128 = QuantRecord { grid: Grid { group_size: Some(128), ..rec.grid }, ..rec };
        assert!(encode("m", &g128).unwrap_err().to_string().contains("no GGUF block type"));
    }
}
