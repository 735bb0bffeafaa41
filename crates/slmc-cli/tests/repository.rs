//! The repository stands on its own: no comment, script or document points at a file outside it
//! (the specifications the code was written from are cited through `docs/` or the papers).

mod common;

use common::root;
use std::path::{Path, PathBuf};

/// Names of documents that live outside the repository unless `docs/` holds one of that name.
const OUTSIDE: [&str; 7] = [
    "algorithms.md",
    "architectures.md",
    "formats.md",
    "pruning-lora-references.md",
    "gguf-import.md",
    "design.md",
    "burn-0.22-notes.md",
];

/// Every tracked-looking text file below `dir` (sources, scripts, documents, recipes).
fn text_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" && name != "corpus" && name != "runs" {
                text_files(&path, out);
            }
        } else if ["rs", "py", "sh", "md", "toml"].iter().any(|e| name.ends_with(&format!(".{e}"))) {
            out.push(path);
        }
    }
}

#[test]
fn nothing_points_at_a_file_outside_the_repository() {
    let root = root();
    let mut files = vec![root.join("README.md")];
    for dir in ["crates", "scripts", "docs", "recipes", "tests", "fuzz", ".ci"] {
        text_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 200, "only {} files found", files.len());
    let mut problems = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            // This test names them itself.
            if file.ends_with("tests/repository.rs") {
                continue;
            }
            if line.contains("/work/shared") || line.contains("../shared/") {
                problems.push(format!("{}:{}: {line}", file.display(), n + 1));
            }
            for name in OUTSIDE {
                for (at, _) in line.match_indices(name) {
                    let before = &line[..at];
                    let longer_name = before.ends_with(|c: char| c.is_alphanumeric() || c == '-' || c == '_');
                    // The path the mention spells (`docs/formats.md`, `../algorithms.md`), resolved
                    // against the mentioning file's directory or the repository root.
                    let start = before.rfind([' ', '(', '[', '`', '\'', '"']).map_or(0, |i| i + 1);
                    let spelled = format!("{}{name}", &before[start..]);
                    let dir = file.parent().unwrap_or(&root);
                    let in_repo = [dir.join(&spelled), root.join(&spelled)]
                        .iter()
                        .any(|p| p.is_file() && p.canonicalize().is_ok_and(|c| c.starts_with(&root)));
                    if !in_repo && !longer_name {
                        problems.push(format!("{}:{}: {line}", file.display(), n + 1));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "references to files outside the repository:\n{}", problems.join("\n"));
}
