//! Prunes a Hugging Face model directory and dumps what `scripts/check_structured_hf.py` needs to
//! check the result with transformers:
//!
//! ```sh
//! cargo run --release -p slmc-prune --example prune_dump -- MODEL_DIR OUT_DIR \
//!     [--heads N] [--kv-heads N] [--intermediate N] [--hidden N] [--layers N] \
//!     [--keep-width F | --keep-depth F] [--magnitude] [--text FILE] [--windows N] [--seq N] [--batch N]
//! ```
//!
//! Writes `OUT_DIR/model/` (the pruned model, f32, with the tokenizer files), `OUT_DIR/slmc.safetensors`
//! (`calib` windows and `ids` as i64, slmc's `logits` of the pruned model on `ids`, the importance
//! scores `importance.{heads,mlp,hidden,layers}`; metadata `batch_size`) and `OUT_DIR/report.json`.
//! Calibration windows are consecutive tokens of `--text` (default `tests/fixtures/eval.txt`)
//! through the model directory's tokenizer; the logits are taken on the two windows after them.

// A developer tool run from scripts/: it reports on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use burn::prelude::*;
use safetensors::{Dtype, tensor::TensorView};
use slmc_model::hf_dir::{HfModel, SaveOptions, save};
use slmc_prune::structured::{TargetSizes, Targets, collect, magnitude, prune};
use std::collections::HashMap;
use std::error::Error;
use std::path::PathBuf;

/// `n` windows of `seq` consecutive tokens from `start` on (wrapping around the text).
fn windows(tokens: &[u32], n: usize, seq: usize, start: usize) -> Vec<Vec<u32>> {
    (0..n).map(|k| (0..seq).map(|j| tokens[(start + k * seq + j) % tokens.len()]).collect()).collect()
}

/// Little-endian bytes of f32 (`f64` scores are written as f32) or i64 values.
fn f32_bytes(v: impl IntoIterator<Item = f32>) -> Vec<u8> {
    v.into_iter().flat_map(f32::to_le_bytes).collect()
}

fn i64_bytes(rows: &[Vec<u32>]) -> Vec<u8> {
    rows.iter().flatten().flat_map(|&t| i64::from(t).to_le_bytes()).collect()
}

struct Args {
    model: PathBuf,
    out: PathBuf,
    targets: Targets,
    magnitude: bool,
    text: PathBuf,
    windows: usize,
    seq: usize,
    batch: usize,
}

fn parse_args() -> Result<Args, Box<dyn Error>> {
    let mut it = std::env::args().skip(1);
    let usage = "usage: prune_dump MODEL_DIR OUT_DIR [--heads N] [--kv-heads N] [--intermediate N] \
                 [--hidden N] [--layers N] [--keep-width F | --keep-depth F] [--magnitude] [--text FILE] \
                 [--windows N] [--seq N] [--batch N]";
    let (model, out) = match (it.next(), it.next()) {
        (Some(m), Some(o)) => (PathBuf::from(m), PathBuf::from(o)),
        _ => return Err(usage.into()),
    };
    let mut sizes = TargetSizes::default();
    let mut keep: Option<Targets> = None;
    let mut args = Args {
        model,
        out,
        targets: Targets::Sizes(sizes),
        magnitude: false,
        text: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/eval.txt"),
        windows: 16,
        seq: 32,
        batch: 4,
    };
    while let Some(flag) = it.next() {
        if flag == "--magnitude" {
            args.magnitude = true;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value\n{usage}"))?;
        let n = || value.parse::<usize>().map_err(|e| format!("{flag} {value}: {e}"));
        match flag.as_str() {
            "--heads" => sizes.num_attention_heads = Some(n()?),
            "--kv-heads" => sizes.num_key_value_heads = Some(n()?),
            "--intermediate" => sizes.intermediate_size = Some(n()?),
            "--hidden" => sizes.hidden_size = Some(n()?),
            "--layers" => sizes.num_hidden_layers = Some(n()?),
            "--keep-width" => keep = Some(Targets::KeepWidth(value.parse()?)),
            "--keep-depth" => keep = Some(Targets::KeepDepth(value.parse()?)),
            "--text" => args.text = PathBuf::from(&value),
            "--windows" => args.windows = n()?,
            "--seq" => args.seq = n()?,
            "--batch" => args.batch = n()?,
            _ => return Err(format!("unknown flag {flag}\n{usage}").into()),
        }
    }
    args.targets = keep.unwrap_or(Targets::Sizes(sizes));
    Ok(args)
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = parse_args()?;
    let device = Device::flex();
    let hf = HfModel::load(&args.model, &device)?;
    let tokenizer = hf.tokenizer.as_ref().ok_or("the model directory has no tokenizer.json")?;
    let tokens = tokenizer.encode(&std::fs::read_to_string(&args.text)?, true)?;
    let calib = windows(&tokens, args.windows, args.seq, 0);
    let importance = if args.magnitude {
        magnitude(&hf.model)
    } else {
        collect(&hf.model, &calib, args.batch, &mut |_, _| {})?
    };
    let (pruned, report) = prune(&hf.model, &args.targets, &importance)?;
    std::fs::create_dir_all(&args.out)?;
    let opts = SaveOptions {
        dtype: Some(slmc_config::FloatDtype::F32),
        tokenizer_dir: Some(args.model.clone()),
        ..Default::default()
    };
    save(&pruned, &args.out.join("model"), &opts)?;

    let ids = windows(&tokens, 2, 24, args.windows * args.seq);
    let flat: Vec<i32> = ids.iter().flatten().map(|&t| t as i32).collect();
    let logits = pruned.forward(Tensor::<2, Int>::from_data(TensorData::new(flat, [2, 24]), &device));
    let logits_shape = logits.dims().to_vec();
    let logits: Vec<f32> = logits.into_data().convert::<f32>().try_to_vec::<f32>()?;
    let l = importance.layers.len();
    let flat_scores = |rows: &[Vec<f64>]| f32_bytes(rows.iter().flatten().map(|&s| s as f32));
    let owned: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> = vec![
        ("calib", Dtype::I64, vec![calib.len(), args.seq], i64_bytes(&calib)),
        ("ids", Dtype::I64, vec![2, 24], i64_bytes(&ids)),
        ("logits", Dtype::F32, logits_shape, f32_bytes(logits)),
        ("importance.heads", Dtype::F32, vec![l, hf.config.num_heads], flat_scores(&importance.heads)),
        ("importance.mlp", Dtype::F32, vec![l, hf.config.intermediate_size], flat_scores(&importance.mlp)),
        (
            "importance.hidden",
            Dtype::F32,
            vec![hf.config.hidden_size],
            flat_scores(std::slice::from_ref(&importance.hidden)),
        ),
        ("importance.layers", Dtype::F32, vec![l], flat_scores(std::slice::from_ref(&importance.layers))),
    ];
    let views = owned
        .iter()
        .map(|(name, dtype, shape, bytes)| Ok((*name, TensorView::new(*dtype, shape.clone(), bytes)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    let meta = HashMap::from([("batch_size".to_string(), args.batch.to_string())]);
    safetensors::serialize_to_file(views, Some(meta), &args.out.join("slmc.safetensors"))?;
    let json = serde_json::json!({ "importance_method": importance.method, "report": report });
    std::fs::write(args.out.join("report.json"), serde_json::to_string_pretty(&json)? + "\n")?;
    println!(
        "{}: {} -> {} parameters, dropped layers {:?}; wrote {}",
        args.model.display(),
        report.params_before,
        report.params_after,
        report.dropped_layers,
        args.out.display()
    );
    Ok(())
}
