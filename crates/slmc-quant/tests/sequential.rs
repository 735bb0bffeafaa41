//! The block-by-block driver on a real (tiny) checkpoint: records match the model's weights,
//! GPTQ beats RTN on held-out text, and a stopped run resumes to identical codes.

use burn::prelude::Device;
use slmc_model::HfModel;
use slmc_quant::{Control, GptqOptions, Grid, Method, QuantEvent, QuantizeConfig, quantize};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models").join(name)
}

fn calibration(n: usize, seq: usize, vocab: usize) -> Vec<Vec<u32>> {
    // A deterministic, non-uniform token stream (a small LCG), cut into windows.
    let mut s = 12345u64;
    (0..n)
        .map(|_| {
            (0..seq)
                .map(|_| {
                    s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let r = (s >> 33) as usize;
                    (r % 7 + (r >> 8) % (vocab / 3)) as u32
                })
                .collect()
        })
        .collect()
}

fn config(model: &slmc_model::CausalLm, method: Method) -> QuantizeConfig {
    QuantizeConfig {
        method,
        grid: Grid { bits: 4, group_size: Some(32), sym: true, f16_scales: true },
        true_sequential: true,
        targets: model.config.linear_modules().into_iter().collect(),
        batch_size: 4,
        keep_masks: Default::default(),
    }
}

fn nll(model: &slmc_model::CausalLm, windows: &[Vec<u32>]) -> f64 {
    let rows: Vec<Vec<u32>> = windows.to_vec();
    let spec = slmc_model::perplexity::WindowSpec { max_length: 64, stride: 64 };
    slmc_model::perplexity::evaluate(model, &rows, spec, 4, &mut |_, _| {}).unwrap().mean_nll()
}

#[test]
fn gptq_records_are_the_model_weights_and_beat_rtn() {
    let device = Device::flex();
    let hf = HfModel::load(&fixture("llama_gqa"), &device).unwrap();
    let vocab = hf.config.vocab_size;
    let calib = calibration(16, 64, vocab);
    let held_out = calibration(40, 64, vocab).split_off(16);
    let dense = nll(&hf.model, &held_out);

    let cfg = config(&hf.model, Method::Gptq(GptqOptions::default()));
    let mut modules = Vec::new();
    let (gptq_model, records) = quantize(hf.model.clone(), &cfg, &calib, Control::default(), &mut |e| {
        if let QuantEvent::Module(m) = e {
            modules.push(m.clone());
        }
    })
    .unwrap();
    assert_eq!(records.len(), gptq_model.config.linear_modules().len());
    assert!(modules.iter().all(|m| m.rel_error.is_some_and(|e| e > 0.0 && e < 0.1)), "{modules:?}");
    // The model carries exactly the dequantized codes.
    let weights = slmc_model::weights::export(&gptq_model);
    for (name, rec) in &records {
        let w = weights.iter().find(|t| t.name == format!("{name}.weight")).unwrap();
        assert_eq!(w.values, rec.dequantize(), "{name}");
    }
    let (rtn_model, _) =
        quantize(hf.model.clone(), &config(&hf.model, Method::Rtn), &[], Control::default(), &mut |_| {})
            .unwrap();
    let (g, r) = (nll(&gptq_model, &held_out) - dense, nll(&rtn_model, &held_out) - dense);
    assert!(g < r, "NLL increase: GPTQ {g:.5} vs RTN {r:.5}");
}

#[test]
fn a_stopped_run_resumes_from_the_last_finished_block_with_identical_codes() {
    let device = Device::flex();
    let hf = HfModel::load(&fixture("phi3_fused"), &device).unwrap();
    let calib = calibration(8, 32, hf.config.vocab_size);
    let mut cfg = config(&hf.model, Method::Gptq(GptqOptions { act_order: true, ..Default::default() }));
    cfg.grid = Grid { bits: 3, group_size: None, sym: false, f16_scales: true };
    let (_, whole) = quantize(hf.model.clone(), &cfg, &calib, Control::default(), &mut |_| {}).unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let ctl = Control { checkpoint_dir: Some(tmp.path()), stop_after_block: Some(0), ..Default::default() };
    let err = quantize(hf.model.clone(), &cfg, &calib, ctl, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("interrupted after block 0"), "{err}");
    assert!(tmp.path().join("block-0000.safetensors").is_file());
    assert!(!tmp.path().join("block-0001.safetensors").exists());
    let mut resumed_blocks = None;
    let mut started = Vec::new();
    let ctl = Control { checkpoint_dir: Some(tmp.path()), ..Default::default() };
    let (_, resumed) = quantize(hf.model.clone(), &cfg, &calib, ctl, &mut |e| match e {
        QuantEvent::Resumed { blocks } => resumed_blocks = Some(blocks),
        QuantEvent::Block { index, .. } => started.push(index),
        _ => {}
    })
    .unwrap();
    assert_eq!(resumed_blocks, Some(1));
    assert_eq!(started, vec![1]);
    assert_eq!(resumed, whole);
}
