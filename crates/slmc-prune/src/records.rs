//! Mask records of a pruning stage: every pruned module's [`Mask`] in one safetensors file.
//!
//! Layout: one u8 tensor `<module>.mask` of shape `[rows, ceil(cols / 8)]` per module (the
//! mask's packed bits, see [`crate::mask`]), and the header metadata `slmc.prune.masks`, a JSON
//! object `{module: [rows, cols]}` that gives the true column count.

use crate::PruneError;
use crate::mask::{Mask, bytes_per_row};
use safetensors::Dtype;
use slmc_formats::record_file::{RecordFile, RecordTensor, read_bytes, write_records};
use std::collections::BTreeMap;
use std::path::Path;

/// Masks by Hugging Face module name (`model.layers.3.mlp.down_proj`).
pub type Masks = BTreeMap<String, Mask>;

/// The metadata key holding the shapes.
const SHAPES_KEY: &str = "slmc.prune.masks";
/// Suffix of every mask tensor.
const SUFFIX: &str = ".mask";

/// Writes `masks` to one record file, atomically (temporary name, then rename).
pub fn save_masks(masks: &Masks, path: &Path) -> Result<(), PruneError> {
    let mut shapes = serde_json::Map::new();
    let mut tensors = Vec::with_capacity(masks.len());
    for (name, mask) in masks {
        mask.validate(name)?;
        shapes.insert(name.clone(), serde_json::json!([mask.rows(), mask.cols()]));
        let shape = vec![mask.rows(), bytes_per_row(mask.cols())];
        tensors.push(RecordTensor::u8(format!("{name}{SUFFIX}"), shape, mask.packed().to_vec()));
    }
    Ok(write_records(path, &tensors, Some((SHAPES_KEY, &serde_json::Value::Object(shapes))))?)
}

/// Reads a file [`save_masks`] wrote, validating every shape, size and padding bit; a corrupt,
/// truncated or foreign file is an error naming the file.
pub fn load_masks(path: &Path) -> Result<Masks, PruneError> {
    let bytes = read_bytes(path)?;
    let file = RecordFile::parse(path, &bytes, Some(SHAPES_KEY))?;
    let shapes: BTreeMap<String, (usize, usize)> = serde_json::from_value(file.meta.clone())
        .map_err(|e| file.error(format!("bad `{SHAPES_KEY}` metadata: {e}")))?;
    if let Some(extra) =
        file.names().into_iter().find(|t| !t.strip_suffix(SUFFIX).is_some_and(|m| shapes.contains_key(m)))
    {
        return Err(file.error(format!("tensor {extra} is not a listed mask")).into());
    }
    let mut out = Masks::new();
    for (name, &(rows, cols)) in &shapes {
        let (shape, data) = file.tensor(&format!("{name}{SUFFIX}"), Dtype::U8, 2)?;
        let want = [rows, bytes_per_row(cols)];
        if shape != want {
            return Err(file
                .error(format!("{name}{SUFFIX} is {shape:?}, expected {want:?} for a {rows}x{cols} mask"))
                .into());
        }
        let mask = Mask::unchecked(rows, cols, data.to_vec());
        if let Some(reason) = mask.problem() {
            return Err(file.error(format!("{name}: {reason}")).into());
        }
        out.insert(name.clone(), mask);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Masks {
        let flags: Vec<bool> = (0..3 * 10).map(|k| k % 3 == 0).collect();
        let mut masks = Masks::new();
        masks.insert("model.layers.0.mlp.down_proj".into(), Mask::from_pruned(3, 10, &flags).unwrap());
        masks.insert("model.layers.1.self_attn.q_proj".into(), Mask::new(2, 16).unwrap());
        masks
    }

    #[test]
    fn masks_round_trip_exactly() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("masks.safetensors");
        save_masks(&sample(), &path).unwrap();
        assert_eq!(load_masks(&path).unwrap(), sample());
        save_masks(&Masks::new(), &path).unwrap();
        assert!(load_masks(&path).unwrap().is_empty());
    }

    #[test]
    fn a_missing_file_is_an_io_error() {
        let err = load_masks(Path::new("/nonexistent/masks.safetensors")).unwrap_err();
        assert!(matches!(err, PruneError::Format(slmc_formats::FormatError::Io { .. })), "{err}");
    }
}
