//! Streaming Hessian `H = (1/N) Σ x xᵀ` of a linear module's inputs (docs/algorithms.md §1.3): each
//! batch's `XᵀX` is one f32 matmul on the device, summed on the host in f64. The overall scale is
//! irrelevant to GPTQ and SparseGPT (damping is relative to the mean diagonal) and to Wanda (which
//! reads its diagonal: per-column input norms compared within one output row).

use burn::prelude::*;

/// Running `Σ x xᵀ` over calibration tokens.
#[derive(Debug, Clone)]
pub struct Hessian {
    cols: usize,
    sum: Vec<f64>,
    tokens: usize,
}

impl Hessian {
    /// An empty accumulator for `cols` input features.
    pub fn new(cols: usize) -> Self {
        Self { cols, sum: vec![0.0; cols * cols], tokens: 0 }
    }

    /// Adds the tokens of `x: [batch, seq, cols]` (calibration windows are never padded, so
    /// every position is a real token).
    pub fn add(&mut self, x: &Tensor<3>) {
        let [b, s, c] = x.dims();
        assert_eq!(c, self.cols, "Hessian width");
        let x2 = x.clone().reshape([b * s, c]);
        let xtx: Vec<f32> =
            x2.clone().transpose().matmul(x2).into_data().convert::<f32>().try_to_vec::<f32>().expect("f32");
        for (acc, v) in self.sum.iter_mut().zip(xtx) {
            *acc += f64::from(v);
        }
        self.tokens += b * s;
    }

    /// Tokens seen.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// `(1/N) Σ x xᵀ`, row-major `[cols, cols]`.
    pub fn mean(&self) -> Vec<f64> {
        let n = self.tokens.max(1) as f64;
        self.sum.iter().map(|v| v / n).collect()
    }
}

/// Running `Σ x_j²` per input feature: the diagonal of [`Hessian`] without the `XᵀX` product
/// (all a Wanda score or an OWL outlier ratio reads).
#[derive(Debug, Clone)]
pub struct ColumnNorms {
    sum: Vec<f64>,
    tokens: usize,
}

impl ColumnNorms {
    /// An empty accumulator for `cols` input features.
    pub fn new(cols: usize) -> Self {
        Self { sum: vec![0.0; cols], tokens: 0 }
    }

    /// Adds the tokens of `x: [batch, seq, cols]`.
    pub fn add(&mut self, x: &Tensor<3>) {
        let [b, s, c] = x.dims();
        assert_eq!(c, self.sum.len(), "input width");
        let sq: Vec<f32> = x
            .clone()
            .reshape([b * s, c])
            .square()
            .sum_dim(0)
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("f32");
        for (acc, v) in self.sum.iter_mut().zip(sq) {
            *acc += f64::from(v);
        }
        self.tokens += b * s;
    }

    /// `(1/N) Σ x_j²` per feature.
    pub fn mean(&self) -> Vec<f64> {
        let n = self.tokens.max(1) as f64;
        self.sum.iter().map(|v| v / n).collect()
    }
}
