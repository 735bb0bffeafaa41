//! GPTQ on a single synthetic layer: the properties docs/algorithms.md §3.6 lists as oracles.

use rand::{RngExt, SeedableRng, rngs::StdRng};
use slmc_model::weights::transpose;
use slmc_quant::{GptqOptions, Grid, gptq, output_energy, relative_output_error, rtn};

/// A `[rows, cols]` weight in `[cols, rows]` layout and the Hessian `(1/T) XᵀX` of correlated
/// inputs with uneven column scales (so error feedback and act-order both matter).
fn layer(rows: usize, cols: usize, tokens: usize, seed: u64) -> (Vec<f32>, Vec<f64>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut normal = move || -> f64 {
        let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random::<f64>());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    };
    let wt: Vec<f32> = (0..rows * cols).map(|_| (normal() * 0.05) as f32).collect();
    let rank = cols / 2;
    let mix: Vec<f64> = (0..rank * cols).map(|k| normal() / (1.0 + (k / cols) as f64 * 0.2)).collect();
    let scale: Vec<f64> = (0..cols).map(|c| 0.1 + 2.9 * ((c * 7919) % cols) as f64 / cols as f64).collect();
    let mut h = vec![0.0; cols * cols];
    for _ in 0..tokens {
        let z: Vec<f64> = (0..rank).map(|_| normal()).collect();
        let x: Vec<f64> = (0..cols)
            .map(|c| (0..rank).map(|k| z[k] * mix[k * cols + c]).sum::<f64>() * scale[c] + 0.05 * normal())
            .collect();
        for i in 0..cols {
            for j in 0..cols {
                h[i * cols + j] += x[i] * x[j];
            }
        }
    }
    h.iter_mut().for_each(|v| *v /= tokens as f64);
    (wt, h)
}

fn error_of(rec: &slmc_quant::QuantRecord, wt: &[f32], h: &[f64]) -> f64 {
    relative_output_error(wt, &transpose(&rec.dequantize(), rec.rows, rec.cols), rec.rows, rec.cols, h)
}

#[test]
fn gptq_beats_rtn_on_the_calibration_objective_at_every_setting() {
    let (rows, cols) = (48, 128);
    let (wt, h) = layer(rows, cols, 400, 1);
    for (bits, group_size, sym, act_order) in [
        (4, None, false, false),
        (4, Some(32), true, false),
        (4, Some(32), true, true),
        (3, None, false, false),
        (3, Some(64), false, true),
        (2, Some(32), false, false),
        (8, Some(32), true, false),
    ] {
        let grid = Grid { bits, group_size, sym, f16_scales: true };
        let (q, stats) =
            gptq(&wt, rows, cols, &h, grid, GptqOptions { act_order, ..Default::default() }).unwrap();
        let (e_gptq, e_rtn) = (error_of(&q, &wt, &h), error_of(&rtn(&wt, rows, cols, grid), &wt, &h));
        assert_eq!(stats.retries, 0);
        assert!(
            e_gptq < 0.8 * e_rtn,
            "{bits}-bit g{group_size:?} sym {sym} act {act_order}: GPTQ {e_gptq:.3e} vs RTN {e_rtn:.3e}"
        );
    }
}

#[test]
fn gptq_loss_estimate_equals_the_output_error_without_damping() {
    // Σ (w−q)²/(2d²) = ½ tr(Δ H Δᵀ) exactly when H is not damped (OBS bookkeeping,
    // docs/algorithms.md §3.6).
    let (rows, cols) = (16, 64);
    let (wt, h) = layer(rows, cols, 300, 2);
    let grid = Grid { bits: 3, group_size: None, sym: false, f16_scales: false };
    let (q, stats) =
        gptq(&wt, rows, cols, &h, grid, GptqOptions { damp: 1e-9, ..Default::default() }).unwrap();
    let deq_t = transpose(&q.dequantize(), rows, cols);
    let delta: Vec<f64> = wt.iter().zip(&deq_t).map(|(&a, &b)| f64::from(a) - f64::from(b)).collect();
    let out_err = output_energy(&delta, rows, cols, &h);
    assert!((stats.loss - 0.5 * out_err).abs() < 2e-3 * out_err, "{} vs {}", stats.loss, 0.5 * out_err);
}

#[test]
fn block_size_changes_rounding_only() {
    let (rows, cols) = (32, 256);
    let (wt, h) = layer(rows, cols, 500, 3);
    for group_size in [None, Some(32)] {
        let grid = Grid { bits: 4, group_size, sym: true, f16_scales: true };
        let run = |block_size| {
            gptq(&wt, rows, cols, &h, grid, GptqOptions { block_size, ..Default::default() }).unwrap().0
        };
        let (a, b) = (run(32), run(128));
        let differ = a.codes.iter().zip(&b.codes).filter(|(x, y)| x != y).count();
        assert!(
            differ * 200 <= a.codes.len(),
            "group {group_size:?}: {differ} of {} codes differ",
            a.codes.len()
        );
    }
}

#[test]
fn dead_columns_are_zeroed_and_a_singular_hessian_raises_damping() {
    let (rows, cols) = (8, 32);
    let (wt, mut h) = layer(rows, cols, 200, 4);
    for j in 0..cols {
        h[5 * cols + j] = 0.0;
        h[j * cols + 5] = 0.0;
    }
    let grid = Grid { bits: 4, group_size: None, sym: false, f16_scales: true };
    let (q, stats) = gptq(&wt, rows, cols, &h, grid, GptqOptions::default()).unwrap();
    assert_eq!(stats.dead_columns, 1);
    let deq = q.dequantize();
    assert!((0..rows).all(|r| deq[r * cols + 5] == 0.0));
    // Rank-1 Hessian, no damping: the factorisation fails until damping is raised.
    let v: Vec<f64> = (0..cols).map(|c| 1.0 + c as f64).collect();
    let h1: Vec<f64> = (0..cols * cols).map(|k| v[k / cols] * v[k % cols]).collect();
    let (_, stats) =
        gptq(&wt, rows, cols, &h1, grid, GptqOptions { damp: 0.0, ..Default::default() }).unwrap();
    assert!(stats.retries >= 1 && stats.damp > 0.0, "{stats:?}");
}

#[test]
fn a_sparsity_mask_survives_gptq_and_its_error_is_compensated() {
    let (rows, cols) = (32, 128);
    let (mut wt, h) = layer(rows, cols, 400, 5);
    // A 2:4 mask on the smallest two |w| of every group of four input columns, applied first.
    let mut keep = vec![true; rows * cols];
    for r in 0..rows {
        for g in 0..cols / 4 {
            let mut idx: Vec<usize> = (g * 4..g * 4 + 4).collect();
            idx.sort_by(|&a, &b| wt[a * rows + r].abs().total_cmp(&wt[b * rows + r].abs()));
            for &c in &idx[..2] {
                keep[r * cols + c] = false;
                wt[c * rows + r] = 0.0;
            }
        }
    }
    let grid = Grid { bits: 4, group_size: Some(32), sym: true, f16_scales: true };
    let (masked, _) =
        slmc_quant::gptq_masked(&wt, rows, cols, &h, grid, GptqOptions::default(), Some(&keep)).unwrap();
    let (plain, _) = gptq(&wt, rows, cols, &h, grid, GptqOptions::default()).unwrap();
    let deq = masked.dequantize();
    let lost = (0..rows * cols).filter(|&k| !keep[k] && deq[k] != 0.0).count();
    assert_eq!(lost, 0, "every pruned weight dequantizes to exactly 0");
    // Plain GPTQ spreads error into the zeros; the masked run keeps them at a small extra cost.
    let plain_deq = plain.dequantize();
    assert!((0..rows * cols).any(|k| !keep[k] && plain_deq[k] != 0.0), "the test needs GPTQ to move zeros");
    let (e_masked, e_plain) = (error_of(&masked, &wt, &h), error_of(&plain, &wt, &h));
    let rtn_then_mask = {
        let mut r = rtn(&wt, rows, cols, grid);
        for (k, &kp) in keep.iter().enumerate() {
            if !kp {
                r.codes[k] = grid.sym_zero() as u8;
            }
        }
        error_of(&r, &wt, &h)
    };
    assert!(e_masked < rtn_then_mask, "masked GPTQ {e_masked:.3e} vs masked RTN {rtn_then_mask:.3e}");
    assert!(e_masked < 3.0 * e_plain, "masked GPTQ {e_masked:.3e} vs unmasked {e_plain:.3e}");
}
