//! A quantize stage: method, grid, GPTQ's options, calibration and the modules it binds.

use crate::diag::{Diagnostic, Diagnostics};
use crate::reader::TableReader;
use crate::schema::*;
use crate::tree::Value;
use crate::validate::{calibration, selection};

pub(crate) fn quantize_params(r: &mut TableReader<'_>, d: &mut Diagnostics) -> QuantizeParams {
    let method = r.named::<QuantMethod>("method", d).map_or(QuantMethod::Gptq, |v| v.0);
    let bits = r.uint_where("bits", 4, "2, 3, 4 or 8", |b| matches!(b, 2 | 3 | 4 | 8), d) as u8;
    let group_size = match r.node("group-size") {
        None => Some(128),
        Some(n) => match n.value {
            Value::Int(-1) => None,
            Value::Int(g) if [32, 64, 128].contains(&g) => Some(g as usize),
            _ => {
                d.push(Diagnostic::new(
                    format!("`group-size` in {} must be -1 (per channel), 32, 64 or 128", r.what()),
                    n.origin.clone(),
                ));
                Some(128)
            }
        },
    };
    let sym = r.boolean("sym", d).is_none_or(|b| b.0);
    let act_order = r.boolean("act-order", d).is_some_and(|b| b.0);
    let damp = r.float_where("damp", 0.01, "in (0, 1)", |v| v > 0.0 && v < 1.0, d);
    let block_size = r.uint_where(
        "block-size",
        128,
        "a positive multiple of `group-size`",
        |b| b > 0 && group_size.is_none_or(|g| b % g == 0),
        d,
    );
    let true_sequential = r.boolean("true-sequential", d).is_none_or(|b| b.0);
    let calibration = calibration(r, d);
    let select = selection(r, d);
    QuantizeParams {
        method,
        bits,
        group_size,
        sym,
        act_order,
        damp,
        block_size,
        true_sequential,
        calibration,
        select,
    }
}
