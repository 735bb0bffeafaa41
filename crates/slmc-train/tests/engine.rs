//! The training engine end to end on a tiny model: it learns, a killed run resumes on the same
//! loss curve, and a non-finite loss stops the run keeping the last good checkpoint.

use burn::prelude::*;
use slmc_config::ModelConfig;
use slmc_data::{Packed, Sequences, SourceOptions, TokenFile, build_token_file};
use slmc_model::CausalLm;
use slmc_model::model::Init;
use slmc_recipe::TrainParams;
use slmc_train::{Batch, CrossEntropy, Event, StepLoss, TrainData, TrainError, TrainOptions, train};
use std::path::Path;

fn config() -> ModelConfig {
    ModelConfig::from_json_str(
        r#"{"model_type":"llama","vocab_size":64,"hidden_size":32,"intermediate_size":64,"num_hidden_layers":2,
            "num_attention_heads":4,"num_key_value_heads":2,"max_position_embeddings":64,"rms_norm_eps":1e-5}"#,
        "test",
    )
    .unwrap()
}

/// A corpus with structure to learn: repeating arithmetic progressions mod 60.
fn data(dir: &Path) -> TrainData {
    let rows: String = (0..40)
        .map(|r| {
            let ids: Vec<u32> = (0..50).map(|i| ((r * 7 + i * (r % 5 + 1)) % 60) as u32 + 2).collect();
            format!("{{\"input_ids\": {ids:?}}}\n")
        })
        .collect();
    let src = dir.join("rows.jsonl");
    std::fs::write(&src, rows).unwrap();
    let out = dir.join("train.tokens");
    build_token_file(&[(src, SourceOptions::default())], &out, 1, &mut |_| Ok(vec![]), &mut |_, _| {})
        .unwrap();
    let (train, eval) = Packed::new(TokenFile::open(&out).unwrap(), 16).unwrap().split_tail(0.1).unwrap();
    TrainData { train: Sequences::Packed(train), eval: Some(Sequences::Packed(eval)) }
}

fn params(steps: usize) -> TrainParams {
    TrainParams {
        steps,
        batch_size: 4,
        grad_accum: 2,
        lr: 1e-2,
        min_lr: 1e-3,
        warmup_steps: 2,
        eval_sequences: 8,
        checkpoint_every: 3,
        log_every: 1,
        ..TrainParams::default()
    }
}

fn fresh_model() -> CausalLm {
    let dev = Device::flex();
    CausalLm::new(&config(), Init::Normal { std: 0.05, seed: 3 }, &dev)
}

fn run(
    dir: &Path,
    p: &TrainParams,
    kill_after: Option<usize>,
    objective: &mut dyn StepLoss<CausalLm>,
) -> (Result<CausalLm, TrainError>, Vec<Event>) {
    run_model(dir, p, kill_after, objective, fresh_model(), false)
}

fn run_model(
    dir: &Path,
    p: &TrainParams,
    kill_after: Option<usize>,
    objective: &mut dyn StepLoss<CausalLm>,
    model: CausalLm,
    layerwise: bool,
) -> (Result<CausalLm, TrainError>, Vec<Event>) {
    let data = data(dir);
    let mut events = Vec::new();
    let options = TrainOptions {
        params: p,
        seed: 11,
        checkpoint_dir: dir.join("ckpt"),
        interrupt: None,
        kill_after,
        layerwise,
        keep_masks: None,
    };
    // Dropout draws from the backend's process-wide RNG, which the trainer seeds per micro-batch;
    // tests in this binary run on parallel threads, so one training at a time.
    let _one_at_a_time = DEVICE_RNG.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let r = train(model, &data, &options, objective, &mut |e| events.push(e.clone()));
    (r, events)
}

static DEVICE_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn losses(events: &[Event]) -> Vec<(usize, f32)> {
    events
        .iter()
        .filter_map(|e| if let Event::Step { step, loss, .. } = e { Some((*step, *loss)) } else { None })
        .collect()
}

#[test]
fn the_model_learns() {
    let dir = tempfile::tempdir().unwrap();
    let (r, events) = run(dir.path(), &params(40), None, &mut CrossEntropy);
    r.unwrap();
    let l = losses(&events);
    let first = l[..3].iter().map(|x| x.1).sum::<f32>() / 3.0;
    let last = l[l.len() - 3..].iter().map(|x| x.1).sum::<f32>() / 3.0;
    assert!(first > 3.5, "starts near ln(64) = 4.16: {first}");
    assert!(last < first - 1.0, "loss must fall by more than a nat: {first} -> {last}");
    let eval = events
        .iter()
        .find_map(|e| if let Event::Eval { loss, .. } = e { Some(*loss) } else { None })
        .unwrap();
    assert!(eval < first as f64, "held-out loss improves too: {eval}");
}

#[test]
fn a_killed_run_resumes_on_the_same_loss_curve() {
    let p = params(7);
    let whole = tempfile::tempdir().unwrap();
    let (r, events) = run(whole.path(), &p, None, &mut CrossEntropy);
    let reference = losses(&events);
    let final_whole = slmc_model::weights::export(&r.unwrap());

    let split = tempfile::tempdir().unwrap();
    let (r, first) = run(split.path(), &p, Some(5), &mut CrossEntropy);
    assert!(matches!(r, Err(TrainError::Interrupted { step: 5 })));
    assert_eq!(losses(&first), reference[..5]);
    // Killed after step 5: the newest checkpoint is step 3; steps 4.. are redone.
    let (r, second) = run(split.path(), &p, None, &mut CrossEntropy);
    assert_eq!(second[0], Event::Resumed { step: 3 });
    let resumed = losses(&second);
    assert_eq!(resumed.first().unwrap().0, 4);
    for ((s1, a), (s2, b)) in resumed.iter().zip(&reference[3..]) {
        assert_eq!(s1, s2);
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "step {s1}: resumed {a} vs uninterrupted {b}");
    }
    let final_split = slmc_model::weights::export(&r.unwrap());
    for (x, y) in final_whole.iter().zip(&final_split) {
        let diff = x.values.iter().zip(&y.values).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(diff < 1e-5, "{}: {diff}", x.name);
    }
}

/// Returns NaN on its `at`-th call.
struct NanAt {
    calls: usize,
    at: usize,
}

impl StepLoss<CausalLm> for NanAt {
    fn loss(&mut self, model: &CausalLm, batch: &Batch) -> Tensor<1> {
        self.calls += 1;
        let l = StepLoss::<CausalLm>::loss(&mut CrossEntropy, model, batch);
        if self.calls == self.at { l * f32::NAN } else { l }
    }
}

#[test]
fn a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    // grad-accum 2: call 9 is step 5's first micro-batch.
    let (r, _) = run(dir.path(), &params(10), None, &mut NanAt { calls: 0, at: 9 });
    let err = r.err().unwrap();
    let msg = err.to_string();
    assert!(matches!(err, TrainError::NonFiniteLoss { step: 5, .. }), "{msg}");
    assert!(msg.contains("step-000003"), "{msg}");
    let kept: Vec<usize> =
        slmc_train::checkpoint::list(&dir.path().join("ckpt")).iter().map(|c| c.0).collect();
    assert_eq!(kept, vec![3]);
}

/// The fresh model with DoRA or LoRA adapters (B = 0, as PEFT starts), base frozen; optionally
/// its decoder linears in NF4 (QLoRA).
fn adapted_model(dora: bool, nf4: bool) -> CausalLm {
    use slmc_formats::adapter::LoraConfig;
    use slmc_model::lora;
    let m = fresh_model();
    let mut config = LoraConfig::new(4, 8.0, vec!["q_proj".into(), "v_proj".into(), "down_proj".into()]);
    config.dora = dora;
    // Dropout on the adapters' input: a resumed run must draw the same masks.
    config.dropout = 0.1;
    let modules = lora::matching_modules(&m, &config);
    let adapter = lora::init_adapter(&m, &config, &modules, 5).unwrap();
    let m = lora::attach_trainable(m, &adapter).unwrap();
    if nf4 { lora::pack_nf4(m, &slmc_formats::nf4::Nf4Options::default()).unwrap() } else { m }
}

#[test]
fn adapter_runs_learn_keep_the_base_and_resume_on_the_same_curve() {
    for (dora, qlora) in [(false, false), (true, false), (false, true)] {
        let p = TrainParams { lr: 3e-2, ..params(7) };
        let whole = tempfile::tempdir().unwrap();
        let (r, events) =
            run_model(whole.path(), &p, None, &mut CrossEntropy, adapted_model(dora, qlora), qlora);
        let reference = losses(&events);
        let trained = r.unwrap();
        assert!(
            reference[6].1 < reference[0].1 - 0.05,
            "dora={dora} qlora={qlora}: adapters learn: {reference:?}"
        );
        // The base did not move: only adapters train (a QLoRA base is compared after dequantizing).
        let base = slmc_model::weights::export(&slmc_model::lora::unpack_nf4(adapted_model(dora, qlora)));
        assert_eq!(slmc_model::weights::export(&slmc_model::lora::unpack_nf4(trained.clone())), base);
        // Checkpoints hold the adapters (a PEFT directory), not the base.
        let ckpt = whole.path().join("ckpt/step-000007");
        assert!(
            ckpt.join("adapter/adapter_model.safetensors").is_file()
                && !ckpt.join("model.safetensors").exists()
        );
        let final_whole = slmc_model::lora::extract(&trained).unwrap().unwrap();

        let split = tempfile::tempdir().unwrap();
        let (r, _) =
            run_model(split.path(), &p, Some(5), &mut CrossEntropy, adapted_model(dora, qlora), qlora);
        assert!(matches!(r, Err(TrainError::Interrupted { step: 5 })));
        let (r, second) =
            run_model(split.path(), &p, None, &mut CrossEntropy, adapted_model(dora, qlora), qlora);
        assert_eq!(second[0], Event::Resumed { step: 3 });
        for ((s1, a), (s2, b)) in losses(&second).iter().zip(&reference[3..]) {
            assert_eq!(s1, s2);
            assert!(
                (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                "dora={dora} qlora={qlora} step {s1}: resumed {a} vs uninterrupted {b}"
            );
        }
        let final_split = slmc_model::lora::extract(&r.unwrap()).unwrap().unwrap();
        for (name, w) in &final_whole.modules {
            let v = &final_split.modules[name];
            let diff = w.b.data.iter().zip(&v.b.data).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(diff < 1e-5, "{name}: {diff}");
        }
    }
}
