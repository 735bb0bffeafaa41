//! Reading records from txt, jsonl and parquet files.

use crate::DataError;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, UInt32Type};
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::io::BufRead;
use std::path::Path;

/// One unit of data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Text to be tokenized.
    Text(String),
    /// Token ids to be used exactly as given.
    Tokens(Vec<u32>),
}

/// Which fields (jsonl) or columns (parquet) hold the data.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// Field/column of text.
    pub text_field: String,
    /// Field/column of pre-tokenized ids; preferred over text when present.
    pub ids_field: String,
}

impl Default for SourceOptions {
    fn default() -> Self {
        Self { text_field: "text".into(), ids_field: "input_ids".into() }
    }
}

/// Streams every record of `path` to `f`, in file order. A `.txt` file is one text record.
/// Returns the number of records.
pub fn for_each_record(
    path: &Path,
    options: &SourceOptions,
    f: &mut dyn FnMut(Record) -> Result<(), DataError>,
) -> Result<usize, DataError> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let n = match ext.as_str() {
        "txt" | "text" | "md" => {
            let text =
                std::fs::read_to_string(path).map_err(|e| DataError::Io { path: path.into(), source: e })?;
            if text.is_empty() {
                0
            } else {
                f(Record::Text(text))?;
                1
            }
        }
        "jsonl" | "json" | "ndjson" => read_jsonl(path, options, f)?,
        "parquet" => read_parquet(path, options, f)?,
        _ => return Err(DataError::UnsupportedType { path: path.into() }),
    };
    if n == 0 {
        return Err(DataError::Empty { path: path.into() });
    }
    Ok(n)
}

/// Reads every record of `path` into memory.
pub fn read_records(path: &Path, options: &SourceOptions) -> Result<Vec<Record>, DataError> {
    let mut out = Vec::new();
    for_each_record(path, options, &mut |r| {
        out.push(r);
        Ok(())
    })?;
    Ok(out)
}

/// Calls `f(line number, value)` for every non-blank line of a JSON-lines file (1-based line
/// numbers, for errors); returns the number of rows.
pub(crate) fn for_each_json_line(
    path: &Path,
    f: &mut dyn FnMut(usize, serde_json::Value) -> Result<(), DataError>,
) -> Result<usize, DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::Io { path: path.into(), source: e })?;
    let mut n = 0;
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| DataError::Io { path: path.into(), source: e })?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| DataError::Invalid {
            path: path.into(),
            line: Some(i + 1),
            reason: format!("invalid JSON: {e}"),
        })?;
        f(i + 1, v)?;
        n += 1;
    }
    Ok(n)
}

fn read_jsonl(
    path: &Path,
    options: &SourceOptions,
    f: &mut dyn FnMut(Record) -> Result<(), DataError>,
) -> Result<usize, DataError> {
    let invalid =
        |line: usize, reason: String| DataError::Invalid { path: path.into(), line: Some(line), reason };
    for_each_json_line(path, &mut |line, v| {
        let record = if let Some(ids) = v.get(&options.ids_field) {
            let arr = ids.as_array().ok_or_else(|| {
                invalid(line, format!("`{}` must be a list of token ids", options.ids_field))
            })?;
            let ids = arr
                .iter()
                .map(|x| x.as_u64().filter(|&x| x <= u32::MAX as u64).map(|x| x as u32))
                .collect::<Option<Vec<u32>>>()
                .ok_or_else(|| {
                    invalid(line, format!("`{}` must hold non-negative integers", options.ids_field))
                })?;
            Record::Tokens(ids)
        } else if let Some(t) = v.get(&options.text_field) {
            Record::Text(
                t.as_str()
                    .ok_or_else(|| invalid(line, format!("`{}` must be a string", options.text_field)))?
                    .to_string(),
            )
        } else {
            return Err(invalid(
                line,
                format!("row has neither a `{}` nor an `{}` field", options.text_field, options.ids_field),
            ));
        };
        f(record)
    })
}

fn read_parquet(
    path: &Path,
    options: &SourceOptions,
    f: &mut dyn FnMut(Record) -> Result<(), DataError>,
) -> Result<usize, DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::Io { path: path.into(), source: e })?;
    let invalid =
        |line: Option<usize>, reason: String| DataError::Invalid { path: path.into(), line, reason };
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| invalid(None, format!("not a readable parquet file: {e}")))?;
    let schema = builder.schema().clone();
    let (column, want_ids) = if schema.field_with_name(&options.ids_field).is_ok() {
        (options.ids_field.clone(), true)
    } else if schema.field_with_name(&options.text_field).is_ok() {
        (options.text_field.clone(), false)
    } else {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        return Err(invalid(
            None,
            format!(
                "no `{}` or `{}` column; the file has: {}",
                options.text_field,
                options.ids_field,
                names.join(", ")
            ),
        ));
    };
    let idx = schema.index_of(&column).expect("checked above");
    let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), [idx]);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(1024)
        .build()
        .map_err(|e| invalid(None, e.to_string()))?;
    let mut n = 0;
    for batch in reader {
        let batch = batch.map_err(|e| invalid(Some(n + 1), e.to_string()))?;
        let col = batch.column(0);
        for r in 0..col.len() {
            let row = n + 1;
            if col.is_null(r) {
                return Err(invalid(Some(row), format!("`{column}` is null")));
            }
            let record = if want_ids {
                Record::Tokens(ids_at(col, r).map_err(|e| invalid(Some(row), e))?)
            } else {
                Record::Text(text_at(col, r).map_err(|e| invalid(Some(row), e))?)
            };
            f(record)?;
            n += 1;
        }
    }
    Ok(n)
}

fn text_at(col: &ArrayRef, r: usize) -> Result<String, String> {
    match col.data_type() {
        DataType::Utf8 => Ok(col.as_string::<i32>().value(r).to_string()),
        DataType::LargeUtf8 => Ok(col.as_string::<i64>().value(r).to_string()),
        DataType::Utf8View => Ok(col.as_string_view().value(r).to_string()),
        other => Err(format!("text column has type {other}; expected a string column")),
    }
}

fn ids_at(col: &ArrayRef, r: usize) -> Result<Vec<u32>, String> {
    let values = match col.data_type() {
        DataType::List(_) => col.as_list::<i32>().value(r),
        DataType::LargeList(_) => col.as_list::<i64>().value(r),
        other => {
            return Err(format!("input_ids column has type {other}; expected a list of integers"));
        }
    };
    let neg = || "token ids must be non-negative".to_string();
    match values.data_type() {
        DataType::Int64 => values
            .as_primitive::<Int64Type>()
            .values()
            .iter()
            .map(|&v| u32::try_from(v).map_err(|_| neg()))
            .collect(),
        DataType::Int32 => values
            .as_primitive::<Int32Type>()
            .values()
            .iter()
            .map(|&v| u32::try_from(v).map_err(|_| neg()))
            .collect(),
        DataType::UInt32 => Ok(values.as_primitive::<UInt32Type>().values().to_vec()),
        other => Err(format!("input_ids elements have type {other}; expected int32, int64 or uint32")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::builder::{Int64Builder, ListBuilder};
    use arrow_array::{RecordBatch, StringArray};
    use std::sync::Arc;

    fn write_parquet(path: &Path, batch: RecordBatch) {
        let file = std::fs::File::create(path).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    #[test]
    fn jsonl_prefers_ids_and_reports_line_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.jsonl");
        std::fs::write(&p, "{\"text\":\"hello\"}\n\n{\"input_ids\":[1,2,3],\"text\":\"x\"}\n").unwrap();
        let r = read_records(&p, &SourceOptions::default()).unwrap();
        assert_eq!(r, vec![Record::Text("hello".into()), Record::Tokens(vec![1, 2, 3])]);
        std::fs::write(&p, "{\"text\":\"ok\"}\n{\"txt\":\"typo\"}\n").unwrap();
        let e = read_records(&p, &SourceOptions::default()).unwrap_err().to_string();
        assert!(e.contains("d.jsonl:2") && e.contains("neither"), "{e}");
    }

    #[test]
    fn parquet_text_and_list_columns() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.parquet");
        let text = StringArray::from(vec!["a b", "c"]);
        write_parquet(&p, RecordBatch::try_from_iter([("text", Arc::new(text) as ArrayRef)]).unwrap());
        assert_eq!(read_records(&p, &SourceOptions::default()).unwrap()[1], Record::Text("c".into()));

        let mut lb = ListBuilder::new(Int64Builder::new());
        lb.values().append_slice(&[5, 6]);
        lb.append(true);
        lb.values().append_slice(&[7]);
        lb.append(true);
        let p2 = dir.path().join("ids.parquet");
        write_parquet(
            &p2,
            RecordBatch::try_from_iter([("input_ids", Arc::new(lb.finish()) as ArrayRef)]).unwrap(),
        );
        assert_eq!(
            read_records(&p2, &SourceOptions::default()).unwrap(),
            vec![Record::Tokens(vec![5, 6]), Record::Tokens(vec![7])]
        );

        let e = read_records(&p, &SourceOptions { text_field: "body".into(), ..Default::default() })
            .unwrap_err()
            .to_string();
        assert!(e.contains("no `body`") && e.contains("the file has: text"), "{e}");
    }

    #[test]
    fn empty_and_unknown_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.txt");
        std::fs::write(&p, "").unwrap();
        assert!(matches!(read_records(&p, &SourceOptions::default()), Err(DataError::Empty { .. })));
        let q = dir.path().join("x.csv");
        std::fs::write(&q, "a").unwrap();
        assert!(matches!(
            read_records(&q, &SourceOptions::default()),
            Err(DataError::UnsupportedType { .. })
        ));
    }
}
