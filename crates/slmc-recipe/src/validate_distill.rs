//! A distill stage: the student's initialisation, the losses, hidden-state matching and the
//! teacher cache, over the training keys of `validate_train`.

use crate::diag::{Diagnostic, Diagnostics};
use crate::reader::TableReader;
use crate::schema::*;
use crate::tree::{Node, Value};
use crate::validate_train::train_params;
use std::path::PathBuf;

pub(crate) fn distill_params(r: &mut TableReader<'_>, d: &mut Diagnostics) -> Option<DistillParams> {
    let init_kind = r.choice("init", &["current", "config", "teacher-layers", "path"], d).map(|c| c.0);
    let layers = r.node("layers").and_then(|n| index_list(n, "`layers`", d));
    let student_config = r.node("student-config");
    let student_path = r.string("student-path", d);
    let init = match init_kind.unwrap_or("current") {
        "config" => match student_config.map(|n| (n, n.to_json())) {
            Some((_, serde_json::Value::Object(m))) => StudentInit::Config(m),
            Some((n, _)) => {
                d.push(Diagnostic::new(
                    "`student-config` must be a table of config.json keys",
                    n.origin.clone(),
                ));
                return None;
            }
            None => {
                d.push(Diagnostic::new(
                    format!("`init = \"config\"` in {} needs `student-config` (config.json keys overriding the teacher's)", r.what()),
                    r.origin().clone(),
                ));
                return None;
            }
        },
        "teacher-layers" => StudentInit::TeacherLayers(layers),
        "path" => match student_path {
            Some((p, _)) => StudentInit::Path(PathBuf::from(p)),
            None => {
                d.push(Diagnostic::new(
                    format!("`init = \"path\"` in {} needs `student-path`", r.what()),
                    r.origin().clone(),
                ));
                return None;
            }
        },
        _ => StudentInit::Current,
    };
    let beta = r.float_where("beta", 0.5, "in [0, 1]", |v| (0.0..=1.0).contains(&v), d);
    let loss = match r.choice("loss", &["forward-kl", "reverse-kl", "jsd"], d) {
        Some(("reverse-kl", _)) => KdLoss::ReverseKl,
        Some(("jsd", _)) => KdLoss::Jsd { beta },
        _ => KdLoss::ForwardKl,
    };
    let temperature = r.float_where("temperature", 1.0, "> 0", |v| v > 0.0, d);
    let alpha = r.float_where("alpha", 0.9, "in [0, 1]", |v| (0.0..=1.0).contains(&v), d);
    let hidden_kind = r.choice("hidden-loss", &["none", "mse", "cosine"], d).map(|c| c.0);
    let hidden_weight = r.float_where("hidden-weight", 1.0, "≥ 0", |v| v >= 0.0, d);
    let layer_map = match r.node("layer-map") {
        None => None,
        Some(n) => match &n.value {
            Value::Array(pairs) => {
                let mut out = Vec::new();
                for p in pairs {
                    match index_list(p, "each `layer-map` entry", d).as_deref() {
                        Some([s, t]) => out.push((*s, *t)),
                        Some(_) => d.push(Diagnostic::new(
                            "each `layer-map` entry is [student_layer, teacher_layer]",
                            p.origin.clone(),
                        )),
                        None => {}
                    }
                }
                Some(out)
            }
            _ => {
                d.push(Diagnostic::new(
                    "`layer-map` must be a list of [student_layer, teacher_layer] pairs",
                    n.origin.clone(),
                ));
                None
            }
        },
    };
    let hidden = match hidden_kind {
        Some("mse") | Some("cosine") => {
            Some(HiddenMatch { cosine: hidden_kind == Some("cosine"), weight: hidden_weight, layer_map })
        }
        _ => None,
    };
    let teacher_cache_topk = match r.string("teacher-cache", d) {
        None => None,
        Some((s, origin)) => {
            match s.strip_prefix("topk:").and_then(|k| k.parse::<usize>().ok()).filter(|k| *k > 0) {
                Some(k) => Some(k),
                None => {
                    d.push(Diagnostic::new(
                        format!("`teacher-cache` must be \"topk:K\" with K ≥ 1, got `{s}`"),
                        origin.clone(),
                    ));
                    None
                }
            }
        }
    };
    if teacher_cache_topk.is_some() && hidden.is_some() {
        d.push(Diagnostic::new(
            format!(
                "{}: `teacher-cache` stores logits only; it cannot be combined with `hidden-loss`",
                r.what()
            ),
            r.origin().clone(),
        ));
    }
    if teacher_cache_topk.is_some() && loss != KdLoss::ForwardKl {
        d.push(Diagnostic::new(
            format!("{}: a top-K `teacher-cache` supports `loss = \"forward-kl\"` only (reverse KL and JSD need the full teacher distribution)", r.what()),
            r.origin().clone(),
        ));
    }
    let train = train_params(r, true, d);
    Some(DistillParams { init, loss, temperature, alpha, hidden, teacher_cache_topk, train })
}

fn index_list(n: &Node, what: &str, d: &mut Diagnostics) -> Option<Vec<usize>> {
    let Value::Array(items) = &n.value else {
        d.push(Diagnostic::new(format!("{what} must be a list of layer indices"), n.origin.clone()));
        return None;
    };
    items
        .iter()
        .map(|i| match i.value {
            Value::Int(v) if v >= 0 => Some(v as usize),
            _ => {
                d.push(Diagnostic::new(format!("{what} must hold non-negative integers"), i.origin.clone()));
                None
            }
        })
        .collect()
}
