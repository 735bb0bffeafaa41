//! Dense f64 linear algebra on input Hessians (faer): the damped inverse's Cholesky factor that
//! GPTQ and SparseGPT both run on, and the output error of a changed weight.

use crate::CalibError;
use faer::linalg::solvers::DenseSolveCore;
use faer::{Accum, Mat, MatRef, Par, Side};

/// The upper factor of a damped inverse Hessian.
#[derive(Debug, Clone)]
pub struct InverseFactor {
    /// `U`, row-major f32 `[n, n]`, with `(H + λI)⁻¹ = Uᵀ U`.
    pub u: Vec<f32>,
    /// The dampening that made the Hessian factorisable, as a fraction of its mean diagonal.
    pub damp: f64,
    /// Cholesky failures before that.
    pub retries: u32,
}

/// Upper factor `U` of the damped inverse of `h` (`[n, n]`, row-major, any positive scale),
/// adding `damp × mean(diag h)` to the diagonal and raising `damp` by 0.01 after every Cholesky
/// failure (docs/algorithms.md §3.3), up to 1.0.
pub fn inverse_upper_factor(h: &[f64], n: usize, damp: f64) -> Result<InverseFactor, CalibError> {
    let mean_diag = (0..n).map(|i| h[i * n + i]).sum::<f64>() / n as f64;
    let mut damp = damp;
    let mut retries = 0;
    while damp < 1.0 + 1e-9 {
        let m = Mat::<f64>::from_fn(n, n, |i, j| h[i * n + j] + if i == j { damp * mean_diag } else { 0.0 });
        let factored = m.llt(Side::Lower).ok().map(|l| l.inverse()).and_then(|inv| inv.llt(Side::Lower).ok());
        if let Some(l) = factored {
            let l = l.L();
            let u: Vec<f32> = (0..n * n).map(|k| l[(k % n, k / n)] as f32).collect();
            if u.iter().all(|v| v.is_finite()) && (0..n).all(|i| u[i * n + i] > 0.0) {
                return Ok(InverseFactor { u, damp, retries });
            }
        }
        retries += 1;
        damp += 0.01;
    }
    Err(CalibError::Numerical(format!(
        "the Hessian stayed singular with dampening up to 1.0 (x mean diagonal {mean_diag:.3e}) after {retries} tries"
    )))
}

/// Input columns never active on the calibration data (`h_jj == 0`): their diagonal becomes 1 so
/// the Hessian factorises, and their indices are returned (any weight value is free there; GPTQ and
/// SparseGPT set those weights to 0, as the references do).
pub fn dead_columns(h: &mut [f64], n: usize) -> Vec<usize> {
    let dead: Vec<usize> = (0..n).filter(|&c| h[c * n + c] == 0.0).collect();
    for &c in &dead {
        h[c * n + c] = 1.0;
    }
    dead
}

/// `tr(M H Mᵀ)` for `M` in `[in, out]` layout (`mt`, `[cols, rows]`): the output energy
/// `Σ ‖M x‖²` of the calibration inputs when `H = Σ x xᵀ` (or its mean).
pub fn output_energy(mt: &[f64], rows: usize, cols: usize, h: &[f64]) -> f64 {
    let hm = MatRef::from_row_major_slice(h, cols, cols);
    let x = MatRef::from_row_major_slice(mt, cols, rows);
    let mut hx = Mat::<f64>::zeros(cols, rows);
    faer::linalg::matmul::matmul(hx.as_mut(), Accum::Replace, hm, x, 1.0, Par::rayon(0));
    (0..cols).map(|c| (0..rows).map(|r| x[(c, r)] * hx[(c, r)]).sum::<f64>()).sum()
}

/// `tr(Δ H Δᵀ) / tr(W H Wᵀ)` with `Δ = W − Ŵ`: the output error of the changed layer on the
/// calibration inputs relative to the output energy. Both weights in `[in, out]` layout.
pub fn relative_output_error(wt: &[f32], new_t: &[f32], rows: usize, cols: usize, h: &[f64]) -> f64 {
    let w: Vec<f64> = wt.iter().map(|&v| f64::from(v)).collect();
    let delta: Vec<f64> = wt.iter().zip(new_t).map(|(&a, &b)| f64::from(a) - f64::from(b)).collect();
    let energy = output_energy(&w, rows, cols, h);
    if energy > 0.0 { output_energy(&delta, rows, cols, h) / energy } else { 0.0 }
}
