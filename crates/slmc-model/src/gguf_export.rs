//! GGUF export of a [`CausalLm`]: gathers the weights (Hugging Face names and layout), the
//! tokenizer metadata of a Hugging Face directory, and any pre-encoded quantization records, and
//! hands them to [`slmc_gguf::export_gguf`].
//!
//! The tokenizer part lives here rather than in `slmc-formats` because choosing
//! `tokenizer.ggml.pre` the converter's way needs the real tokenizer (the `tokenizers` crate)
//! to encode the check text.

use crate::ModelError;
use crate::config::ModelConfig;
use crate::model::CausalLm;
use crate::weights;
use serde_json::Value;
use slmc_gguf::export::{ExportReport, ExportTensor, GgufContents, TensorData};
use slmc_gguf::ggml::GgmlType;
use slmc_gguf::pre_table::CHKTXT;
use slmc_gguf::vocab::{GgufVocab, VocabSources, chktxt_hash};
use slmc_gguf::{FileType, export_gguf};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A tensor already encoded in a ggml type (for instance GPTQ codes packed as Q4_0 blocks by a
/// quantize stage), written to the GGUF file byte for byte instead of being quantized again.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedTensor {
    /// The ggml type of `bytes`.
    pub ggml_type: GgmlType,
    /// Rows in Hugging Face order (`[out, in]`), each row a whole number of blocks.
    pub bytes: Vec<u8>,
}

/// What to write.
#[derive(Debug, Clone)]
pub struct GgufOptions {
    /// Export type (`q4_k_m`, `f16`, …): decides each dense tensor's ggml type.
    pub file_type: FileType,
    /// Directory with `tokenizer.json` (and optionally `tokenizer_config.json`, `tokenizer.model`,
    /// `chat_template.jinja`, `added_tokens.json`).
    pub tokenizer_dir: PathBuf,
    /// `general.name`.
    pub name: Option<String>,
    /// Pre-encoded tensors by Hugging Face name; they replace the model's dense values.
    pub encoded: HashMap<String, EncodedTensor>,
}

fn read_json(path: &Path) -> Result<Option<Value>, ModelError> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::Io { path: path.into(), source: e })?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| ModelError::Tokenizer { path: path.into(), reason: format!("invalid JSON: {e}") })
}

/// Builds the GGUF tokenizer metadata of the Hugging Face tokenizer in `dir` for a model with
/// `config.vocab_size` embedding rows.
pub fn gguf_vocab(dir: &Path, config: &ModelConfig) -> Result<GgufVocab, ModelError> {
    let tok_path = dir.join("tokenizer.json");
    let tokenizer_json = read_json(&tok_path)?.ok_or_else(|| ModelError::Tokenizer {
        path: tok_path.clone(),
        reason: "GGUF export needs the model's tokenizer.json (llama.cpp stores the vocabulary in the file)"
            .into(),
    })?;
    let tokenizer_config = read_json(&dir.join("tokenizer_config.json"))?;
    let added_tokens_json = read_json(&dir.join("added_tokens.json"))?;
    let read_opt = |name: &str| -> Result<Option<Vec<u8>>, ModelError> {
        let p = dir.join(name);
        if !p.is_file() {
            return Ok(None);
        }
        std::fs::read(&p).map(Some).map_err(|e| ModelError::Io { path: p, source: e })
    };
    let spm_model = read_opt("tokenizer.model")?;
    let jinja = read_opt("chat_template.jinja")?.map(|b| String::from_utf8_lossy(&b).into_owned());
    let tokenizer = tokenizers::Tokenizer::from_file(&tok_path)
        .map_err(|e| ModelError::Tokenizer { path: tok_path.clone(), reason: e.to_string() })?;
    let ids = tokenizer
        .encode(CHKTXT, true)
        .map_err(|e| ModelError::Tokenizer { path: tok_path.clone(), reason: e.to_string() })?;
    let hash = chktxt_hash(ids.get_ids());
    let config_json = Value::Object(config.raw.clone());
    let sources = VocabSources {
        dir,
        tokenizer_json: &tokenizer_json,
        tokenizer_config: tokenizer_config.as_ref(),
        config_json: Some(&config_json),
        chat_template_jinja: jinja.as_deref(),
        spm_model: spm_model.as_deref(),
        added_tokens_json: added_tokens_json.as_ref(),
        n_vocab: config.vocab_size,
        chktxt_hash: Some(&hash),
    };
    Ok(GgufVocab::from_sources(&sources)?)
}

/// Writes `model` as a GGUF file llama.cpp loads (atomically). Returns what was written.
pub fn export_model_gguf(
    model: &CausalLm,
    opts: &GgufOptions,
    out: &Path,
) -> Result<ExportReport, ModelError> {
    let vocab = gguf_vocab(&opts.tokenizer_dir, &model.config)?;
    let mut encoded = opts.encoded.clone();
    let tensors: Vec<ExportTensor> = weights::export(model)
        .into_iter()
        .map(|t| {
            let data = match encoded.remove(&t.name) {
                Some(e) => TensorData::Encoded { ggml_type: e.ggml_type, bytes: e.bytes },
                None => TensorData::Dense(t.values),
            };
            ExportTensor { name: t.name, shape: t.shape, data }
        })
        .collect();
    if let Some(name) = encoded.keys().next() {
        return Err(ModelError::Input(format!("encoded tensor `{name}` is not a parameter of the model")));
    }
    let req = GgufContents {
        config: &model.config,
        tensors,
        vocab: &vocab,
        file_type: opts.file_type,
        name: opts.name.clone(),
    };
    Ok(export_gguf(req, out)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HfModel;
    use burn::prelude::Device;
    use slmc_gguf::GgufReader;
    use slmc_gguf::ggml::{self, BlockQ8_0};

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
    }

    #[test]
    fn chktxt_hash_matches_transformers() {
        // tests/fixtures/gguf/tokenizer_hash.json: AutoTokenizer's ids for the converter's check
        // text and their sha256, computed by scripts/make_gguf_fixtures.py.
        let r: Value = serde_json::from_str(
            &std::fs::read_to_string(fixtures().join("gguf/tokenizer_hash.json")).unwrap(),
        )
        .unwrap();
        let tok = tokenizers::Tokenizer::from_file(fixtures().join("tokenizer/tokenizer.json")).unwrap();
        let ids = tok.encode(CHKTXT, true).unwrap().get_ids().to_vec();
        let want: Vec<u32> =
            r["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!(ids, want);
        assert_eq!(chktxt_hash(&ids), r["sha256"].as_str().unwrap());
    }

    #[test]
    fn encoded_records_are_written_as_is_and_permuted_by_whole_rows() {
        let dir = fixtures().join("models/llama_gqa");
        let hf = HfModel::load(&dir, &Device::flex()).unwrap();
        let w = weights::export(&hf.model);
        let q = w.iter().find(|t| t.name == "model.layers.0.self_attn.q_proj.weight").unwrap();
        let v = w.iter().find(|t| t.name == "model.layers.1.self_attn.v_proj.weight").unwrap();
        // Codes "chosen elsewhere": every row of q gets its own recognisable Q8_0 block pattern.
        let rows = q.shape[0];
        let mut q_bytes = Vec::new();
        for r in 0..rows {
            for b in 0..q.shape[1] / 32 {
                let codes: [i8; 32] = std::array::from_fn(|j| ((r * 7 + b * 3 + j) % 200) as i8 - 100);
                let mut out = [0u8; 34];
                slmc_gguf::ggml::Block::write(&BlockQ8_0::from_codes(0.01 * (r + 1) as f32, codes), &mut out);
                q_bytes.extend_from_slice(&out);
            }
        }
        let v_bytes = ggml::quantize(GgmlType::Q4_0, &v.values).unwrap();
        let mut encoded = HashMap::new();
        encoded.insert(q.name.clone(), EncodedTensor { ggml_type: GgmlType::Q8_0, bytes: q_bytes.clone() });
        encoded.insert(v.name.clone(), EncodedTensor { ggml_type: GgmlType::Q4_0, bytes: v_bytes.clone() });
        let opts = GgufOptions { file_type: FileType::F16, tokenizer_dir: dir.clone(), name: None, encoded };
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("m.gguf");
        let report = export_model_gguf(&hf.model, &opts, &out).unwrap();
        assert!(report.tensors.iter().any(|t| t.name == "blk.0.attn_q.weight" && t.pre_encoded));
        let r = GgufReader::open(&out).unwrap();
        // v is not permuted: byte-identical.
        let (t, got_v) = r.tensor_bytes("blk.1.attn_v.weight").unwrap();
        assert_eq!(t.info.ggml_type, GgmlType::Q4_0);
        assert_eq!(got_v, &v_bytes[..]);
        // q: GGUF row r holds the record's row permuted_source_row(r).
        let (t, got_q) = r.tensor_bytes("blk.0.attn_q.weight").unwrap();
        assert_eq!(t.info.ggml_type, GgmlType::Q8_0);
        let row_bytes = q_bytes.len() / rows;
        for row in 0..rows {
            let src = slmc_gguf::export::names::permuted_source_row(row, rows, 4);
            assert_eq!(
                &got_q[row * row_bytes..(row + 1) * row_bytes],
                &q_bytes[src * row_bytes..(src + 1) * row_bytes]
            );
        }
        // Everything else followed --type f16.
        assert_eq!(r.file().tensor("blk.0.attn_k.weight").unwrap().info.ggml_type, GgmlType::F16);
    }

    #[test]
    fn bad_records_are_refused() {
        let dir = fixtures().join("models/llama_gqa");
        let hf = HfModel::load(&dir, &Device::flex()).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("m.gguf");
        let try_with = |name: &str, e: EncodedTensor| {
            let mut encoded = HashMap::new();
            encoded.insert(name.to_string(), e);
            let opts =
                GgufOptions { file_type: FileType::Q8_0, tokenizer_dir: dir.clone(), name: None, encoded };
            export_model_gguf(&hf.model, &opts, &out).unwrap_err().to_string()
        };
        let e = try_with(
            "model.layers.0.self_attn.v_proj.weight",
            EncodedTensor { ggml_type: GgmlType::Q8_0, bytes: vec![0; 10] },
        );
        assert!(e.contains("has 10 bytes"), "{e}");
        let e =
            try_with("model.norm.weight", EncodedTensor { ggml_type: GgmlType::Q8_0, bytes: vec![0; 68] });
        assert!(e.contains("needs it in F32"), "{e}");
        let e = try_with("model.nope", EncodedTensor { ggml_type: GgmlType::Q8_0, bytes: vec![] });
        assert!(e.contains("not a parameter"), "{e}");
        assert!(!out.exists());
    }
}
