//! Text and token sources for slmc: `.txt`, `.jsonl` and `.parquet` files holding either text
//! or pre-tokenized `input_ids`, packed into sequences; and instruction rows (conversations
//! rendered with the model's chat template, prompt/completion pairs) tokenized one row per
//! sequence with a loss mask. Records are streamed to a callback, so files larger than memory
//! can be processed.

pub mod chat_rows;
pub mod chat_template;
pub mod error;
pub mod masked;
pub mod sequences;
pub mod source;
pub mod tokens;

pub use chat_rows::{ChatRow, RowFormat, detect_format, for_each_chat_row};
pub use chat_template::ChatTemplate;
pub use error::DataError;
pub use masked::{Encoded, MaskOptions, MaskedRows, Overlong, RowStats, TrainOn, build_row_file};
pub use sequences::{Sequence, Sequences};
pub use source::{Record, SourceOptions, for_each_record, read_records};
pub use tokens::{Order, Packed, TokenFile, build_token_file, calibration_samples, expand};
