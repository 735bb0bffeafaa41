//! Mask record files: an exact round trip, and a clear `PruneError::Mask` (never a panic) for
//! every kind of corrupt or foreign file.

mod common;

use common::Fixture;
use safetensors::{Dtype, tensor::TensorView};
use slmc_formats::FormatError;
use slmc_prune::{Mask, Masks, PruneError, load_masks, save_masks};
use std::collections::HashMap;
use std::path::Path;

fn fixture_masks() -> Masks {
    let fx = Fixture::load();
    let mut masks = Masks::new();
    for (k, name) in ["wanda_50", "sparsegpt_2of4", "magnitude_layer_50"].iter().enumerate() {
        masks.insert(format!("model.layers.{k}.mlp.down_proj"), fx.mask(name));
    }
    // a width that is not a multiple of 8 (padding bits) and an empty mask
    let odd: Vec<bool> = (0..5 * 13).map(|k| k % 2 == 1).collect();
    masks.insert("model.layers.3.self_attn.o_proj".into(), Mask::from_pruned(5, 13, &odd).unwrap());
    masks.insert("lm_head".into(), Mask::new(4, 8).unwrap());
    masks
}

/// Writes a safetensors file by hand.
fn write_raw(path: &Path, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)], meta: Option<&str>) {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let meta = meta.map(|m| HashMap::from([("slmc.prune.masks".to_string(), m.to_string())]));
    std::fs::write(path, safetensors::serialize(views, meta).unwrap()).unwrap();
}

fn mask_error(path: &Path) -> String {
    match load_masks(path) {
        Err(e @ (PruneError::Mask { .. } | PruneError::Format(FormatError::Record { .. }))) => e.to_string(),
        other => panic!("expected a mask error, got {other:?}"),
    }
}

#[test]
fn masks_round_trip_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("masks.safetensors");
    let masks = fixture_masks();
    save_masks(&masks, &path).unwrap();
    let back = load_masks(&path).unwrap();
    assert_eq!(back, masks);
    let odd = &back["model.layers.3.self_attn.o_proj"];
    assert_eq!((odd.rows(), odd.cols(), odd.count()), (5, 13, 32));
    assert!(back["model.layers.1.mlp.down_proj"].satisfies_n_m(2, 4));
}

#[test]
fn truncated_or_garbage_files_are_mask_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("masks.safetensors");
    save_masks(&fixture_masks(), &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    for cut in [0, 4, 8, 20, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let e = mask_error(&path);
        assert!(e.contains("not a safetensors file"), "cut at {cut}: {e}");
    }
    std::fs::write(&path, b"definitely not a mask file, just some text").unwrap();
    assert!(mask_error(&path).contains("not a safetensors file"));
}

#[test]
fn inconsistent_contents_are_mask_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("masks.safetensors");
    let shapes = r#"{"m": [2, 10]}"#;
    let good = vec![0u8, 1, 2, 3];

    write_raw(&path, &[("m.mask", Dtype::U8, vec![2, 2], good.clone())], None);
    assert!(mask_error(&path).contains("no `slmc.prune.masks` metadata"));

    write_raw(&path, &[("m.mask", Dtype::U8, vec![2, 2], good.clone())], Some("[1, 2"));
    assert!(mask_error(&path).contains("bad `slmc.prune.masks` metadata"));

    write_raw(
        &path,
        &[("m.mask", Dtype::U8, vec![2, 2], good.clone())],
        Some(r#"{"m": [2, 10], "n": [1, 8]}"#),
    );
    assert!(mask_error(&path).contains("missing n.mask"));

    write_raw(
        &path,
        &[("m.mask", Dtype::U8, vec![2, 2], good.clone()), ("x", Dtype::U8, vec![1], vec![0])],
        Some(shapes),
    );
    assert!(mask_error(&path).contains("tensor x is not a listed mask"));

    write_raw(&path, &[("m.mask", Dtype::U8, vec![4], good.clone())], Some(shapes));
    assert!(mask_error(&path).contains("expected a 2-d U8 tensor"));

    write_raw(&path, &[("m.mask", Dtype::U8, vec![2, 2], good.clone())], Some(r#"{"m": [2, 17]}"#));
    assert!(mask_error(&path).contains("expected [2, 3] for a 2x17 mask"));

    write_raw(&path, &[("m.mask", Dtype::I8, vec![2, 2], good.clone())], Some(shapes));
    assert!(mask_error(&path).contains("expected a 2-d U8 tensor"));

    // bit 2 of row 0's second byte is column 10: past the last column
    write_raw(&path, &[("m.mask", Dtype::U8, vec![2, 2], vec![0, 0b100, 0, 0])], Some(shapes));
    assert!(mask_error(&path).contains("m: bits set past the last column"));

    // and the well-formed version of the same file loads
    write_raw(&path, &[("m.mask", Dtype::U8, vec![2, 2], vec![0xff, 0b11, 0, 1])], Some(shapes));
    let m = &load_masks(&path).unwrap()["m"];
    assert_eq!((m.count(), m.row_count(0), m.pruned(1, 8)), (11, 10, Some(true)));
}
