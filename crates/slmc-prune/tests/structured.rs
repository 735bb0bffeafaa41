//! Structured pruning on the tiny fixture checkpoints (llama GQA, llama tied + biases, qwen2 with
//! q/k/v biases, phi3 with fused projections): identity prunes are bit-exact, removing units that
//! contribute exactly nothing leaves the logits unchanged, importance finds dead units, depth
//! pruning drops identity blocks first, and pruned models save, load and export consistently.

use burn::module::Module;
use burn::prelude::*;
use slmc_gguf::{FileType, GgufReader};
use slmc_model::gguf_export::{GgufOptions, export_model_gguf};
use slmc_model::hf_dir::{HfModel, SaveOptions, save};
use slmc_model::model::Init;
use slmc_model::weights::{HfTensor, export, load};
use slmc_model::{CausalLm, ModelConfig};
use slmc_prune::PruneError;
use slmc_prune::structured::{
    Importance, KeepSets, TargetSizes, Targets, collect, magnitude, prune, pruned_config, shrink,
};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn fixture(name: &str) -> PathBuf {
    fixtures().join("models").join(name)
}

fn load_fixture(name: &str) -> CausalLm {
    HfModel::load(&fixture(name), &Device::flex()).unwrap().model
}

/// The fixture text (`tests/fixtures/eval.txt`, 786 tokens) tokenized by the fixture tokenizer.
fn tokens() -> &'static [u32] {
    static TOKENS: std::sync::OnceLock<Vec<u32>> = std::sync::OnceLock::new();
    TOKENS.get_or_init(|| {
        let tok = slmc_model::Tokenizer::from_dir(&fixtures().join("tokenizer"), None).unwrap();
        tok.encode(&std::fs::read_to_string(fixtures().join("eval.txt")).unwrap(), true).unwrap()
    })
}

/// `n` windows of `seq` consecutive tokens of the fixture text, from token `start` on.
fn windows(n: usize, seq: usize, start: usize) -> Vec<Vec<u32>> {
    let t = tokens();
    (0..n).map(|k| (0..seq).map(|j| t[(start + k * seq + j) % t.len()]).collect()).collect()
}

fn logits(model: &CausalLm) -> Vec<f32> {
    let rows = windows(3, 24, 600);
    let ids: Vec<i32> = rows.iter().flatten().map(|&t| t as i32).collect();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [3, 24]), &model.device());
    model.forward(ids).into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// `model` with its Hugging Face tensors edited by `f(name, shape, values)`.
fn edited(model: &CausalLm, f: impl Fn(&str, &[usize], &mut [f32])) -> CausalLm {
    let mut tensors = export(model);
    for t in &mut tensors {
        f(&t.name, &t.shape, &mut t.values);
    }
    load(&model.config, &tensors[..], "edited", &model.device()).unwrap().0
}

/// Zeroes row `r` of a row-major matrix with `cols` columns.
fn zero_row(values: &mut [f32], cols: usize, r: usize) {
    values[r * cols..(r + 1) * cols].fill(0.0);
}

/// Zeroes column `c` of a row-major matrix with `cols` columns.
fn zero_col(values: &mut [f32], cols: usize, c: usize) {
    values.iter_mut().skip(c).step_by(cols).for_each(|v| *v = 0.0);
}

const ARCHES: [&str; 4] = ["llama_gqa", "llama_tied_bf16", "qwen2_bias", "phi3_fused"];

#[test]
fn keeping_everything_is_bit_exact() {
    for name in ARCHES {
        let model = load_fixture(name);
        let want = logits(&model);
        let same = shrink(&model, &KeepSets::all(&model.config)).unwrap();
        assert_eq!(logits(&same), want, "{name}");
        // The same through importance, target resolution and selection.
        let imp = collect(&model, &windows(4, 16, 40), 3, &mut |_, _| {}).unwrap();
        let (same, report) = prune(&model, &Targets::Sizes(TargetSizes::default()), &imp).unwrap();
        assert_eq!(logits(&same), want, "{name}");
        assert_eq!((report.before, report.params_before), (report.after, report.params_after));
        assert!(report.dropped_layers.is_empty());
    }
}

/// Zeroes, in every layer, the gate and up rows of MLP channel `j` (`silu(0) · 0 = 0`: the
/// channel is dead).
fn kill_mlp_channel(model: &CausalLm, j: usize) -> CausalLm {
    let i = model.config.intermediate_size;
    edited(model, |name, shape, v| {
        if name.ends_with("mlp.gate_proj.weight") || name.ends_with("mlp.up_proj.weight") {
            zero_row(v, shape[1], j);
        } else if name.ends_with("mlp.gate_up_proj.weight") {
            zero_row(v, shape[1], j);
            zero_row(v, shape[1], i + j);
        }
    })
}

#[test]
fn a_dead_mlp_channel_ranks_last_and_goes_without_changing_logits() {
    for name in ["llama_gqa", "qwen2_bias", "phi3_fused"] {
        let model = kill_mlp_channel(&load_fixture(name), 37);
        let want = logits(&model);
        let imp = collect(&model, &windows(6, 16, 80), 4, &mut |_, _| {}).unwrap();
        for scores in &imp.mlp {
            assert_eq!(scores[37], 0.0, "{name}");
            assert!(scores.iter().enumerate().all(|(k, s)| k == 37 || *s > 0.0), "{name}");
        }
        let targets = Targets::Sizes(TargetSizes { intermediate_size: Some(127), ..Default::default() });
        let (pruned, report) = prune(&model, &targets, &imp).unwrap();
        assert!(report.keep.layers.iter().all(|l| !l.mlp.contains(&37) && l.mlp.len() == 127), "{name}");
        assert_eq!(pruned.config.intermediate_size, 127);
        let d = max_abs_diff(&logits(&pruned), &want);
        assert!(d < 1e-5, "{name}: max |Δlogit| {d}");
    }
}

#[test]
fn heads_and_kv_groups_with_zero_output_go_without_changing_logits() {
    // GQA 4 query heads / 2 KV heads (2 per group).
    for name in ["llama_gqa", "qwen2_bias", "phi3_fused"] {
        let model = load_fixture(name);
        let c = model.config.clone();
        let hd = c.head_dim;
        // Zero the o_proj columns of `heads` in every layer.
        let silence = |heads: &'static [usize]| {
            edited(&model, move |n, shape, v| {
                if n.ends_with("o_proj.weight") {
                    for &h in heads {
                        (h * hd..(h + 1) * hd).for_each(|col| zero_col(v, shape[1], col));
                    }
                }
            })
        };
        let group = c.num_heads / c.num_kv_heads;
        // One query head per group (the second of each group).
        let quiet: &'static [usize] = if group == 2 { &[1, 3] } else { &[1, 2, 3] };
        let m = silence(quiet);
        let mut keep = KeepSets::all(&c);
        for l in &mut keep.layers {
            l.heads.retain(|h| !quiet.contains(h));
            if group == 1 {
                l.kv_heads = vec![0];
            }
        }
        let pruned = shrink(&m, &keep).unwrap();
        assert_eq!(pruned.config.num_heads, c.num_heads - quiet.len(), "{name}");
        let d = max_abs_diff(&logits(&pruned), &logits(&m));
        assert!(d < 1e-5, "{name} heads: max |Δlogit| {d}");
        // A whole KV group (the last one).
        let last: &'static [usize] = if group == 2 { &[2, 3] } else { &[3] };
        let m = silence(last);
        let mut keep = KeepSets::all(&c);
        for l in &mut keep.layers {
            l.heads.retain(|h| !last.contains(h));
            l.kv_heads.pop();
        }
        let pruned = shrink(&m, &keep).unwrap();
        assert_eq!(pruned.config.num_kv_heads, c.num_kv_heads - 1, "{name}");
        let d = max_abs_diff(&logits(&pruned), &logits(&m));
        assert!(d < 1e-5, "{name} KV group: max |Δlogit| {d}");
    }
}

#[test]
fn a_kv_group_with_zero_values_ranks_last() {
    // llama_gqa: zero v_proj rows of KV head 1 → its two query heads output exactly zero.
    let model = load_fixture("llama_gqa");
    let hd = model.config.head_dim;
    let model = edited(&model, |n, shape, v| {
        if n.ends_with("v_proj.weight") {
            (hd..2 * hd).for_each(|r| zero_row(v, shape[1], r));
        }
    });
    let want = logits(&model);
    let imp = collect(&model, &windows(6, 16, 120), 2, &mut |_, _| {}).unwrap();
    for (l, h) in imp.heads.iter().enumerate() {
        assert!(h[0] > 0.0 && h[1] > 0.0 && h[2] == 0.0 && h[3] == 0.0, "layer {l}: {h:?}");
    }
    let targets = Targets::Sizes(TargetSizes { num_key_value_heads: Some(1), ..Default::default() });
    let (pruned, report) = prune(&model, &targets, &imp).unwrap();
    assert!(report.keep.layers.iter().all(|l| l.kv_heads == [0] && l.heads == [0, 1]));
    assert_eq!((pruned.config.num_heads, pruned.config.num_kv_heads), (2, 1));
    assert!(max_abs_diff(&logits(&pruned), &want) < 1e-5);
}

/// Minitron's aggregate of one site computed on the host, window by window:
/// `sqrt(Σ_windows (mean_s |a|)²)` (batching must not change it).
fn host_aggregate(per_window: &[Vec<f32>], seq: usize) -> Vec<f64> {
    let d = per_window[0].len() / seq;
    let mut acc = vec![0.0f64; d];
    for a in per_window {
        for (k, slot) in acc.iter_mut().enumerate() {
            let mean = (0..seq).map(|s| f64::from(a[s * d + k].abs())).sum::<f64>() / seq as f64;
            *slot += mean * mean;
        }
    }
    acc.into_iter().map(f64::sqrt).collect()
}

#[test]
fn activation_importance_follows_minitron_aggregation() {
    let model = load_fixture("qwen2_bias");
    let c = model.config.clone();
    let (n, seq) = (5, 12);
    let calib = windows(n, seq, 160);
    let mut progress = Vec::new();
    let imp = collect(&model, &calib, 2, &mut |done, total| progress.push((done, total))).unwrap();
    assert_eq!(progress, vec![(1, 2), (2, 2)]);
    // Window by window on the host.
    let rope = slmc_model::rope::RopeTables::for_model(&c, 0, seq, &model.device());
    let vec3 = |t: Tensor<3>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    let mut xs: Vec<Tensor<3>> = calib
        .iter()
        .map(|w| {
            let ids: Vec<i32> = w.iter().map(|&t| t as i32).collect();
            model
                .embed_tokens
                .forward(Tensor::<2, Int>::from_data(TensorData::new(ids, [1, seq]), &model.device()))
        })
        .collect();
    let mut hidden = vec![0.0; c.hidden_size];
    for (l, layer) in model.layers.iter().enumerate() {
        let (mut na, mut ctx, mut nm, mut act) = (vec![], vec![], vec![], vec![]);
        for x in xs.iter_mut() {
            let a = layer.input_layernorm.forward(x.clone());
            let cx = layer.self_attn.context(a.clone(), &rope, None);
            let h = x.clone() + layer.self_attn.out_proj().forward(cx.clone());
            let m = layer.post_attention_layernorm.as_ref().unwrap().forward(h.clone());
            let g = layer.mlp.hidden(m.clone());
            *x = layer.forward(x.clone(), &rope, None);
            na.push(vec3(a));
            ctx.push(vec3(cx));
            nm.push(vec3(m));
            act.push(vec3(g));
        }
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-4 * b.abs().max(1e-3);
        let mlp = host_aggregate(&act, seq);
        assert!(mlp.iter().zip(&imp.mlp[l]).all(|(a, b)| close(*a, *b)), "layer {l} MLP");
        let per_dim = host_aggregate(&ctx, seq);
        let heads: Vec<f64> =
            per_dim.chunks(c.head_dim).map(|h| h.iter().map(|v| v * v).sum::<f64>().sqrt()).collect();
        assert!(heads.iter().zip(&imp.heads[l]).all(|(a, b)| close(*a, *b)), "layer {l} heads");
        for (acc, (a, b)) in
            hidden.iter_mut().zip(host_aggregate(&na, seq).into_iter().zip(host_aggregate(&nm, seq)))
        {
            *acc += a + b;
        }
        assert!(imp.layers[l] > 0.0);
    }
    assert!(hidden.iter().zip(&imp.hidden).all(|(a, b)| (a - b).abs() <= 1e-4 * b.abs()), "hidden");
}

#[test]
fn depth_pruning_drops_the_identity_block_first() {
    // A 4-layer qwen2 with sliding windows from layer 2 on; block 1 is made an identity.
    let text = r#"{"model_type":"qwen2","hidden_size":64,"num_attention_heads":4,"num_key_value_heads":2,
        "num_hidden_layers":4,"intermediate_size":96,"vocab_size":384,"use_sliding_window":true,
        "sliding_window":8,"max_window_layers":2,"tie_word_embeddings":true}"#;
    let config = ModelConfig::from_json_str(text, "test").unwrap();
    let model = CausalLm::new(&config, Init::Normal { std: 0.1, seed: 7 }, &Device::flex());
    let model = edited(&model, |n, _, v| {
        if n.starts_with("model.layers.1.") && (n.contains("o_proj") || n.contains("down_proj")) {
            v.fill(0.0);
        }
    });
    let want = logits(&model);
    let imp = collect(&model, &windows(4, 16, 200), 4, &mut |_, _| {}).unwrap();
    assert!(imp.layers[1].abs() < 1e-6, "{:?}", imp.layers);
    assert!(imp.layers.iter().enumerate().all(|(l, s)| l == 1 || *s > 1e-3), "{:?}", imp.layers);
    // The magnitude proxy agrees: block 1 writes nothing.
    assert_eq!(magnitude(&model).layers[1], 0.0);
    let targets = Targets::Sizes(TargetSizes { num_hidden_layers: Some(3), ..Default::default() });
    let (pruned, report) = prune(&model, &targets, &imp).unwrap();
    assert_eq!(report.dropped_layers, vec![1]);
    // x + 0 + 0 = x exactly: the logits do not move at all.
    assert_eq!(logits(&pruned), want);
    // Layers 0, 2, 3 → 0, 1, 2, keeping their windows; config.json says so.
    assert_eq!(pruned.config.sliding_windows, vec![None, Some(8), Some(8)]);
    let json = pruned.config.to_hf_json();
    assert_eq!((json["num_hidden_layers"].clone(), json["max_window_layers"].clone()), (3.into(), 1.into()));
    // keep = 0.5 of the parameters by depth: drops more, lowest influence first.
    let (half, report) = prune(&model, &Targets::KeepDepth(0.5), &imp).unwrap();
    assert!(report.dropped_layers.contains(&1) && half.config.num_layers < 3);
    assert_eq!(half.config.num_params(), half.num_params());
}

#[test]
fn pruned_models_save_and_load_bit_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ARCHES {
        let model = load_fixture(name);
        let c = &model.config;
        let imp = magnitude(&model);
        let targets = Targets::Sizes(TargetSizes {
            num_attention_heads: Some(2),
            hidden_size: Some(48),
            intermediate_size: Some(80),
            ..Default::default()
        });
        let planned = pruned_config(c, &targets).unwrap();
        let (pruned, report) = prune(&model, &targets, &imp).unwrap();
        assert_eq!(pruned.config, planned, "{name}: planning and pruning agree");
        assert_eq!((report.params_after, pruned.num_params()), (planned.num_params(), planned.num_params()));
        assert_eq!(
            (pruned.config.num_heads, pruned.config.hidden_size, pruned.config.intermediate_size),
            (2, 48, 80)
        );
        assert_eq!(pruned.config.head_dim, c.head_dim, "{name}");
        let out = tmp.path().join(name);
        let opts = SaveOptions { dtype: Some(slmc_config::FloatDtype::F32), ..Default::default() };
        save(&pruned, &out, &opts).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
        assert_eq!(json["head_dim"], c.head_dim, "{name}: head_dim explicit");
        assert_eq!((json["hidden_size"].clone(), json["num_attention_heads"].clone()), (48.into(), 2.into()));
        let back = HfModel::load(&out, &Device::flex()).unwrap();
        assert_eq!(back.config.head_dim, c.head_dim);
        assert_eq!(logits(&back.model), logits(&pruned), "{name}");
        let ckpt = slmc_formats::Checkpoint::open_dir(&out).unwrap();
        assert_eq!(ckpt.names().any(|n| n == "lm_head.weight"), !c.tie_word_embeddings, "{name}");
    }
}

#[test]
fn fused_phi3_projections_are_sliced_part_by_part() {
    let model = load_fixture("phi3_fused");
    let c = model.config.clone();
    let (hd, i) = (c.head_dim, c.intermediate_size);
    let mut keep = KeepSets::all(&c);
    keep.hidden = vec![1, 5, 9];
    for l in &mut keep.layers {
        l.kv_heads = vec![2];
        l.heads = vec![2];
        l.mlp = vec![3, 100];
    }
    let pruned = shrink(&model, &keep).unwrap();
    let before = export(&model);
    let after = export(&pruned);
    let get = |ts: &[HfTensor], n: &str| ts.iter().find(|t| t.name == n).unwrap().clone();
    let (qkv, new) = (
        get(&before, "model.layers.0.self_attn.qkv_proj.weight"),
        get(&after, "model.layers.0.self_attn.qkv_proj.weight"),
    );
    assert_eq!(new.shape, vec![3 * hd, 3]);
    let cols = qkv.shape[1];
    // Row r of the new matrix: q rows of head 2, then k rows of KV head 2, then v rows.
    let sources: Vec<usize> = (0..hd)
        .map(|d| 2 * hd + d)
        .chain((0..hd).map(|d| c.q_dim() + 2 * hd + d))
        .chain((0..hd).map(|d| c.q_dim() + c.kv_dim() + 2 * hd + d))
        .collect();
    for (r, src) in sources.into_iter().enumerate() {
        for (k, e) in [1, 5, 9].into_iter().enumerate() {
            assert_eq!(new.values[r * 3 + k], qkv.values[src * cols + e]);
        }
    }
    let (gu, new) = (
        get(&before, "model.layers.1.mlp.gate_up_proj.weight"),
        get(&after, "model.layers.1.mlp.gate_up_proj.weight"),
    );
    assert_eq!(new.shape, vec![4, 3]);
    for (r, src) in [3, 100, i + 3, i + 100].into_iter().enumerate() {
        assert_eq!(new.values[r * 3 + 2], gu.values[src * cols + 9]);
    }
    let (down, new) = (
        get(&before, "model.layers.1.mlp.down_proj.weight"),
        get(&after, "model.layers.1.mlp.down_proj.weight"),
    );
    assert_eq!((new.shape.clone(), new.values[3]), (vec![3, 2], down.values[5 * i + 100]));
}

#[test]
fn gguf_export_of_a_width_pruned_model_is_consistent() {
    let tmp = tempfile::tempdir().unwrap();
    // qwen2 writes key_length only when head_dim ≠ hidden / heads: keep its hidden size at 64.
    for (name, arch, hidden) in [("llama_gqa", "llama", 32u64), ("qwen2_bias", "qwen2", 64)] {
        let model = load_fixture(name);
        let targets = Targets::Sizes(TargetSizes {
            num_attention_heads: Some(2),
            hidden_size: Some(hidden as usize),
            intermediate_size: Some(64),
            ..Default::default()
        });
        let (pruned, _) = prune(&model, &targets, &magnitude(&model)).unwrap();
        let out = tmp.path().join(format!("{name}.gguf"));
        let opts = GgufOptions {
            file_type: FileType::F32,
            tokenizer_dir: fixture(name),
            name: None,
            encoded: Default::default(),
        };
        export_model_gguf(&pruned, &opts, &out).unwrap();
        let r = GgufReader::open(&out).unwrap();
        let f = r.file();
        let u32_key = |k: &str| f.get(&format!("{arch}.{k}")).and_then(|v| v.as_u32());
        assert_eq!(u32_key("embedding_length"), Some(hidden as u32), "{name}");
        assert_eq!(u32_key("feed_forward_length"), Some(64), "{name}");
        assert_eq!(u32_key("attention.head_count"), Some(2), "{name}");
        assert_eq!(u32_key("attention.head_count_kv"), Some(2), "{name}");
        assert_eq!(u32_key("block_count"), Some(2), "{name}");
        // head_dim 16 with 2 heads: the key length is explicit (hidden / heads ≠ 16 for qwen2).
        assert_eq!(u32_key("attention.key_length"), Some(16), "{name}");
        assert_eq!(u32_key("attention.value_length"), Some(16), "{name}");
        assert_eq!(f.tensor("blk.0.attn_q.weight").unwrap().info.ne, vec![hidden, 32]);
        assert_eq!(f.tensor("blk.0.attn_output.weight").unwrap().info.ne, vec![32, hidden]);
        assert_eq!(f.tensor("blk.1.ffn_down.weight").unwrap().info.ne, vec![64, hidden]);
        assert_eq!(f.tensor("token_embd.weight").unwrap().info.ne, vec![hidden, 384]);
        let down =
            export(&pruned).into_iter().find(|t| t.name == "model.layers.1.mlp.down_proj.weight").unwrap();
        assert_eq!(r.tensor_f32("blk.1.ffn_down.weight").unwrap(), down.values);
    }
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let model = load_fixture("llama_gqa");
    let imp = magnitude(&model);
    let input = |r: Result<(CausalLm, slmc_prune::structured::PruneReport), PruneError>| match r {
        Err(PruneError::Input(m)) => m,
        other => panic!("expected an input error, got {other:?}"),
    };
    let t = Targets::Sizes(TargetSizes { num_attention_heads: Some(3), ..Default::default() });
    assert!(input(prune(&model, &t, &imp)).contains("`num_attention_heads` = 3"));
    let t = Targets::Sizes(TargetSizes { intermediate_size: Some(80), ..Default::default() });
    let other = magnitude(&prune(&model, &t, &imp).unwrap().0);
    let t = Targets::Sizes(TargetSizes::default());
    assert!(input(prune(&model, &t, &other)).contains("another shape"));
    let e = |calib: &[Vec<u32>], b: usize| match collect(&model, calib, b, &mut |_, _| {}) {
        Err(PruneError::Input(m)) => m,
        other => panic!("expected an input error, got {other:?}"),
    };
    assert!(e(&[], 1).contains("same non-zero length"));
    assert!(e(&[vec![1, 2], vec![3]], 1).contains("same non-zero length"));
    assert!(e(&[vec![1, 2]], 0).contains("batch size"));
    assert!(e(&[vec![1, 999]], 1).contains("999"));
    let mut keep = KeepSets::all(&model.config);
    keep.layers[0].mlp = vec![5, 3];
    assert!(
        matches!(shrink(&model, &keep), Err(PruneError::Input(m)) if m.contains("layer 0: MLP channels"))
    );
}

#[test]
fn magnitude_scores_track_the_weights_each_unit_owns() {
    let model = load_fixture("llama_gqa");
    let base: Importance = magnitude(&model);
    // Doubling channel 7's gate/up rows and down column doubles its score exactly.
    let scaled = edited(&model, |n, shape, v| {
        if n.ends_with("gate_proj.weight") || n.ends_with("up_proj.weight") {
            v[7 * shape[1]..8 * shape[1]].iter_mut().for_each(|x| *x *= 2.0);
        } else if n.ends_with("down_proj.weight") {
            v.iter_mut().skip(7).step_by(shape[1]).for_each(|x| *x *= 2.0);
        }
    });
    let s = magnitude(&scaled);
    for l in 0..2 {
        assert!((s.mlp[l][7] - 2.0 * base.mlp[l][7]).abs() < 1e-9 * base.mlp[l][7]);
        assert_eq!(s.mlp[l][6], base.mlp[l][6]);
        assert_eq!(s.heads[l], base.heads[l]);
    }
    assert_ne!(s.hidden, base.hidden);
}
