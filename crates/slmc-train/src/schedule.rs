//! Learning-rate schedules: linear warmup, then cosine or linear decay to `min_lr`, or constant.

use slmc_recipe::{Schedule, TrainParams};

/// Learning rate for optimizer step `step` (0-based) of `p.steps`.
pub fn lr_at(p: &TrainParams, step: usize) -> f64 {
    if step < p.warmup_steps {
        return p.lr * (step + 1) as f64 / p.warmup_steps as f64;
    }
    let decay_steps = (p.steps - p.warmup_steps).max(1) as f64;
    let t = ((step - p.warmup_steps) as f64 / decay_steps).min(1.0);
    match p.schedule {
        Schedule::Constant => p.lr,
        Schedule::Linear => p.lr + (p.min_lr - p.lr) * t,
        Schedule::Cosine => p.min_lr + 0.5 * (p.lr - p.min_lr) * (1.0 + (std::f64::consts::PI * t).cos()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> TrainParams {
        TrainParams { steps: 110, lr: 1e-3, min_lr: 1e-4, warmup_steps: 10, ..TrainParams::default() }
    }

    #[test]
    fn warmup_then_cosine_to_min() {
        let p = params();
        assert!((lr_at(&p, 0) - 1e-4).abs() < 1e-12);
        assert!((lr_at(&p, 9) - 1e-3).abs() < 1e-12);
        assert!((lr_at(&p, 10) - 1e-3).abs() < 1e-12);
        assert!((lr_at(&p, 60) - 5.5e-4).abs() < 1e-12, "half-way is the mean");
        assert!((lr_at(&p, 110) - 1e-4).abs() < 1e-12);
        let lin = TrainParams { schedule: Schedule::Linear, ..p };
        assert!((lr_at(&lin, 60) - 5.5e-4).abs() < 1e-12);
    }
}
