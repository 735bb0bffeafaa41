//! Instruction rows from `.jsonl` and `.parquet` files: conversations (`messages`: a list of
//! `{"role", "content"}`) and `{"prompt", "completion"}` pairs, the two layouts TRL's SFT trainer
//! reads.

use crate::DataError;
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch, StructArray};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::io::BufRead;
use std::path::Path;

/// How the rows of a data file are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowFormat {
    /// Plain text (`text` / `input_ids`), packed into sequences.
    Text,
    /// `messages`: a list of `{"role", "content"}`, rendered with the model's chat template.
    Chat,
    /// `prompt` and `completion` strings.
    PromptCompletion,
}

impl RowFormat {
    /// The recipe spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Chat => "chat",
            Self::PromptCompletion => "prompt-completion",
        }
    }
}

/// One instruction row.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatRow {
    /// A conversation: message objects with at least `role` and `content` (other keys are passed
    /// to the template as they are).
    Messages(Vec<serde_json::Value>),
    /// A prompt and the completion to learn.
    PromptCompletion {
        /// Not trained on.
        prompt: String,
        /// Trained on (followed by the end-of-sequence token).
        completion: String,
    },
}

/// The layout of a file, from the fields of its first row (jsonl) or its columns (parquet):
/// `messages` → chat, `prompt` + `completion` → prompt-completion, else text. A file that has
/// both a `messages` field and prompt/completion fields is ambiguous and refused.
pub fn detect_format(path: &Path) -> Result<RowFormat, DataError> {
    let names: Vec<String> = match extension(path).as_str() {
        "jsonl" | "json" | "ndjson" => {
            let file =
                std::fs::File::open(path).map_err(|e| DataError::Io { path: path.into(), source: e })?;
            let mut first = None;
            for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
                let line = line.map_err(|e| DataError::Io { path: path.into(), source: e })?;
                if !line.trim().is_empty() {
                    first = Some((i + 1, line));
                    break;
                }
            }
            let Some((n, line)) = first else { return Err(DataError::Empty { path: path.into() }) };
            let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| DataError::Invalid {
                path: path.into(),
                line: Some(n),
                reason: format!("invalid JSON: {e}"),
            })?;
            v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
        }
        "parquet" => {
            let file =
                std::fs::File::open(path).map_err(|e| DataError::Io { path: path.into(), source: e })?;
            let b = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| DataError::Invalid {
                path: path.into(),
                line: None,
                reason: format!("not a readable parquet file: {e}"),
            })?;
            b.schema().fields().iter().map(|f| f.name().clone()).collect()
        }
        _ => return Ok(RowFormat::Text),
    };
    let has = |k: &str| names.iter().any(|n| n == k);
    match (has("messages"), has("prompt") && has("completion")) {
        (true, true) => Err(DataError::Invalid {
            path: path.into(),
            line: None,
            reason: "rows have both `messages` and `prompt`/`completion`; set `format` in [data]".into(),
        }),
        (true, false) => Ok(RowFormat::Chat),
        (false, true) => Ok(RowFormat::PromptCompletion),
        (false, false) => Ok(RowFormat::Text),
    }
}

fn extension(path: &Path) -> String {
    path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase()
}

/// Streams every row of `path` in `format` (chat or prompt-completion) to `f`, in file order.
/// Returns the number of rows.
pub fn for_each_chat_row(
    path: &Path,
    format: RowFormat,
    f: &mut dyn FnMut(ChatRow) -> Result<(), DataError>,
) -> Result<usize, DataError> {
    let n = match extension(path).as_str() {
        "jsonl" | "json" | "ndjson" => read_jsonl(path, format, f)?,
        "parquet" => read_parquet(path, format, f)?,
        _ => {
            return Err(DataError::Invalid {
                path: path.into(),
                line: None,
                reason: format!("{} rows are read from .jsonl or .parquet files", format.name()),
            });
        }
    };
    if n == 0 {
        return Err(DataError::Empty { path: path.into() });
    }
    Ok(n)
}

/// A row's message list, checked: objects with string `role` and `content`.
fn messages_of(v: &serde_json::Value) -> Result<Vec<serde_json::Value>, String> {
    let list = v.as_array().ok_or("`messages` must be a list of {\"role\", \"content\"} objects")?;
    if list.is_empty() {
        return Err("`messages` is empty".into());
    }
    for (i, m) in list.iter().enumerate() {
        let role = m.get("role").and_then(|r| r.as_str());
        let content = m.get("content").map(|c| c.is_string());
        if role.is_none() || content != Some(true) {
            return Err(format!("message {} must have string `role` and `content`", i + 1));
        }
    }
    Ok(list.clone())
}

fn read_jsonl(
    path: &Path,
    format: RowFormat,
    f: &mut dyn FnMut(ChatRow) -> Result<(), DataError>,
) -> Result<usize, DataError> {
    let invalid =
        |line: usize, reason: String| DataError::Invalid { path: path.into(), line: Some(line), reason };
    crate::source::for_each_json_line(path, &mut |line, v| {
        let row = match format {
            RowFormat::Chat => {
                let m =
                    v.get("messages").ok_or_else(|| invalid(line, "row has no `messages` field".into()))?;
                ChatRow::Messages(messages_of(m).map_err(|r| invalid(line, r))?)
            }
            _ => {
                let s = |k: &str| {
                    v.get(k)
                        .and_then(|x| x.as_str())
                        .map(str::to_string)
                        .ok_or_else(|| invalid(line, format!("row needs a string `{k}` field")))
                };
                ChatRow::PromptCompletion { prompt: s("prompt")?, completion: s("completion")? }
            }
        };
        f(row)
    })
}

fn read_parquet(
    path: &Path,
    format: RowFormat,
    f: &mut dyn FnMut(ChatRow) -> Result<(), DataError>,
) -> Result<usize, DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::Io { path: path.into(), source: e })?;
    let invalid =
        |line: Option<usize>, reason: String| DataError::Invalid { path: path.into(), line, reason };
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| invalid(None, format!("not a readable parquet file: {e}")))?;
    let schema = builder.schema().clone();
    let wanted: &[&str] = if format == RowFormat::Chat { &["messages"] } else { &["prompt", "completion"] };
    let mut indices = Vec::new();
    for w in wanted {
        let Ok(i) = schema.index_of(w) else {
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            return Err(invalid(None, format!("no `{w}` column; the file has: {}", names.join(", "))));
        };
        indices.push(i);
    }
    let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), indices);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(1024)
        .build()
        .map_err(|e| invalid(None, e.to_string()))?;
    let mut n = 0;
    for batch in reader {
        let batch: RecordBatch = batch.map_err(|e| invalid(Some(n + 1), e.to_string()))?;
        for r in 0..batch.num_rows() {
            let row = n + 1;
            let at = |name: &str| -> Result<&ArrayRef, DataError> {
                let col = batch.column_by_name(name).expect("projected");
                if col.is_null(r) {
                    return Err(invalid(Some(row), format!("`{name}` is null")));
                }
                Ok(col)
            };
            let record = if format == RowFormat::Chat {
                ChatRow::Messages(messages_at(at("messages")?, r).map_err(|e| invalid(Some(row), e))?)
            } else {
                ChatRow::PromptCompletion {
                    prompt: string_at(at("prompt")?, r).map_err(|e| invalid(Some(row), e))?,
                    completion: string_at(at("completion")?, r).map_err(|e| invalid(Some(row), e))?,
                }
            };
            f(record)?;
            n += 1;
        }
    }
    Ok(n)
}

fn string_at(col: &dyn Array, r: usize) -> Result<String, String> {
    match col.data_type() {
        DataType::Utf8 => Ok(col.as_string::<i32>().value(r).to_string()),
        DataType::LargeUtf8 => Ok(col.as_string::<i64>().value(r).to_string()),
        DataType::Utf8View => Ok(col.as_string_view().value(r).to_string()),
        other => Err(format!("column has type {other}; expected strings")),
    }
}

/// Row `r` of a `list<struct<role: string, content: string, …>>` column.
fn messages_at(col: &ArrayRef, r: usize) -> Result<Vec<serde_json::Value>, String> {
    let list = match col.data_type() {
        DataType::List(_) => col.as_list::<i32>().value(r),
        DataType::LargeList(_) => col.as_list::<i64>().value(r),
        other => {
            return Err(format!("`messages` has type {other}; expected a list of {{role, content}} structs"));
        }
    };
    let Some(items) = list.as_any().downcast_ref::<StructArray>() else {
        return Err(format!(
            "`messages` elements have type {}; expected {{role, content}} structs",
            list.data_type()
        ));
    };
    let mut out = Vec::with_capacity(items.len());
    for i in 0..items.len() {
        let mut m = serde_json::Map::new();
        for (field, column) in items.fields().iter().zip(items.columns()) {
            if column.is_null(i) {
                continue;
            }
            if let Ok(s) = string_at(column.as_ref(), i) {
                m.insert(field.name().clone(), serde_json::Value::String(s));
            }
        }
        out.push(serde_json::Value::Object(m));
    }
    messages_of(&serde_json::Value::Array(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::StringArray;
    use arrow_array::builder::{ListBuilder, StringBuilder, StructBuilder};
    use arrow_schema::{Field, Fields};
    use std::sync::Arc;

    fn rows(path: &Path, format: RowFormat) -> Result<Vec<ChatRow>, DataError> {
        let mut out = Vec::new();
        for_each_chat_row(path, format, &mut |r| {
            out.push(r);
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn jsonl_rows_and_detection() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.jsonl");
        std::fs::write(&p, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}\n").unwrap();
        assert_eq!(detect_format(&p).unwrap(), RowFormat::Chat);
        let r = rows(&p, RowFormat::Chat).unwrap();
        assert!(matches!(&r[0], ChatRow::Messages(m) if m.len() == 2 && m[1]["content"] == "yo"));
        let q = dir.path().join("pc.jsonl");
        std::fs::write(&q, "{\"prompt\": \"a\", \"completion\": \"b\"}\n{\"prompt\": \"c\"}\n").unwrap();
        assert_eq!(detect_format(&q).unwrap(), RowFormat::PromptCompletion);
        let e = rows(&q, RowFormat::PromptCompletion).unwrap_err().to_string();
        assert!(e.contains("pc.jsonl:2") && e.contains("`completion`"), "{e}");
        std::fs::write(&p, "{\"messages\": [{\"role\": \"user\", \"content\": 3}]}\n").unwrap();
        let e = rows(&p, RowFormat::Chat).unwrap_err().to_string();
        assert!(e.contains(":1") && e.contains("message 1"), "{e}");
        std::fs::write(&p, "{\"text\": \"x\"}\n").unwrap();
        assert_eq!(detect_format(&p).unwrap(), RowFormat::Text);
    }

    #[test]
    fn parquet_messages_and_prompt_completion_columns() {
        let dir = tempfile::tempdir().unwrap();
        let fields = Fields::from(vec![
            Field::new("role", DataType::Utf8, true),
            Field::new("content", DataType::Utf8, true),
        ]);
        let mut lb = ListBuilder::new(StructBuilder::from_fields(fields, 2));
        for (role, content) in [("user", "q"), ("assistant", "a")] {
            let s = lb.values();
            s.field_builder::<StringBuilder>(0).unwrap().append_value(role);
            s.field_builder::<StringBuilder>(1).unwrap().append_value(content);
            s.append(true);
        }
        lb.append(true);
        let p = dir.path().join("m.parquet");
        let batch = RecordBatch::try_from_iter([("messages", Arc::new(lb.finish()) as ArrayRef)]).unwrap();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&p).unwrap(), batch.schema(), None)
                .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        assert_eq!(detect_format(&p).unwrap(), RowFormat::Chat);
        let r = rows(&p, RowFormat::Chat).unwrap();
        assert_eq!(
            r,
            vec![ChatRow::Messages(vec![
                serde_json::json!({"role": "user", "content": "q"}),
                serde_json::json!({"role": "assistant", "content": "a"})
            ])]
        );

        let q = dir.path().join("pc.parquet");
        let batch = RecordBatch::try_from_iter([
            ("prompt", Arc::new(StringArray::from(vec!["p1", "p2"])) as ArrayRef),
            ("completion", Arc::new(StringArray::from(vec!["c1", "c2"])) as ArrayRef),
        ])
        .unwrap();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&q).unwrap(), batch.schema(), None)
                .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let r = rows(&q, RowFormat::PromptCompletion).unwrap();
        assert_eq!(r[1], ChatRow::PromptCompletion { prompt: "p2".into(), completion: "c2".into() });
        let e = rows(&q, RowFormat::Chat).unwrap_err().to_string();
        assert!(e.contains("no `messages` column") && e.contains("prompt, completion"), "{e}");
    }
}
