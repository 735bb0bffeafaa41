//! Sparse training: the gradients of pruned weights are held at zero, so AdamW never moves them
//! (its update of an entry whose gradient and value are both zero is zero, weight decay
//! included) and a pruned model keeps every pruned weight exactly 0 while it is fine-tuned or
//! distilled.

use crate::TrainError;
use burn::module::ParamId;
use burn::optim::GradientsParams;
use burn::prelude::*;
use slmc_model::CausalLm;

/// Which weights of which decoder linears may train.
pub struct GradMask {
    entries: Vec<(ParamId, Tensor<2>)>,
}

impl GradMask {
    /// A mask over `lm`'s decoder linears from `(module name, keep)` pairs, where `keep` is
    /// row-major `[out, in]` (true = the weight trains). The model's pruned weights must already
    /// be zero.
    pub fn new(lm: &CausalLm, keep: &[(String, Vec<bool>)]) -> Result<Self, TrainError> {
        let device = lm.device();
        let mut entries = Vec::with_capacity(keep.len());
        for (name, k) in keep {
            let lin = lm.decoder_linear(name).ok_or_else(|| {
                TrainError::Data(format!("sparsity mask for `{name}`, which the model does not have"))
            })?;
            let [cols, rows] = lin.weight.val().dims();
            if k.len() != rows * cols {
                return Err(TrainError::Data(format!(
                    "sparsity mask for `{name}` holds {} entries but the weight is {rows}x{cols}",
                    k.len()
                )));
            }
            // burn keeps linear weights as [in, out].
            let values: Vec<f32> =
                (0..cols * rows).map(|i| if k[(i % rows) * cols + i / rows] { 1.0 } else { 0.0 }).collect();
            entries.push((
                lin.weight.id,
                Tensor::<2>::from_data(TensorData::new(values, [cols, rows]), &device),
            ));
        }
        Ok(Self { entries })
    }

    /// Zeroes the gradients of pruned weights.
    pub fn apply(&self, grads: &mut GradientsParams) {
        for (id, mask) in &self.entries {
            if let Some(g) = grads.remove::<2>(*id) {
                grads.register::<2>(*id, g * mask.clone());
            }
        }
    }
}
