//! `[data]` row options (`format`, `train-on`, `overlong`) and the checks that involve them.

use crate::diag::{Diagnostic, Diagnostics};
use crate::reader::TableReader;
use crate::schema::*;
use crate::schema_data::*;

/// Reads `format`, `train-on` and `overlong` of the `[data]` table.
pub(crate) fn row_spec(r: &mut TableReader<'_>, d: &mut Diagnostics) -> RowSpec {
    let format = r.named::<DataFormat>("format", d);
    let train_on = r.named::<TrainOnSpec>("train-on", d);
    let overlong = r.named::<OverlongSpec>("overlong", d);
    let origin = format.as_ref().map_or_else(|| r.origin().clone(), |f| f.1.clone());
    let spec = RowSpec {
        format: format.as_ref().map_or(DataFormat::Auto, |f| f.0),
        train_on: train_on.as_ref().map_or(TrainOnSpec::Completions, |f| f.0),
        overlong: overlong.as_ref().map_or(OverlongSpec::Truncate, |f| f.0),
        origin,
    };
    if spec.format == DataFormat::Text {
        for (key, given) in [("train-on", train_on.map(|t| t.1)), ("overlong", overlong.map(|o| o.1))] {
            if let Some(origin) = given {
                d.push(Diagnostic::new(
                    format!("`{key}` in [data] applies to chat and prompt-completion rows, not to `format = \"text\"`"),
                    origin,
                ));
            }
        }
    }
    spec
}

/// Stages that draw calibration windows from a packed text stream cannot use instruction rows.
pub(crate) fn checks(r: &Recipe, d: &mut Diagnostics) {
    let Some(data) = &r.data else { return };
    if !data.rows.is_rows() {
        return;
    }
    for s in &r.stages {
        let calibrates = match &s.kind {
            StageKind::Quantize(q) => q.method == QuantMethod::Gptq,
            StageKind::Prune(p) => p.needs_data(),
            _ => false,
        };
        if calibrates {
            d.push(Diagnostic::new(
                format!(
                    "stage {} ({}) draws calibration windows from packed text, and [data] has `format = \"{}\"` rows; run it in a recipe whose [data] is text",
                    s.index,
                    s.kind.name(),
                    if data.rows.format == DataFormat::Chat { "chat" } else { "prompt-completion" }
                ),
                s.origin.clone(),
            ));
        }
    }
}
