//! The layer-wise calibration driver of docs/algorithms.md §1, shared by GPTQ/RTN quantization and
//! Wanda/SparseGPT pruning: calibration windows are embedded once, then one decoder block at a
//! time has its linear modules solved by a [`Solver`] (from Hessians of their inputs, one
//! true-sequential group after another when the solver asks for it), and the updated block
//! produces the next block's inputs. Finished blocks are saved as record files by the solver, so
//! an interrupted run resumes from the last finished block with identical results.
//!
//! Also here: the streaming input [`Hessian`], the damped inverse-Hessian Cholesky factor both
//! GPTQ and SparseGPT use, and the relative output error every solver reports.

pub mod error;
pub mod hessian;
pub mod linalg;
pub mod walk;

pub use error::CalibError;
pub use hessian::{ColumnNorms, Hessian};
pub use linalg::{InverseFactor, dead_columns, inverse_upper_factor, output_energy, relative_output_error};
pub use walk::{
    Block, CalibEvent, Control, ModuleInput, ModuleReport, Solved, Solver, set_linear_weight, split_name,
    walk, weight_values,
};
