//! The exact result of quantizing one linear module: integer codes, per-(row, group) scales and
//! zero points. Exporters consume records, so a GGUF or GPTQ file holds exactly the codes the
//! quantizer chose; the model itself carries the matching fake-quantized weights.

use crate::QuantError;
use crate::grid::{Grid, Params};
use safetensors::Dtype;
use slmc_formats::record_file::{RecordFile, RecordTensor, read_bytes, write_records};
use std::collections::BTreeMap;
use std::path::Path;

/// One quantized `[rows = out_features, cols = in_features]` weight.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantRecord {
    /// The grid the codes live on.
    pub grid: Grid,
    /// Output features.
    pub rows: usize,
    /// Input features.
    pub cols: usize,
    /// Codes in `0..=maxq`, row-major `[rows, cols]` (Hugging Face layout).
    pub codes: Vec<u8>,
    /// Scales, row-major `[rows, groups]`.
    pub scales: Vec<f32>,
    /// Zero points, row-major `[rows, groups]`.
    pub zeros: Vec<u8>,
}

impl QuantRecord {
    /// Groups per row.
    pub fn groups(&self) -> usize {
        self.grid.groups(self.cols)
    }

    /// Scale and zero of row `r`, group `g`.
    pub fn params(&self, r: usize, g: usize) -> Params {
        let i = r * self.groups() + g;
        Params { scale: self.scales[i], zero: self.zeros[i] }
    }

    /// The fake-quantized weight, row-major `[rows, cols]`.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.rows * self.cols);
        for r in 0..self.rows {
            for c in 0..self.cols {
                out.push(Grid::dequant(self.codes[r * self.cols + c], self.params(r, self.grid.group_of(c))));
            }
        }
        out
    }

    /// Checks the internal shapes (records read from disk are untrusted).
    pub fn validate(&self, name: &str) -> Result<(), QuantError> {
        let bad = |reason: String| Err(QuantError::Record { name: name.into(), reason });
        if !matches!(self.grid.bits, 2 | 3 | 4 | 8) {
            return bad(format!("{} bits is not 2, 3, 4 or 8", self.grid.bits));
        }
        if self.grid.group_size == Some(0) {
            return bad("group size 0".into());
        }
        let g = self.groups();
        if self.codes.len() != self.rows * self.cols {
            return bad(format!("{} codes for a {}x{} weight", self.codes.len(), self.rows, self.cols));
        }
        if self.scales.len() != self.rows * g || self.zeros.len() != self.rows * g {
            return bad(format!(
                "{} scales / {} zeros for {} rows x {g} groups",
                self.scales.len(),
                self.zeros.len(),
                self.rows
            ));
        }
        let maxq = self.grid.maxq();
        if self.codes.iter().chain(&self.zeros).any(|&c| u32::from(c) > maxq) {
            return bad(format!("a code or zero point above {maxq}"));
        }
        let sym_zero = self.grid.sym_zero();
        if self.grid.sym && self.zeros.iter().any(|&z| u32::from(z) != sym_zero) {
            return bad(format!("a symmetric grid with a zero point other than {sym_zero}"));
        }
        if !self.grid.sym && self.zeros.contains(&0) {
            return bad("an asymmetric zero point of 0 (slmc keeps them ≥ 1)".into());
        }
        if self.scales.iter().any(|s| !s.is_finite() || *s <= 0.0) {
            return bad("a scale that is not a positive finite number".into());
        }
        Ok(())
    }
}

/// Records by module name (`model.layers.0.self_attn.q_proj`).
pub type Records = BTreeMap<String, QuantRecord>;

fn grid_json(g: &Grid) -> serde_json::Value {
    serde_json::json!({"bits": g.bits, "group_size": g.group_size, "sym": g.sym, "f16_scales": g.f16_scales})
}

fn grid_from_json(v: &serde_json::Value) -> Option<Grid> {
    Some(Grid {
        bits: u8::try_from(v.get("bits")?.as_u64()?).ok()?,
        group_size: match v.get("group_size")? {
            serde_json::Value::Null => None,
            n => Some(n.as_u64()? as usize),
        },
        sym: v.get("sym")?.as_bool()?,
        f16_scales: v.get("f16_scales")?.as_bool()?,
    })
}

/// The metadata key holding every module's grid.
const GRIDS_KEY: &str = "slmc.quant.grids";

/// Writes records to one record file (`<module>.codes` u8 `[rows, cols]`, `<module>.scales`
/// f32 and `<module>.zeros` u8 `[rows, groups]`; grids in the header metadata), atomically.
pub fn save_records(records: &Records, path: &Path) -> Result<(), QuantError> {
    let mut grids = serde_json::Map::new();
    let mut tensors = Vec::new();
    for (name, r) in records {
        grids.insert(name.clone(), grid_json(&r.grid));
        let g = r.groups();
        tensors.push(RecordTensor::u8(format!("{name}.codes"), vec![r.rows, r.cols], r.codes.clone()));
        tensors.push(RecordTensor::f32(format!("{name}.scales"), vec![r.rows, g], &r.scales));
        tensors.push(RecordTensor::u8(format!("{name}.zeros"), vec![r.rows, g], r.zeros.clone()));
    }
    Ok(write_records(path, &tensors, Some((GRIDS_KEY, &serde_json::Value::Object(grids))))?)
}

/// Reads records written by [`save_records`], validating every shape.
pub fn load_records(path: &Path) -> Result<Records, QuantError> {
    let bytes = read_bytes(path)?;
    let file = RecordFile::parse(path, &bytes, Some(GRIDS_KEY))?;
    let grids = file.meta.as_object().ok_or_else(|| file.error(format!("`{GRIDS_KEY}` is not an object")))?;
    let mut out = Records::new();
    for (name, g) in grids {
        let grid = grid_from_json(g).ok_or_else(|| file.error(format!("bad grid for {name}")))?;
        let (shape, codes) = file.tensor(&format!("{name}.codes"), Dtype::U8, 2)?;
        let (_, scales) = file.f32s(&format!("{name}.scales"), 2)?;
        let (_, zeros) = file.tensor(&format!("{name}.zeros"), Dtype::U8, 2)?;
        let rec = QuantRecord {
            grid,
            rows: shape[0],
            cols: shape[1],
            codes: codes.to_vec(),
            scales,
            zeros: zeros.to_vec(),
        };
        rec.validate(name)?;
        out.insert(name.clone(), rec);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_roundtrip_through_safetensors_and_bad_files_are_refused() {
        let grid = Grid { bits: 4, group_size: Some(2), sym: false, f16_scales: true };
        let rec = QuantRecord {
            grid,
            rows: 2,
            cols: 3,
            codes: vec![0, 1, 15, 7, 8, 9],
            scales: vec![0.5, 0.25, 1.0, 2.0],
            zeros: vec![1, 2, 3, 4],
        };
        assert_eq!(rec.dequantize(), vec![-0.5, 0.0, 3.25, 4.0, 5.0, 10.0]);
        let mut records = Records::new();
        records.insert("model.layers.0.mlp.down_proj".into(), rec.clone());
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("q.safetensors");
        save_records(&records, &path).unwrap();
        assert_eq!(load_records(&path).unwrap(), records);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert!(load_records(&path).unwrap_err().to_string().contains("not a safetensors file"));
        let mut bad = rec.clone();
        bad.codes[0] = 16;
        assert!(bad.validate("x").unwrap_err().to_string().contains("above 15"));
        let mut bad = rec.clone();
        bad.grid.group_size = Some(0);
        assert!(bad.validate("x").unwrap_err().to_string().contains("group size 0"));
        let mut bad = rec;
        bad.grid.sym = true;
        assert!(bad.validate("x").unwrap_err().to_string().contains("zero point other than 8"));
    }
}
