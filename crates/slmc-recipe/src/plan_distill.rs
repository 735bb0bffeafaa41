//! The plan of a distill stage: the student it builds, what trains, and its peak memory (the
//! student's training state and activations beside the frozen teacher's weights and forward, or
//! the two phases of a teacher top-K cache).

use crate::plan::*;
use crate::schema::*;

/// Plans distill stage `dp`; `Err` when the student cannot be built from the recipe's `init`.
pub(crate) fn plan(dp: &DistillParams, at: &PlanInput<'_>) -> Result<KindPlan, String> {
    let t = &dp.train;
    let (model, seq, compute) = (at.model, at.seq, at.compute);
    let vocab = model.vocab_size as u64;
    let teacher = at.teacher.cloned().unwrap_or_else(|| model.clone());
    let student = student_config(&dp.init, model, &teacher)?;
    let sp = student.num_params() as u64;
    let tokens = (t.batch_size * seq) as u64;
    let chunk = loss_chunk_tokens(t.loss_chunk, tokens);
    let pb = precision_bytes(t.precision);
    // The trunk in the stage's precision, the vocabulary loss in f32.
    let student_acts = trunk_bytes(&student, seq, tokens, t, compute) + 4 * chunk * KD_HEAD_VALUES * vocab;
    let th = teacher.hidden_size as u64;
    // The teacher runs before the student's backward pass: its widest point and the
    // student's kept activations do not coexist; its final (and matched) hidden
    // states stay for the loss.
    let teacher_transient = pb.act * tokens * forward_values_per_token(&teacher, seq);
    let matched = dp.hidden.as_ref().map_or(0, |_| student.num_layers as u64);
    let teacher_kept = pb.act * tokens * th * (1 + matched);
    let cache_bytes = dp.teacher_cache_topk.map_or(0, |k| {
        (t.steps * t.batch_size * t.grad_accum * seq) as u64 * k.min(vocab as usize) as u64 * 6
    });
    let summary = format!(
        "distill: {} ({:.2}M) → student {} layers × {} ({:.2}M params, init {}), {:?} τ={} α={}{}{}, {} steps × {} seq × {} tokens",
        teacher.arch.model_type(),
        teacher.num_params() as f64 / 1e6,
        student.num_layers,
        student.hidden_size,
        sp as f64 / 1e6,
        match &dp.init {
            StudentInit::Current => "current model".to_string(),
            StudentInit::Config(_) => "fresh from config".to_string(),
            StudentInit::TeacherLayers(l) =>
                format!("teacher layers {:?}", student_layers(l, teacher.num_layers)),
            StudentInit::Path(p) => p.display().to_string(),
        },
        dp.loss,
        dp.temperature,
        dp.alpha,
        if dp.hidden.is_some() { ", + hidden-state loss" } else { "" },
        dp.teacher_cache_topk.map_or(String::new(), |k| format!(", teacher top-{k} cache")),
        t.steps,
        t.batch_size * t.grad_accum,
        seq
    );
    let teacher_weights = pb.teacher * teacher.num_params() as u64;
    let mut mem = Memory {
        weights: pb.weight * sp
            + compute_copy_bytes(&pb, sp, student.num_layers, t.activation_checkpointing)
            + teacher_weights,
        gradients: pb.grad * sp,
        optimizer: pb.adam * sp,
        activations: student_acts.max(teacher_transient) + teacher_kept,
        ..Default::default()
    };
    let mut touched = (tensor_count(&student), student.num_params());
    let (mut problems, mut bound) = (Vec::new(), None);
    let mut summary = summary;
    if let Some(a) = &t.adapter {
        let modules = crate::plan_lora::adapter_modules(a, &student).unwrap_or_else(|p| {
            problems.extend(p);
            Vec::new()
        });
        summary = format!("{summary}; student trains {}", crate::plan_lora::summary(a, &student, &modules));
        let m = crate::plan_lora::memory(a, &student, &modules, mem.activations);
        mem = Memory { weights: m.weights + teacher_weights, ..m };
        touched = (modules.len() * 2, crate::plan_lora::trainable_params(a, &student, &modules));
        bound = Some(modules);
    }
    if dp.teacher_cache_topk.is_some() {
        // Two phases: the cache pass (teacher and student weights, the teacher's
        // forward), then training without the teacher (it is dropped) from the cache.
        let build = Memory {
            weights: mem.weights,
            activations: teacher_transient + 4 * chunk * 2 * vocab,
            records: cache_bytes,
            ..Default::default()
        };
        let train = Memory {
            weights: mem.weights - teacher_weights,
            activations: student_acts,
            records: cache_bytes,
            ..mem
        };
        mem = if build.total() > train.total() { build } else { train };
    }
    Ok(KindPlan { summary, touched, memory: mem, modules: bound, model: Some(student), problems })
}
