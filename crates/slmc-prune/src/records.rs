//! Mask records of a pruning stage: every pruned module's [`Mask`] in one safetensors file.
//!
//! Layout: one u8 tensor `<module>.mask` of shape `[rows, ceil(cols / 8)]` per module (the
//! mask's packed bits, see [`crate::mask`]), and the header metadata `slmc.prune.masks`, a JSON
//! object `{module: [rows, cols]}` that gives the true column count.

use crate::PruneError;
use crate::mask::{Mask, bytes_per_row};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use slmc_formats::fsutil::atomic_write;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Masks by Hugging Face module name (`model.layers.3.mlp.down_proj`).
pub type Masks = BTreeMap<String, Mask>;

/// The metadata key holding the shapes.
const SHAPES_KEY: &str = "slmc.prune.masks";
/// Suffix of every mask tensor.
const SUFFIX: &str = ".mask";

/// Writes `masks` to one safetensors file, atomically (temporary name, then rename).
pub fn save_masks(masks: &Masks, path: &Path) -> Result<(), PruneError> {
    let file_error = |reason: String| PruneError::Mask { name: path.display().to_string(), reason };
    let mut shapes = serde_json::Map::new();
    let mut views = Vec::with_capacity(masks.len());
    for (name, mask) in masks {
        mask.validate(name)?;
        shapes.insert(name.clone(), serde_json::json!([mask.rows(), mask.cols()]));
        let shape = vec![mask.rows(), bytes_per_row(mask.cols())];
        let view = TensorView::new(Dtype::U8, shape, mask.packed()).map_err(|e| file_error(e.to_string()))?;
        views.push((format!("{name}{SUFFIX}"), view));
    }
    let meta = HashMap::from([(SHAPES_KEY.to_string(), serde_json::Value::Object(shapes).to_string())]);
    let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| file_error(e.to_string()))?;
    atomic_write(path, &bytes)?;
    Ok(())
}

/// Reads a file [`save_masks`] wrote, validating every shape, size and padding bit; a corrupt,
/// truncated or foreign file is a [`PruneError::Mask`] naming the file.
pub fn load_masks(path: &Path) -> Result<Masks, PruneError> {
    let bytes = std::fs::read(path).map_err(|e| PruneError::Io { path: path.into(), source: e })?;
    let bad = |reason: String| PruneError::Mask { name: path.display().to_string(), reason };
    let (_, header) =
        SafeTensors::read_metadata(&bytes).map_err(|e| bad(format!("not a safetensors file: {e:?}")))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(format!("not a safetensors file: {e:?}")))?;
    let shapes_text = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(SHAPES_KEY))
        .ok_or_else(|| bad(format!("no `{SHAPES_KEY}` metadata: not a slmc mask file")))?;
    let shapes: BTreeMap<String, (usize, usize)> =
        serde_json::from_str(shapes_text).map_err(|e| bad(format!("bad `{SHAPES_KEY}` metadata: {e}")))?;
    if let Some(extra) =
        st.names().into_iter().find(|t| !t.strip_suffix(SUFFIX).is_some_and(|m| shapes.contains_key(m)))
    {
        return Err(bad(format!("tensor {extra} is not a listed mask")));
    }
    let mut out = Masks::new();
    for (name, &(rows, cols)) in &shapes {
        let t = st.tensor(&format!("{name}{SUFFIX}")).map_err(|_| bad(format!("missing {name}{SUFFIX}")))?;
        let want = [rows, bytes_per_row(cols)];
        if t.dtype() != Dtype::U8 || t.shape() != want {
            return Err(bad(format!(
                "{name}{SUFFIX} is {:?} {:?}, expected U8 {want:?} for a {rows}x{cols} mask",
                t.dtype(),
                t.shape()
            )));
        }
        let mask = Mask::unchecked(rows, cols, t.data().to_vec());
        if let Some(reason) = mask.problem() {
            return Err(bad(format!("{name}: {reason}")));
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
        assert!(matches!(err, PruneError::Io { .. }), "{err}");
    }
}
