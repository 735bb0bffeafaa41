//! The in-memory adapter set: per module `A`, `B` (and DoRA's magnitude), the tensors saved
//! whole, the update `scale · B·A` and merging into a base weight (`docs/algorithms.md` §8.1–8.4).

use super::config::LoraConfig;
use crate::FormatError;
use slmc_config::FloatDtype;
use std::collections::BTreeMap;

/// A dense row-major f32 matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// `rows × cols` values, row by row.
    pub data: Vec<f32>,
}

impl Matrix {
    /// A matrix from its values; `data.len()` must be `rows × cols`.
    pub fn new(rows: usize, cols: usize, data: Vec<f32>) -> Result<Self, FormatError> {
        if data.len() != rows * cols {
            return Err(FormatError::BadTensor {
                name: "matrix".into(),
                reason: format!("{} values for a {rows} × {cols} matrix", data.len()),
            });
        }
        Ok(Self { rows, cols, data })
    }

    /// A matrix of zeros.
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Self { rows, cols, data: vec![0.0; rows * cols] }
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }
}

/// The adapter of one Linear module with weight `W: [out, in]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraWeights {
    /// `lora_A`: `[r, in]`.
    pub a: Matrix,
    /// `lora_B`: `[out, r]`.
    pub b: Matrix,
    /// DoRA's `lora_magnitude_vector`: `[out]`, one magnitude per output row.
    pub magnitude: Option<Vec<f32>>,
}

impl LoraWeights {
    /// Checks that A, B (and the magnitude) fit together; `module` names the module in errors.
    pub fn new(module: &str, a: Matrix, b: Matrix, magnitude: Option<Vec<f32>>) -> Result<Self, FormatError> {
        let bad = |reason: String| FormatError::BadTensor { name: module.to_string(), reason };
        if a.rows != b.cols {
            return Err(bad(format!(
                "lora_A is [{}, {}] and lora_B is [{}, {}]: A's rows and B's columns must both be the rank",
                a.rows, a.cols, b.rows, b.cols
            )));
        }
        if let Some(m) = &magnitude
            && m.len() != b.rows
        {
            return Err(bad(format!(
                "the DoRA magnitude has {} values but lora_B has {} output rows",
                m.len(),
                b.rows
            )));
        }
        Ok(Self { a, b, magnitude })
    }

    /// The rank `r`.
    pub fn rank(&self) -> usize {
        self.a.rows
    }

    /// Columns of the base weight.
    pub fn in_features(&self) -> usize {
        self.a.cols
    }

    /// Rows of the base weight.
    pub fn out_features(&self) -> usize {
        self.b.rows
    }

    /// `scale · B·A` as `[out, in]`, as PEFT's `get_delta_weight` computes it: the product in
    /// f32 (accumulated here in f64 and rounded once), then multiplied by the f32 scale.
    pub fn delta(&self, scale: f64) -> Matrix {
        let (out, inp) = (self.out_features(), self.in_features());
        let s = scale as f32;
        let mut d = Matrix::zeros(out, inp);
        for o in 0..out {
            let b_row = self.b.row(o);
            for (i, v) in d.data[o * inp..(o + 1) * inp].iter_mut().enumerate() {
                let mut acc = 0.0f64;
                for (k, &bk) in b_row.iter().enumerate() {
                    acc += f64::from(bk) * f64::from(self.a.data[k * inp + i]);
                }
                *v = (acc as f32) * s;
            }
        }
        d
    }

    /// Merges the adapter into `weight` (`[out, in]`, row-major), as PEFT's `merge_and_unload`:
    /// LoRA `W' = W + scale·B·A`; DoRA `W' = (m / ‖W + scale·B·A‖) ⊙ (W + scale·B·A)` with one L2
    /// norm per output row (over the input dimension: `torch.linalg.norm(W, dim=1)` of the
    /// `[out, in]` weight, which PEFT's comments call "column-wise" in the paper's transposed
    /// notation).
    pub fn merge_into(&self, weight: &mut [f32], scale: f64) -> Result<(), FormatError> {
        let (out, inp) = (self.out_features(), self.in_features());
        if weight.len() != out * inp {
            return Err(FormatError::BadTensor {
                name: "weight".into(),
                reason: format!("{} values, the adapter needs [{out}, {inp}] = {}", weight.len(), out * inp),
            });
        }
        let delta = self.delta(scale);
        for (w, d) in weight.iter_mut().zip(&delta.data) {
            *w += d;
        }
        if let Some(m) = &self.magnitude {
            for (o, row) in weight.chunks_exact_mut(inp).enumerate() {
                let norm = row.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt() as f32;
                let factor = m[o] / norm;
                row.iter_mut().for_each(|x| *x *= factor);
            }
        }
        Ok(())
    }
}

/// A tensor of a module trained in full (`modules_to_save`), which replaces the base tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedTensor {
    /// Shape, outermost first.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<f32>,
}

/// A LoRA adapter set: configuration, per-module weights and the tensors saved whole.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraAdapter {
    /// The configuration.
    pub config: LoraConfig,
    /// Hugging Face module name (`model.layers.3.self_attn.q_proj`) → its adapter.
    pub modules: BTreeMap<String, LoraWeights>,
    /// Hugging Face parameter name (`lm_head.weight`) → the tensor that replaces it.
    pub saved: BTreeMap<String, SavedTensor>,
    /// Storage type of the tensors when written (PEFT stores the training dtype).
    pub dtype: FloatDtype,
}

impl LoraAdapter {
    /// An empty f32 adapter set.
    pub fn new(config: LoraConfig) -> Self {
        Self { config, modules: BTreeMap::new(), saved: BTreeMap::new(), dtype: FloatDtype::F32 }
    }

    /// The factor on `B·A` (see [`LoraConfig::scale`]).
    pub fn scale(&self) -> f64 {
        self.config.scale()
    }

    fn module(&self, name: &str) -> Result<&LoraWeights, FormatError> {
        self.modules.get(name).ok_or_else(|| FormatError::MissingTensor { name: format!("{name} (adapter)") })
    }

    /// `scale · B·A` of a module, `[out, in]`.
    pub fn delta(&self, module: &str) -> Result<Matrix, FormatError> {
        Ok(self.module(module)?.delta(self.scale()))
    }

    /// Merges a module's adapter into its base weight (see [`LoraWeights::merge_into`]).
    pub fn merge_into(&self, module: &str, weight: &mut [f32]) -> Result<(), FormatError> {
        self.module(module)?.merge_into(weight, self.scale()).map_err(|e| match e {
            FormatError::BadTensor { reason, .. } => {
                FormatError::BadTensor { name: format!("{module}.weight"), reason }
            }
            e => e,
        })
    }

    /// Checks that every module's rank is `config.r` and that DoRA modules (and only they)
    /// carry a magnitude.
    pub fn validate(&self) -> Result<(), FormatError> {
        for (name, w) in &self.modules {
            let bad = |reason: String| Err(FormatError::BadTensor { name: name.clone(), reason });
            if w.rank() != self.config.r {
                return bad(format!("rank {} but the adapter config says r = {}", w.rank(), self.config.r));
            }
            match (&w.magnitude, self.config.dora) {
                (None, true) => {
                    return bad("use_dora is set but the module has no lora_magnitude_vector".into());
                }
                (Some(_), false) => {
                    return bad("the module has a lora_magnitude_vector but use_dora is not set".into());
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Checks that the adapter fits a model: `model_shapes(name)` gives the `[rows, cols]` of a
/// model parameter by Hugging Face name (`model.layers.0.self_attn.q_proj.weight`), or `None`
/// if the model has no such 2-D parameter. Each module's weight must be `[out, in]` of its A/B;
/// each saved 2-D tensor (`modules_to_save`) must exist with the model's shape. Saved tensors of
/// other ranks (biases) are not checked: `model_shapes` only knows 2-D parameters.
pub fn check_fits(
    adapter: &LoraAdapter,
    model_shapes: &dyn Fn(&str) -> Option<[usize; 2]>,
) -> Result<(), FormatError> {
    for (module, w) in &adapter.modules {
        let name = format!("{module}.weight");
        let want = [w.out_features(), w.in_features()];
        match model_shapes(&name) {
            None => {
                return Err(FormatError::BadTensor {
                    name,
                    reason: "the adapter targets it but the model has no such 2-D weight".into(),
                });
            }
            Some(have) if have != want => {
                return Err(FormatError::BadTensor {
                    name,
                    reason: format!(
                        "the model's weight is {have:?} but the adapter (lora_A [{}, {}], lora_B [{}, {}]) needs {want:?}",
                        w.a.rows, w.a.cols, w.b.rows, w.b.cols
                    ),
                });
            }
            Some(_) => {}
        }
    }
    for (name, t) in &adapter.saved {
        match (model_shapes(name), t.shape.as_slice()) {
            (None, [_, _]) => {
                return Err(FormatError::BadTensor {
                    name: name.clone(),
                    reason: "saved in the adapter (modules_to_save) but the model has no such 2-D weight"
                        .into(),
                });
            }
            (Some(have), [r, c]) if have != [*r, *c] => {
                return Err(FormatError::BadTensor {
                    name: name.clone(),
                    reason: format!("saved in the adapter as [{r}, {c}] but the model's is {have:?}"),
                });
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(magnitude: Option<Vec<f32>>) -> LoraWeights {
        // A: [1, 2], B: [2, 1] → B·A = [[1, 2], [3, 6]]
        let a = Matrix::new(1, 2, vec![1.0, 2.0]).unwrap();
        let b = Matrix::new(2, 1, vec![1.0, 3.0]).unwrap();
        LoraWeights::new("m", a, b, magnitude).unwrap()
    }

    #[test]
    fn delta_and_lora_merge() {
        let w = weights(None);
        assert_eq!(w.delta(0.5).data, vec![0.5, 1.0, 1.5, 3.0]);
        let mut base = vec![1.0, 0.0, 0.0, 1.0];
        w.merge_into(&mut base, 0.5).unwrap();
        assert_eq!(base, vec![1.5, 1.0, 1.5, 4.0]);
        assert!(w.merge_into(&mut [0.0; 3], 1.0).is_err());
    }

    #[test]
    fn dora_normalises_each_output_row() {
        // ΔW = B·A = [[1, 2], [0, 0]], so W + ΔW = [[3, 4], [0, 1]]: row norms 5 and 1.
        let a = Matrix::new(1, 2, vec![1.0, 2.0]).unwrap();
        let b = Matrix::new(2, 1, vec![1.0, 0.0]).unwrap();
        let w = LoraWeights::new("m", a, b, Some(vec![10.0, 3.0])).unwrap();
        let mut base = vec![2.0, 2.0, 0.0, 1.0];
        w.merge_into(&mut base, 1.0).unwrap();
        // Row 0: [3, 4] · 10/5; row 1: [0, 1] · 3/1. A column norm would mix the rows.
        assert_eq!(base, vec![6.0, 8.0, 0.0, 3.0]);
    }

    #[test]
    fn shapes_are_checked() {
        let a = Matrix::new(2, 3, vec![0.0; 6]).unwrap();
        let b = Matrix::new(4, 1, vec![0.0; 4]).unwrap();
        assert!(LoraWeights::new("m", a, b, None).is_err());
        assert!(LoraWeights::new("m", weights(None).a, weights(None).b, Some(vec![1.0])).is_err());
    }
}
