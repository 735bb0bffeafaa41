//! The training keys of finetune and distill stages (optimiser, schedule, precision, memory
//! options, checkpoints, the adapter keys through `validate_lora`).

use crate::diag::Diagnostics;
use crate::reader::TableReader;
use crate::schema::*;

/// The training keys of a finetune or distill stage; `distill` renames the adapters' `alpha` and
/// `init` to `lora-alpha` and `lora-init` (a distill stage's `alpha` and `init` are the KD weight
/// and the student's initialisation).
pub(crate) fn train_params(r: &mut TableReader<'_>, distill: bool, d: &mut Diagnostics) -> TrainParams {
    let def = TrainParams::default();
    let steps = r.uint_where("steps", def.steps, "at least 1", |v| v >= 1, d);
    let lr = r.float_where("lr", def.lr, "in (0, 1]", |v| v > 0.0 && v <= 1.0, d);
    let schedule = r.named::<Schedule>("schedule", d).map_or(def.schedule, |v| v.0);
    let min_lr = r.float_where("min-lr", lr * 0.1, "in [0, lr]", |v| v >= 0.0 && v <= lr, d);
    let mut params = TrainParams {
        steps,
        batch_size: r.uint_where("batch-size", def.batch_size, "at least 1", |v| v >= 1, d),
        grad_accum: r.uint_where("grad-accum", def.grad_accum, "at least 1", |v| v >= 1, d),
        lr,
        min_lr,
        warmup_steps: r.uint_where("warmup-steps", def.warmup_steps, "at most `steps`", |v| v <= steps, d),
        schedule,
        weight_decay: r.float_where("weight-decay", def.weight_decay, "≥ 0", |v| v >= 0.0, d),
        beta1: r.float_where("beta1", def.beta1, "in [0, 1)", |v| (0.0..1.0).contains(&v), d),
        beta2: r.float_where("beta2", def.beta2, "in [0, 1)", |v| (0.0..1.0).contains(&v), d),
        eps: r.float_where("eps", def.eps, "> 0", |v| v > 0.0, d),
        clip_grad_norm: r.float_where("clip-grad-norm", def.clip_grad_norm, "≥ 0", |v| v >= 0.0, d),
        eval_every: r.uint("eval-every", d).map_or(def.eval_every, |v| v.0),
        eval_sequences: r.uint("eval-sequences", d).map_or(def.eval_sequences, |v| v.0),
        checkpoint_every: r.uint("checkpoint-every", d).map_or(def.checkpoint_every, |v| v.0),
        log_every: r.uint_where("log-every", def.log_every, "at least 1", |v| v >= 1, d),
        activation_checkpointing: false,
        loss_chunk: r.uint("loss-chunk", d).map_or(def.loss_chunk, |v| v.0),
        precision: r.named::<Precision>("precision", d).map_or(def.precision, |v| v.0),
        adapter: None,
    };
    params.adapter = crate::validate_lora::adapter_params(r, distill, d);
    let qlora = params.adapter.as_ref().is_some_and(|a| a.kind == crate::schema_lora::AdapterKind::Qlora);
    params.activation_checkpointing = match r.boolean("activation-checkpointing", d) {
        Some((b, _)) => b,
        None => qlora,
    };
    params
}
