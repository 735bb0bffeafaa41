//! Training a byte-level BPE tokenizer (GPT-2 / Llama-3 style: byte-level pre-tokenization, no
//! unknown tokens) with the `tokenizers` crate, saved as a `tokenizer.json` plus the
//! `tokenizer_config.json` transformers needs to load it.

use crate::ModelError;
use serde_json::json;
use slmc_formats::fsutil::atomic_write;
use std::path::Path;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::models::{ModelWrapper, TrainerWrapper};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper,
    TokenizerBuilder,
};

/// Beginning-of-sequence token (id 0).
pub const BOS: &str = "<s>";
/// End-of-sequence token (id 1).
pub const EOS: &str = "</s>";
/// Padding token (id 2).
pub const PAD: &str = "<pad>";

/// Trains a tokenizer of `vocab_size` entries (including the 3 special tokens and the 256 byte
/// symbols) on `texts`, and writes `tokenizer.json` and `tokenizer_config.json` into `out_dir`.
/// Encoding with special tokens prepends `<s>`, as Llama tokenizers do.
pub fn train_bpe<I>(texts: I, vocab_size: usize, min_frequency: u64, out_dir: &Path) -> Result<(), ModelError>
where
    I: Iterator<Item = String> + Send,
{
    let fail = |reason: String| ModelError::Tokenizer { path: out_dir.join("tokenizer.json"), reason };
    if vocab_size < 3 + 256 {
        return Err(fail(format!("vocab size {vocab_size} is below the 259 byte and special symbols")));
    }
    let max = slmc_config::hf_config::config_limit("vocab_size");
    if vocab_size > max {
        return Err(fail(format!("vocab size {vocab_size} is larger than slmc supports (at most {max})")));
    }
    let specials = [BOS, EOS, PAD].map(|t| AddedToken::from(t, true));
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(min_frequency)
        .special_tokens(specials.to_vec())
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .show_progress(false)
        .build()
        .into();
    let post = TemplateProcessing::builder()
        .try_single(format!("{BOS} $A"))
        .and_then(|b| b.try_pair(format!("{BOS} $A {BOS} $B")))
        .map_err(|e| fail(e.to_string()))?
        .special_tokens(vec![(BOS, 0u32)])
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let mut tok = TokenizerBuilder::<
        ModelWrapper,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    >::new()
    .with_model(BPE::default().into())
    .with_normalizer(None)
    .with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false).into()))
    .with_post_processor(Some(post.into()))
    .with_decoder(Some(ByteLevelDecoder::default().into()))
    .build()
    .map_err(|e| fail(e.to_string()))?;
    tok.train(&mut trainer, texts).map_err(|e| fail(e.to_string()))?;
    for (i, t) in [BOS, EOS, PAD].iter().enumerate() {
        if tok.token_to_id(t) != Some(i as u32) {
            return Err(fail(format!("special token {t} did not get id {i}")));
        }
    }
    std::fs::create_dir_all(out_dir).map_err(|e| ModelError::Io { path: out_dir.into(), source: e })?;
    let text = tok.to_string(true).map_err(|e| fail(e.to_string()))?;
    atomic_write(&out_dir.join("tokenizer.json"), text.as_bytes())?;
    let config = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS, "eos_token": EOS, "pad_token": PAD,
        "add_bos_token": true, "add_eos_token": false,
        "clean_up_tokenization_spaces": false,
        "model_max_length": 1_000_000,
    });
    atomic_write(
        &out_dir.join("tokenizer_config.json"),
        (serde_json::to_string_pretty(&config).expect("json") + "\n").as_bytes(),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trains_a_round_tripping_tokenizer_with_bos() {
        let dir = tempfile::tempdir().unwrap();
        let text = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer. ";
        train_bpe(std::iter::repeat_n(text.to_string(), 50), 300, 2, dir.path()).unwrap();
        let tok = crate::Tokenizer::from_dir(dir.path(), None).unwrap();
        assert_eq!((tok.bos_id, tok.eos_ids.clone(), tok.pad_id), (Some(0), vec![1], Some(2)));
        assert_eq!(tok.vocab_size(), 300);
        let ids = tok.encode("to be or not, café", true).unwrap();
        assert_eq!(ids[0], 0);
        assert_eq!(tok.decode(&ids, true).unwrap(), "to be or not, café");
        // Merges were learnt: a frequent word (with its leading space) is one token, not 4 bytes.
        assert_eq!(tok.encode(" the", false).unwrap().len(), 1);
    }
}
