//! The decoder's norms: Llama's RMSNorm `w·x̂`, Gemma's `(1 + w)·x̂` and Phi-2's LayerNorm, all
//! computed in f32 as transformers does.

use crate::config::NormKind;
use burn::module::{Module, Param};
use burn::prelude::*;

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

    /// Normalises over the last dimension of a rank-`D` tensor.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let last = D - 1;
        let w = self.weight.val().unsqueeze::<D>();
        match self.kind {
            NormKind::Rms | NormKind::RmsUnitOffset => {
                let inv_rms = (x.clone().square().mean_dim(last) + self.eps).sqrt().recip();
                let xhat = x * inv_rms;
                if self.kind == NormKind::Rms { xhat * w } else { xhat * (w + 1.0) }
            }
            NormKind::Layer => {
                let centered = x.clone() - x.mean_dim(last);
                let var = centered.clone().square().mean_dim(last);
                let y = centered * (var + self.eps).sqrt().recip() * w;
                match &self.bias {
                    Some(b) => y + b.val().unsqueeze::<D>(),
                    None => y,
                }
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
