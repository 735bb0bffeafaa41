//! How `[data]` rows are read: packed text, or instruction rows trained with a loss mask.

use crate::tree::Origin;

/// The layout of the data files (`format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataFormat {
    /// Detected from each split's first file: a `messages` field/column → chat, `prompt` and
    /// `completion` → prompt-completion, else text.
    Auto,
    /// Plain text or `input_ids`, packed into sequences of `seq-len` (every token trains).
    Text,
    /// `messages` lists of `{role, content}`, rendered with the model's chat template.
    Chat,
    /// `prompt` and `completion` strings.
    PromptCompletion,
}

/// Which tokens of an instruction row train (`train-on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainOnSpec {
    /// Assistant turns / completions (and what closes them).
    Completions,
    /// Every token of the row.
    All,
}

/// What happens to an instruction row longer than `seq-len + 1` tokens (`overlong`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlongSpec {
    /// Keep its first `seq-len + 1` tokens.
    Truncate,
    /// Leave the row out.
    Drop,
}

impl crate::reader::Named for TrainOnSpec {
    const NAMES: &'static [(Self, &'static str)] = &[(Self::Completions, "completions"), (Self::All, "all")];
}

impl crate::reader::Named for OverlongSpec {
    const NAMES: &'static [(Self, &'static str)] = &[(Self::Truncate, "truncate"), (Self::Drop, "drop")];
}

impl crate::reader::Named for DataFormat {
    const NAMES: &'static [(Self, &'static str)] = &[
        (Self::Auto, "auto"),
        (Self::Text, "text"),
        (Self::Chat, "chat"),
        (Self::PromptCompletion, "prompt-completion"),
    ];
}

/// The row options of `[data]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RowSpec {
    /// Layout of the files.
    pub format: DataFormat,
    /// Which tokens train.
    pub train_on: TrainOnSpec,
    /// Rows that do not fit.
    pub overlong: OverlongSpec,
    /// Where `format` was written (the `[data]` table when it was not).
    pub origin: Origin,
}

impl RowSpec {
    /// Whether the format is known to be instruction rows (not text, not left to detection).
    pub fn is_rows(&self) -> bool {
        matches!(self.format, DataFormat::Chat | DataFormat::PromptCompletion)
    }
}
