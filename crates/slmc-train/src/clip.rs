//! Global-norm gradient clipping (as `torch.nn.utils.clip_grad_norm_`; burn's own clipping is
//! per tensor).

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;

struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    parts: Vec<Tensor<1>>,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(p.id) {
            self.parts.push(g.square().sum());
        }
    }
}

struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f32,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(p.id) {
            self.grads.register::<D>(p.id, g * self.factor);
        }
    }
}

/// The global L2 norm of `grads` over the parameters of `module`.
pub fn grad_norm<M: Module>(module: &M, grads: &GradientsParams) -> f64 {
    let mut v = SquaredNorm { grads, parts: Vec::new() };
    module.visit(&mut v);
    if v.parts.is_empty() {
        return 0.0;
    }
    let total: f32 = Tensor::cat(v.parts, 0).sum().into_scalar();
    (total as f64).sqrt()
}

/// Scales `grads` so their global norm is at most `max` (no-op when `max` is 0). Returns the
/// norm before clipping.
pub fn clip_grad_norm<M: Module>(module: &M, grads: &mut GradientsParams, max: f64) -> f64 {
    let norm = grad_norm(module, grads);
    if max > 0.0 && norm > max {
        module.visit(&mut Scale { grads, factor: (max / (norm + 1e-6)) as f32 });
    }
    norm
}
