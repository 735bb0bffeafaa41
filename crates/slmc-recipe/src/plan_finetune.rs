//! The plan of a finetune stage: full fine-tuning (every parameter's training state) or an
//! adapter (LoRA / DoRA / QLoRA: see `plan_lora`), beside the trunk's activations and one chunk
//! of the vocabulary loss.

use crate::plan::*;
use crate::schema::*;

/// Plans finetune stage `t`.
pub(crate) fn plan(t: &TrainParams, at: &PlanInput<'_>) -> KindPlan {
    let (model, seq, compute) = (at.model, at.seq, at.compute);
    let (params, vocab) = (model.num_params() as u64, model.vocab_size as u64);
    let tokens = (t.batch_size * seq) as u64;
    // The trunk's activations (one layer's and every layer's input when checkpointing)
    // and one chunk of the vocabulary loss.
    let pb = precision_bytes(t.precision);
    let acts = trunk_bytes(model, seq, tokens, t, compute)
        + 4 * loss_chunk_tokens(t.loss_chunk, tokens) * CE_HEAD_VALUES * vocab;
    let summary = format!(
        "full fine-tune: {} steps × {} seq × {} tokens{} = {} tokens, lr {:e} ({:?}, warmup {})",
        t.steps,
        t.batch_size,
        seq,
        if t.grad_accum > 1 { format!(" × {} accum", t.grad_accum) } else { String::new() },
        t.steps * t.batch_size * t.grad_accum * seq,
        t.lr,
        t.schedule,
        t.warmup_steps
    );
    match &t.adapter {
        None => {
            let p = params;
            let copy = compute_copy_bytes(&pb, p, model.num_layers, t.activation_checkpointing);
            let mem = Memory {
                weights: pb.weight * p + copy,
                gradients: pb.grad * p,
                optimizer: pb.adam * p,
                activations: acts,
                ..Default::default()
            };
            let touched = (tensor_count(model), model.num_params());
            KindPlan { summary, touched, memory: mem, modules: None, model: None, problems: Vec::new() }
        }
        Some(a) => {
            let (modules, problems) = match crate::plan_lora::adapter_modules(a, model) {
                Ok(m) => (m, Vec::new()),
                Err(p) => (Vec::new(), p),
            };
            let summary = format!(
                "{} fine-tune: {}; {} steps × {} seq × {} tokens, lr {:e}",
                a.kind.name(),
                crate::plan_lora::summary(a, model, &modules),
                t.steps,
                t.batch_size * t.grad_accum,
                seq,
                t.lr
            );
            let mem = crate::plan_lora::memory(a, model, &modules, acts);
            let touched = (
                modules.len() * 2 + a.modules_to_save.len(),
                crate::plan_lora::trainable_params(a, model, &modules),
            );
            KindPlan { summary, touched, memory: mem, modules: Some(modules), model: None, problems }
        }
    }
}
