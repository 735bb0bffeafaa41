//! The decoder's norms: Llama's RMSNorm `w·x̂`, Gemma's `(1 + w)·x̂` and Phi-2's LayerNorm, all
//! computed in f32 as transformers does.

use crate::config::NormKind;
use crate::model::{in_dtype, to_f32};
use burn::module::{Module, Param};
use burn::prelude::*;
use burn::tensor::DType;

/// A norm over the last dimension (see the module docs).
#[derive(Module, Debug)]
pub struct Norm {
    /// The per-channel scale (Hugging Face `*.weight`; Gemma stores the offset from one).
    pub weight: Param<Tensor<1>>,
    /// The per-channel shift (LayerNorm only).
    pub bias: Option<Param<Tensor<1>>>,
    /// Added to the variance (mean square) before the square root.
    pub eps: f64,
    /// Which formula.
    #[module(skip)]
    pub kind: NormKind,
}

impl Norm {
    /// A norm of `kind` with the given parameters.
    pub fn new(kind: NormKind, weight: Tensor<1>, bias: Option<Tensor<1>>, eps: f64) -> Self {
        Self { weight: Param::from_tensor(weight), bias: bias.map(Param::from_tensor), eps, kind }
    }

    /// Normalises over the last dimension of a rank-`D` tensor. Low-precision (bf16/f16) inputs
    /// are normalised in f32 and the result returned in their dtype, as transformers does:
    /// Llama's norm casts `x̂` back before the weight multiplies it; Gemma's multiplies by
    /// `1 + w` in f32 first; LayerNorm computes in f32 throughout.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let dtype = x.dtype();
        let low = dtype != DType::F32;
        if !low && self.kind != NormKind::Layer {
            let offset = if self.kind == NormKind::RmsUnitOffset { 1.0 } else { 0.0 };
            if let Some(y) = crate::kernels::rms_norm(x.clone(), &self.weight.val(), self.eps, offset) {
                return y;
            }
        }
        let last = D - 1;
        let x = to_f32(x);
        let w = self.weight.val().unsqueeze::<D>();
        let back = |y: Tensor<D>| if low { y.cast(dtype) } else { y };
        match self.kind {
            NormKind::Rms | NormKind::RmsUnitOffset => {
                let inv_rms = (x.clone().square().mean_dim(last) + self.eps).sqrt().recip();
                let xhat = x * inv_rms;
                if self.kind == NormKind::Rms {
                    back(xhat) * in_dtype(w, dtype)
                } else {
                    back(xhat * (to_f32(w) + 1.0))
                }
            }
            NormKind::Layer => {
                let centered = x.clone() - x.mean_dim(last);
                let var = centered.clone().square().mean_dim(last);
                let y = centered * (var + self.eps).sqrt().recip() * to_f32(w);
                back(match &self.bias {
                    Some(b) => y + to_f32(b.val().unsqueeze::<D>()),
                    None => y,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(t: Tensor<2>) -> Vec<f32> {
        t.into_data().try_to_vec().unwrap()
    }

    #[test]
    fn each_kind_matches_its_closed_form() {
        let dev = Device::flex();
        let x = Tensor::<2>::from_data([[1.0f32, 2.0, 3.0, 6.0]], &dev);
        let w = Tensor::<1>::from_data([0.5f32, -1.0, 2.0, 0.0], &dev);
        let b = Tensor::<1>::from_data([0.1f32, 0.2, 0.3, 0.4], &dev);
        let rms = (50.0f32 / 4.0).sqrt();
        let got = values(Norm::new(NormKind::Rms, w.clone(), None, 0.0).forward(x.clone()));
        assert!((got[0] - 0.5 / rms).abs() < 1e-6 && got[3] == 0.0, "{got:?}");
        let got = values(Norm::new(NormKind::RmsUnitOffset, w.clone(), None, 0.0).forward(x.clone()));
        assert!((got[0] - 1.5 / rms).abs() < 1e-6 && (got[3] - 6.0 / rms).abs() < 1e-6, "{got:?}");
        // mean 3, variance (4 + 1 + 0 + 9) / 4 = 3.5.
        let got = values(Norm::new(NormKind::Layer, w, Some(b), 0.0).forward(x));
        let sd = 3.5f32.sqrt();
        assert!((got[0] - (0.5 * -2.0 / sd + 0.1)).abs() < 1e-6, "{got:?}");
        assert!((got[3] - 0.4).abs() < 1e-6, "{got:?}");
    }
}
