//! `[data]` row options (`format`, `train-on`, `overlong`) and the checks that involve them.

use crate::diag::{Diagnostic, Diagnostics};
use crate::reader::TableReader;
use crate::schema::*;
use crate::schema_data::*;

/// The formats `format` accepts.
pub const DATA_FORMATS: &[&str] = &["auto", "text", "chat", "prompt-completion"];

/// Reads `format`, `train-on` and `overlong` of the `[data]` table.
pub(crate) fn row_spec(r: &mut TableReader<'_>, d: &mut Diagnostics) -> RowSpec {
    let format = r.choice("format", DATA_FORMATS, d);
    let train_on = r.choice("train-on", &["completions", "all"], d);
    let overlong = r.choice("overlong", &["truncate", "drop"], d);
    let origin = format.as_ref().map_or_else(|| r.origin().clone(), |f| f.1.clone());
    let spec = RowSpec {
        format: match format.as_ref().map(|f| f.0) {
            Some("text") => DataFormat::Text,
            Some("chat") => DataFormat::Chat,
            Some("prompt-completion") => DataFormat::PromptCompletion,
            _ => DataFormat::Auto,
        },
        train_on: match train_on.as_ref().map(|f| f.0) {
            Some("all") => TrainOnSpec::All,
            _ => TrainOnSpec::Completions,
        },
        overlong: match overlong.as_ref().map(|f| f.0) {
            Some("drop") => OverlongSpec::Drop,
            _ => OverlongSpec::Truncate,
        },
        origin,
    };
    if spec.format == DataFormat::Text {
        for (key, given) in [("train-on", train_on), ("overlong", overlong)] {
            if let Some((_, origin)) = given {
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
