//! OWL layer sparsities against llm-compressor 0.14.0.1's own
//! `SparsityModifierBase._infer_owl_layer_sparsity` (tests/fixtures/prune, `owl.*`).

mod common;

use common::Fixture;
use slmc_prune::{ScoredLinear, outlier_ratio, owl_layer_sparsity};

/// Absolute tolerance on ratios (percent) and sparsities (f64 formulas on identical inputs).
const TOL: f64 = 1e-12;

#[test]
fn owl_sparsities_equal_llm_compressor() {
    let fx = Fixture::load();
    let owl = &fx.meta["owl"];
    let blocks = owl["blocks"].as_u64().unwrap() as usize;
    let shape: Vec<usize> =
        owl["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    let (target, m, lambda) =
        (owl["target"].as_f64().unwrap(), owl["owl_m"].as_f64().unwrap(), owl["owl_lmbda"].as_f64().unwrap());
    let want_ratios: Vec<f64> =
        owl["outlier_ratios_percent"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let want: Vec<f64> = owl["sparsities"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();

    let mut ratios = Vec::new();
    for l in 0..blocks {
        let data: Vec<(Vec<f32>, Vec<f64>)> = owl["linears"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                let n = n.as_str().unwrap();
                let act = fx.f32s(&format!("owl.{l}.{n}.act")).into_iter().map(f64::from).collect();
                (fx.f32s(&format!("owl.{l}.{n}.weight")), act)
            })
            .collect();
        let linears: Vec<ScoredLinear<'_>> = data
            .iter()
            .map(|(w, a)| ScoredLinear { w, rows: shape[0], cols: shape[1], col_norms: a })
            .collect();
        ratios.push(outlier_ratio(&linears, m).unwrap());
    }
    for (l, (a, b)) in ratios.iter().zip(&want_ratios).enumerate() {
        assert!((a - b).abs() <= TOL, "block {l}: outlier ratio {a} vs {b}");
    }
    assert!(ratios.iter().any(|&r| r != ratios[0]), "the fixture's blocks must differ");

    let got = owl_layer_sparsity(&ratios, target, lambda).unwrap();
    for (l, (a, b)) in got.iter().zip(&want).enumerate() {
        assert!((a - b).abs() <= TOL, "block {l}: sparsity {a} vs {b}");
    }
    let mean = got.iter().sum::<f64>() / got.len() as f64;
    assert!((mean - target).abs() <= TOL, "mean {mean}");
    let (lo, hi) = got.iter().fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    assert!((hi - lo - 2.0 * lambda).abs() <= TOL, "spread {}", hi - lo);
    assert!(lo >= target - 2.0 * lambda && hi <= target + 2.0 * lambda);
    // more outliers, less pruning
    let most = (0..blocks).max_by(|&a, &b| ratios[a].total_cmp(&ratios[b])).unwrap();
    assert_eq!(got[most], lo);
}
