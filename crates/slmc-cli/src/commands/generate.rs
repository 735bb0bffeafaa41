//! `slmc generate DIR --prompt TEXT [--chat]`.

use anyhow::Context;
use burn::prelude::Device;
use slmc_model::HfModel;
use slmc_model::generate::{GenerateOptions, generate};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `slmc generate`.
#[derive(clap::Args)]
pub struct Args {
    /// A Hugging Face model directory.
    pub model: PathBuf,
    /// The prompt (encoded with the tokenizer's special tokens, e.g. BOS).
    #[arg(long)]
    pub prompt: String,
    /// Send the prompt as one user message, rendered with the model's chat template
    /// (`chat_template` of tokenizer_config.json) and the assistant turn opened.
    #[arg(long)]
    pub chat: bool,
    /// Tokens to generate at most.
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// Sampling temperature (a finite number ≥ 0); 0 = greedy.
    #[arg(long, default_value_t = 0.0, value_parser = parse_temperature)]
    pub temperature: f32,
    /// Nucleus sampling threshold, in (0, 1] (with --temperature > 0).
    #[arg(long, default_value_t = 1.0, value_parser = parse_top_p)]
    pub top_p: f32,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Keep generating past end-of-sequence tokens.
    #[arg(long)]
    pub ignore_eos: bool,
}

fn parse_temperature(s: &str) -> Result<f32, String> {
    let t: f32 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if !t.is_finite() || t < 0.0 {
        return Err(format!("the temperature must be a finite number ≥ 0, got {s}"));
    }
    Ok(t)
}

fn parse_top_p(s: &str) -> Result<f32, String> {
    let p: f32 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if !(p > 0.0 && p <= 1.0) {
        return Err(format!("top-p must be in (0, 1], got {s}"));
    }
    Ok(p)
}

/// Runs the command.
pub fn run(a: Args, device: &Device) -> anyhow::Result<()> {
    let hf = HfModel::load(&a.model, device)?;
    let tok =
        hf.tokenizer.as_ref().with_context(|| format!("{} has no tokenizer.json", a.model.display()))?;
    let prompt = if a.chat {
        let template = slmc_data::ChatTemplate::from_dir(&a.model)?.with_context(|| {
            format!(
                "{} has no chat template (no `chat_template` in tokenizer_config.json, no chat_template.jinja); drop --chat",
                a.model.display()
            )
        })?;
        let message = serde_json::json!({"role": "user", "content": a.prompt});
        let text = template.render(&[message], true).map_err(|e| anyhow::anyhow!("chat template: {e}"))?;
        // As transformers' apply_chat_template: the template places the special tokens.
        tok.encode(&text, false)?
    } else {
        tok.encode(&a.prompt, true)?
    };
    let options = GenerateOptions {
        max_new_tokens: a.max_new_tokens,
        temperature: a.temperature,
        top_p: a.top_p,
        seed: a.seed,
        stop_ids: if a.ignore_eos { vec![] } else { tok.eos_ids.clone() },
    };
    if !a.chat {
        print!("{}", a.prompt);
    }
    std::io::stdout().flush()?;
    let start = Instant::now();
    let mut so_far: Vec<u32> = Vec::new();
    let mut printed = 0usize;
    let out = generate(&hf.model, &prompt, &options, &mut |t| {
        // Decode the whole continuation each time so multi-token characters print correctly.
        so_far.push(t);
        if let Ok(text) = tok.decode(&so_far, true)
            && text.len() > printed
            && text.is_char_boundary(printed)
        {
            print!("{}", &text[printed..]);
            let _ = std::io::stdout().flush();
            printed = text.len();
        }
    })?;
    println!();
    let secs = start.elapsed().as_secs_f64();
    eprintln!("{} tokens in {:.2}s ({:.1} tok/s)", out.len(), secs, out.len() as f64 / secs);
    Ok(())
}
