//! The plan of a quantize stage: the modules it binds, the problems of their shapes with the
//! grid and the export, and its peak memory (the calibration walk for GPTQ, the codes).

use crate::plan::*;
use crate::schema::*;

/// Plans quantize stage `q` (written at `origin`).
pub(crate) fn plan(q: &QuantizeParams, at: &PlanInput<'_>, origin: &crate::tree::Origin) -> KindPlan {
    let (model, seq) = (at.model, at.seq);
    let weights = 4 * model.num_params() as u64;
    let (modules, mut problems) = match crate::select::resolve(&q.select, &model.linear_modules()) {
        Ok(m) => (m, Vec::new()),
        Err(p) => (Vec::new(), p),
    };
    problems.extend(quantize_shape_problems(at.recipe, q, model, &modules, origin));
    let shapes: Vec<[usize; 2]> = modules.iter().filter_map(|m| model.linear_shape(m)).collect();
    let params: usize = shapes.iter().map(|[o, i]| o * i).sum();
    let widest = shapes.iter().map(|s| s[1]).max().unwrap_or(0);
    let calib_len = q.calibration.len.unwrap_or(seq);
    let gptq = q.method == QuantMethod::Gptq;
    let acts = if gptq { calibration_memory(model, &q.calibration, calib_len, widest) } else { 0 };
    let summary = format!(
        "quantize: {} {}, {} of {} linear modules{}",
        if gptq { "GPTQ" } else { "RTN" },
        q.grid_name(),
        modules.len(),
        model.linear_modules().len(),
        if gptq {
            format!(", {} calibration windows × {calib_len} tokens, damp {}", q.calibration.samples, q.damp)
        } else {
            String::new()
        }
    );
    // The codes (a byte per weight, a scale and zero per group) and, while a block is
    // solved, two f32 copies of its weights.
    let groups = shapes.iter().map(|[o, i]| o * i.div_ceil(q.group_size.unwrap_or(*i))).sum::<usize>();
    let codes = (params + 5 * groups) as u64;
    let block = 2 * 4 * (params / model.num_layers.max(1)) as u64;
    let memory = Memory { weights, activations: acts + block, records: codes, ..Default::default() };
    let touched = (modules.len(), params);
    KindPlan { summary, touched, memory, modules: Some(modules), model: None, problems }
}
