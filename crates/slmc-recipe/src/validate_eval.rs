//! An eval stage: the sliding-window protocol (`ctx`, `stride`, `max-tokens`).

use crate::diag::{Diagnostic, Diagnostics};
use crate::reader::TableReader;
use crate::schema::*;

/// Reads an eval stage's keys.
pub(crate) fn eval_params(r: &mut TableReader<'_>, d: &mut Diagnostics) -> EvalParams {
    let mut positive = |key: &'static str, min: usize, d: &mut Diagnostics| match r.uint(key, d) {
        Some((v, origin)) if v < min => {
            d.push(Diagnostic::new(
                format!("`{key}` in {} must be at least {min}, got {v}", r.what()),
                origin,
            ));
            None
        }
        other => other.map(|v| v.0),
    };
    let ctx = positive("ctx", 2, d);
    let stride = positive("stride", 1, d);
    let max_tokens = r.uint("max-tokens", d).map_or(0, |v| v.0);
    EvalParams { ctx, stride, max_tokens }
}
