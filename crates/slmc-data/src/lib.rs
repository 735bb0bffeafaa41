//! Text and token sources for slmc: `.txt`, `.jsonl` and `.parquet` files holding either text
//! or pre-tokenized `input_ids`. Records are streamed to a callback, so files larger than memory
//! can be processed.

pub mod error;
pub mod source;
pub mod tokens;

pub use error::DataError;
pub use source::{Record, SourceOptions, for_each_record, read_records};
pub use tokens::{Order, Packed, TokenFile, build_token_file, calibration_samples, expand};
