//! The unstructured kernels against llm-compressor 0.14.0.1 (whose kernels are bit-identical to
//! IST-DASLab/sparsegpt and locuslab/wanda) on one 96x160 layer with heavy-tailed inputs and a
//! dead input column: tests/fixtures/prune, made by scripts/make_prune_fixture.py.
//!
//! Masks must be identical. SparseGPT's kept weights differ only by the factorisation (the
//! reference factorises in f32, slmc in f64) and summation order.

// Reports its measured figures in the test output.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use burn::prelude::*;
use common::Fixture;
use slmc_calib::Hessian;
use slmc_prune::{MagnitudeScope, Mask, SparseGptOptions, Sparsity, magnitude, sparsegpt, wanda};

/// Largest |Δw| allowed between slmc's and llm-compressor's SparseGPT weights (weights are
/// ~0.05–0.3 in size; measured 9e-8, printed by the test).
const WEIGHT_ATOL: f32 = 1e-6;
/// Relative tolerance on SparseGPT's loss estimate.
const LOSS_RTOL: f64 = 1e-4;
/// Share of mask bits that may flip when the Hessian is slmc's `Hessian::mean()` instead of the
/// reference's (same data, different rounding: near-ties only).
const MAX_FLIPS_OTHER_HESSIAN: f64 = 1e-3;

/// Positions where two masks of the same shape differ.
fn mismatches(a: &Mask, b: &Mask) -> usize {
    a.to_pruned().iter().zip(b.to_pruned()).filter(|(x, y)| **x != *y).count()
}

/// `||(W − Ŵ) X||² / ||W X||²` on the calibration inputs (row-major weights).
fn output_error(w: &[f32], pruned: &[f32], rows: usize, cols: usize, h: &[f64]) -> f64 {
    let t = slmc_model::weights::transpose(w, rows, cols);
    let p = slmc_model::weights::transpose(pruned, rows, cols);
    slmc_calib::relative_output_error(&t, &p, rows, cols, h)
}

fn target(case: &serde_json::Value) -> Sparsity {
    match case["prune_n"].as_u64().unwrap() as usize {
        0 => Sparsity::Unstructured(case["sparsity"].as_f64().unwrap()),
        n => Sparsity::NofM { n, m: case["prune_m"].as_u64().unwrap() as usize },
    }
}

/// slmc's own calibration statistic on the fixture's inputs: `slmc_calib::Hessian::mean()`.
fn slmc_hessian(fx: &Fixture) -> Vec<f64> {
    let (s, l, c) = (fx.shape("sequences"), fx.shape("tokens_per_sequence"), fx.shape("cols"));
    let x = Tensor::<3>::from_data(TensorData::new(fx.f32s("inputs"), [s, l, c]), &Device::flex());
    let mut h = Hessian::new(c);
    h.add(&x);
    assert_eq!(h.tokens(), s * l);
    h.mean()
}

fn diag(h: &[f64], n: usize) -> Vec<f64> {
    (0..n).map(|i| h[i * n + i]).collect()
}

/// Every row has exactly `want` pruned weights.
fn assert_rows(mask: &Mask, want: usize, what: &str) {
    assert!((0..mask.rows()).all(|r| mask.row_count(r) == want), "{what}: a row without {want} pruned");
}

/// Checks the count rule of a per-row unstructured or N:M mask.
fn assert_count_rule(mask: &Mask, t: Sparsity, what: &str) {
    match t {
        Sparsity::Unstructured(r) => assert_rows(mask, (mask.cols() as f64 * r) as usize, what),
        Sparsity::NofM { n, m } => {
            assert!(mask.satisfies_n_m(n, m), "{what}: N:M broken");
            assert_rows(mask, mask.cols() / m * n, what); // hence exactly n in every group
        }
    }
}

#[test]
fn wanda_masks_equal_llm_compressor_from_its_scaler_and_from_the_slmc_hessian() {
    let fx = Fixture::load();
    let (rows, cols) = fx.dims();
    let w = fx.f32s("weight");
    let scaler = fx.f64s("scaler_row");
    let h_diag = diag(&slmc_hessian(&fx), cols);
    for name in ["wanda_50", "wanda_2of4", "wanda_4of8"] {
        let case = fx.case(name);
        let want = fx.mask(name);
        let from_scaler = wanda(&w, rows, cols, &scaler, target(case)).unwrap();
        assert_eq!(from_scaler, want, "{name}: mask from llm-compressor's scaler_row");
        let from_hessian = wanda(&w, rows, cols, &h_diag, target(case)).unwrap();
        assert_eq!(from_hessian, want, "{name}: mask from Hessian::mean()'s diagonal");
        assert_eq!(from_scaler.count() as u64, case["pruned"].as_u64().unwrap());
        assert_count_rule(&from_scaler, target(case), name);
        let dead = fx.meta["dead_column"].as_u64().unwrap() as usize;
        if let Sparsity::Unstructured(_) = target(case) {
            assert!((0..rows).all(|r| want.pruned(r, dead) == Some(true)), "{name}: dead column kept");
        }
    }
}

#[test]
fn magnitude_masks_equal_the_reference_rules() {
    let fx = Fixture::load();
    let (rows, cols) = fx.dims();
    let w = fx.f32s("weight");
    for (name, scope) in [
        ("magnitude_row_50", MagnitudeScope::Row),
        ("magnitude_2of4", MagnitudeScope::Row),
        ("magnitude_2of4", MagnitudeScope::Layer),
        ("magnitude_layer_50", MagnitudeScope::Layer),
    ] {
        let case = fx.case(name);
        let got = magnitude(&w, rows, cols, target(case), scope).unwrap();
        let want = fx.mask(name);
        assert_eq!(got, want, "{name} ({scope:?})");
        assert_eq!(got.count() as u64, case["pruned"].as_u64().unwrap());
        if scope == MagnitudeScope::Row {
            assert_count_rule(&got, target(case), name);
        }
    }
    // the per-layer rule prunes int(numel · 0.5) + 1 (no ties in this data), not a per-row count
    let layer = magnitude(&w, rows, cols, Sparsity::Unstructured(0.5), MagnitudeScope::Layer).unwrap();
    assert_eq!(layer.count(), rows * cols / 2 + 1);
    assert!((0..rows).any(|r| layer.row_count(r) != cols / 2));
}

#[test]
fn sparsegpt_masks_and_weights_match_llm_compressor() {
    let fx = Fixture::load();
    let (rows, cols) = fx.dims();
    let w = fx.f32s("weight");
    let h = fx.f64s("hessian");
    let h_slmc = slmc_hessian(&fx);
    let mut worst = 0f32;
    for name in ["sparsegpt_50", "sparsegpt_2of4", "sparsegpt_4of8"] {
        let case = fx.case(name);
        let t = target(case);
        let opts = SparseGptOptions {
            block_size: case["block_size"].as_u64().unwrap() as usize,
            damp: case["dampening_frac"].as_f64().unwrap(),
        };
        let (out, mask, stats) = sparsegpt(&w, rows, cols, &h, t, opts).unwrap();
        let want_mask = fx.mask(name);
        assert_eq!(mask, want_mask, "{name}: mask");
        assert_eq!(mask.count() as u64, case["pruned"].as_u64().unwrap());
        assert_eq!((stats.dead_columns, stats.retries, stats.damp), (1, 0, opts.damp));

        // pruned weights exactly 0; kept ones within the tolerance of the reference's
        let want_w = fx.f32s(&format!("{name}.weight"));
        let mut max_diff = 0f32;
        for (k, (&a, &b)) in out.iter().zip(&want_w).enumerate() {
            if mask.to_pruned()[k] {
                assert_eq!(a.to_bits(), 0, "{name}: pruned weight {k} is {a}");
            }
            max_diff = max_diff.max((a - b).abs());
        }
        eprintln!("{name}: max |Δw| vs llm-compressor {max_diff:.3e}");
        assert!(max_diff <= WEIGHT_ATOL, "{name}: max |Δw| {max_diff:e}");
        worst = worst.max(max_diff);
        // error compensation happened: kept weights moved away from the original
        assert!(out.iter().zip(&w).any(|(a, b)| *a != 0.0 && a != b));

        let loss = case["loss"].as_f64().unwrap();
        assert!((stats.loss - loss).abs() <= LOSS_RTOL * loss, "{name}: loss {} vs {loss}", stats.loss);

        // the count rule: N:M exactly n per group; unstructured int(numel · s) + 1 per block
        match t {
            Sparsity::NofM { .. } => assert_count_rule(&mask, t, name),
            Sparsity::Unstructured(s) => {
                let per_block: Vec<u64> = case["pruned_per_block"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap())
                    .collect();
                for (b, &want) in per_block.iter().enumerate() {
                    let c0 = b * opts.block_size;
                    let c1 = (c0 + opts.block_size).min(cols);
                    let got = (0..rows)
                        .flat_map(|r| (c0..c1).map(move |c| (r, c)))
                        .filter(|&(r, c)| mask.pruned(r, c) == Some(true))
                        .count();
                    assert_eq!(got as u64, want, "{name}: block {b}");
                    assert_eq!(
                        got,
                        (rows as f64 * (c1 - c0) as f64 * s) as usize + 1,
                        "{name}: block {b} rule"
                    );
                }
            }
        }

        // slmc's own statistic (Hessian::mean(): 1/tokens instead of 2/sequences, another
        // summation order) rounds differently, so near-ties may flip; nothing else changes
        let (out2, mask2, _) = sparsegpt(&w, rows, cols, &h_slmc, t, opts).unwrap();
        let flips = mismatches(&mask2, &want_mask);
        eprintln!("{name}: mask from Hessian::mean(): {flips} of {} differ", rows * cols);
        assert!(flips as f64 <= MAX_FLIPS_OTHER_HESSIAN * (rows * cols) as f64, "{name}: {flips} flips");
        if let Sparsity::NofM { n, m } = t {
            assert!(mask2.satisfies_n_m(n, m));
        }
        let e_ref = output_error(&w, &want_w, rows, cols, &h_slmc);
        let e_slmc = output_error(&w, &out2, rows, cols, &h_slmc);
        assert!((e_slmc - e_ref).abs() <= 1e-3 * e_ref, "{name}: output error {e_slmc} vs {e_ref}");
    }
    eprintln!(
        "SparseGPT: worst max |Δw| vs llm-compressor over all cases {worst:.3e} (tolerance {WEIGHT_ATOL:e})"
    );
}

#[test]
fn sparsegpt_beats_wanda_and_magnitude_on_the_layer_objective() {
    // The point of the weight update: at the same 50 %, ||(W − Ŵ) X||² is lowest for SparseGPT.
    let fx = Fixture::load();
    let (rows, cols) = fx.dims();
    let w = fx.f32s("weight");
    let h = slmc_hessian(&fx);
    let err = |pruned: &[f32]| output_error(&w, pruned, rows, cols, &h);
    let t = Sparsity::Unstructured(0.5);
    let (sgpt, _, _) = sparsegpt(&w, rows, cols, &h, t, SparseGptOptions::default()).unwrap();
    let mut wd = w.clone();
    wanda(&w, rows, cols, &diag(&h, cols), t).unwrap().apply(&mut wd).unwrap();
    let mut mg = w.clone();
    magnitude(&w, rows, cols, t, MagnitudeScope::Row).unwrap().apply(&mut mg).unwrap();
    let (e_s, e_w, e_m) = (err(&sgpt), err(&wd), err(&mg));
    assert!(e_s < e_w && e_w < e_m, "SparseGPT {e_s:.4} Wanda {e_w:.4} magnitude {e_m:.4}");
}
