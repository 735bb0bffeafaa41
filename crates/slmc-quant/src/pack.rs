//! Packed GPTQ checkpoint tensors (docs/algorithms.md §4), the layout transformers (through
//! GPTQModel/optimum), AutoGPTQ and vLLM load: per quantized linear `qweight` (int32, codes
//! packed along the input dimension), `qzeros` (int32, zero points − 1 packed along the output
//! dimension: the "v1" convention), `scales` (f16, `[groups, out]`) and `g_idx` (int32,
//! `c / group_size`).

use crate::QuantError;
use crate::record::QuantRecord;
use safetensors::Dtype;
use slmc_formats::TensorToWrite;

/// Checks that `rec` can be packed: 2, 4 or 8 bits (3-bit codes straddle words) and both
/// dimensions multiples of the codes per word.
pub fn packable(rec: &QuantRecord) -> Result<(), String> {
    let bits = usize::from(rec.grid.bits);
    if !matches!(bits, 2 | 4 | 8) {
        return Err(format!("{bits}-bit codes cannot be packed in the GPTQ layout (2, 4 or 8 bits)"));
    }
    let per_word = 32 / bits;
    if !rec.cols.is_multiple_of(per_word) || !rec.rows.is_multiple_of(per_word) {
        return Err(format!(
            "a {}x{} weight is not a multiple of {per_word} in both dimensions",
            rec.rows, rec.cols
        ));
    }
    Ok(())
}

fn i32_bytes(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// The packed tensors of module `prefix` (`model.layers.0.self_attn.q_proj`): `qweight`,
/// `qzeros`, `scales`, `g_idx`.
pub fn pack(prefix: &str, rec: &QuantRecord) -> Result<Vec<TensorToWrite>, QuantError> {
    packable(rec).map_err(|reason| QuantError::Record { name: prefix.into(), reason })?;
    let bits = u32::from(rec.grid.bits);
    let per_word = (32 / bits) as usize;
    let (n, k, groups) = (rec.rows, rec.cols, rec.groups());
    let mask = rec.grid.maxq();
    // qweight[w, n] holds the codes of input columns w*per_word .. (w+1)*per_word, lowest bits first.
    let mut qweight = vec![0u32; k / per_word * n];
    for row in 0..n {
        for c in 0..k {
            let code = u32::from(rec.codes[row * k + c]) & mask;
            qweight[(c / per_word) * n + row] |= code << (bits as usize * (c % per_word));
        }
    }
    // qzeros[g, w] holds (zero − 1) of outputs w*per_word .., lowest bits first (v1 convention).
    let mut qzeros = vec![0u32; groups * (n / per_word)];
    let mut scales = Vec::with_capacity(groups * n);
    for g in 0..groups {
        for row in 0..n {
            let p = rec.params(row, g);
            let stored = (u32::from(p.zero).wrapping_sub(1)) & mask;
            qzeros[g * (n / per_word) + row / per_word] |= stored << (bits as usize * (row % per_word));
        }
        scales.extend((0..n).map(|row| half::f16::from_f32(rec.params(row, g).scale)));
    }
    let g_idx: Vec<u32> = (0..k).map(|c| rec.grid.group_of(c) as u32).collect();
    let t = |suffix: &str, dtype: Dtype, shape: Vec<usize>, data: Vec<u8>| TensorToWrite {
        name: format!("{prefix}.{suffix}"),
        dtype,
        shape,
        data,
    };
    Ok(vec![
        t("qweight", Dtype::I32, vec![k / per_word, n], i32_bytes(&qweight)),
        t("qzeros", Dtype::I32, vec![groups, n / per_word], i32_bytes(&qzeros)),
        t("scales", Dtype::F16, vec![groups, n], scales.iter().flat_map(|s| s.to_le_bytes()).collect()),
        t("g_idx", Dtype::I32, vec![k], i32_bytes(&g_idx)),
    ])
}

/// The `quantization_config` entry of `config.json` (also written as `quantize_config.json`).
pub fn quantization_config(
    rec: &QuantRecord,
    act_order: bool,
    damp: f64,
    true_sequential: bool,
) -> serde_json::Value {
    serde_json::json!({
        "quant_method": "gptq",
        "bits": rec.grid.bits,
        "group_size": rec.grid.group_size.map_or(-1, |g| g as i64),
        "desc_act": act_order,
        "sym": rec.grid.sym,
        "damp_percent": damp,
        "static_groups": act_order,
        "true_sequential": true_sequential,
        "lm_head": false,
        "checkpoint_format": "gptq",
        "format": "gptq",
        "model_name_or_path": null,
        "model_file_base_name": null,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::Grid;

    /// Inverse of [`pack`] for one module: codes `[out, in]`, true zero points and scales
    /// `[out, groups]`.
    fn unpack(
        qweight: &[u32],
        qzeros: &[u32],
        scales: &[f32],
        bits: u32,
        n: usize,
        k: usize,
    ) -> (Vec<u8>, Vec<u8>, Vec<f32>) {
        let per_word = (32 / bits) as usize;
        let mask = (1u32 << bits) - 1;
        let groups = scales.len() / n;
        let codes = (0..n * k)
            .map(|i| {
                let (row, c) = (i / k, i % k);
                ((qweight[(c / per_word) * n + row] >> (bits as usize * (c % per_word))) & mask) as u8
            })
            .collect();
        let mut zeros = vec![0u8; n * groups];
        let mut sc = vec![0f32; n * groups];
        for g in 0..groups {
            for row in 0..n {
                let stored = (qzeros[g * (n / per_word) + row / per_word]
                    >> (bits as usize * (row % per_word)))
                    & mask;
                zeros[row * groups + g] = (stored + 1) as u8;
                sc[row * groups + g] = scales[g * n + row];
            }
        }
        (codes, zeros, sc)
    }

    fn words(t: &TensorToWrite) -> Vec<u32> {
        t.data.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
    }

    #[test]
    fn symmetric_4bit_zeros_pack_to_the_golden_word_and_everything_unpacks() {
        for (bits, sym) in [(4u8, true), (4, false), (2, false), (8, true)] {
            let grid = Grid { bits, group_size: Some(16), sym, f16_scales: true };
            let (rows, cols) = (16, 48);
            let wt: Vec<f32> = (0..rows * cols).map(|x| ((x * 53 % 97) as f32 - 48.0) / 100.0).collect();
            let rec = crate::gptq::rtn(&wt, rows, cols, grid);
            let t = pack("m", &rec).unwrap();
            assert_eq!(t[0].shape, vec![cols * bits as usize / 32, rows]);
            assert_eq!(t[1].shape, vec![3, rows * bits as usize / 32]);
            if bits == 4 && sym {
                assert!(words(&t[1]).iter().all(|&w| w == 0x7777_7777), "sym 4-bit qzeros");
            }
            let scales: Vec<f32> =
                t[2].data.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect();
            let (codes, zeros, sc) =
                unpack(&words(&t[0]), &words(&t[1]), &scales, u32::from(bits), rows, cols);
            assert_eq!(codes, rec.codes);
            assert_eq!(zeros, rec.zeros);
            assert_eq!(sc, rec.scales);
            assert_eq!(words(&t[3]), (0..cols as u32).map(|c| c / 16).collect::<Vec<_>>());
        }
    }

    #[test]
    fn three_bit_and_misaligned_shapes_are_refused() {
        let grid = Grid { bits: 3, group_size: None, sym: true, f16_scales: true };
        let rec = crate::gptq::rtn(&[0.5; 64], 8, 8, grid);
        assert!(pack("m", &rec).err().expect("refused").to_string().contains("3-bit"));
        let grid = Grid { bits: 4, ..grid };
        let rec = crate::gptq::rtn(&[0.5; 60], 6, 10, grid);
        assert!(pack("m", &rec).err().expect("refused").to_string().contains("multiple of 8"));
    }
}
