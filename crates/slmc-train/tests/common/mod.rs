//! What the training tests share: a small packed token set.

#![allow(dead_code)] // each test binary uses a part of it

use slmc_data::{Packed, Sequences, SourceOptions, TokenFile, build_token_file};
use std::path::Path;

/// Twelve 40-token rows of ids 2..47 in `dir`, packed into sequences of 16 tokens.
pub fn packed_rows(dir: &Path) -> Sequences {
    let src = dir.join("d.jsonl");
    let rows: String = (0..12)
        .map(|r| {
            format!(
                "{{\"input_ids\": {:?}}}\n",
                (0..40).map(|i| (r * 5 + i * 3) % 45 + 2).collect::<Vec<u32>>()
            )
        })
        .collect();
    std::fs::write(&src, rows).unwrap();
    let out = dir.join("t.tokens");
    build_token_file(&[(src, SourceOptions::default())], &out, 1, &mut |_| Ok(vec![]), &mut |_, _| {})
        .unwrap();
    Sequences::Packed(Packed::new(TokenFile::open(&out).unwrap(), 16).unwrap())
}
