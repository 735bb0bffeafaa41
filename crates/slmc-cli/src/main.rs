//! `slmc`: compress small language models: distillation, pruning, quantization and LoRA
//! fine-tuning, driven by TOML recipes; exports GGUF and Hugging Face safetensors.
//!
//! This crate only parses arguments, picks the backend, draws progress and prints; the work is
//! done by the library crates.

// The one crate that prints: commands write their results to stdout, errors and progress to stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod backend;
mod commands;
mod progress;

use clap::{Parser, Subcommand};
use slmc_recipe::Kind;
use std::process::ExitCode;

/// Exit code for a user, recipe or input error.
const EXIT_USER: u8 = 1;
/// Exit code for an internal error (a bug in slmc).
const EXIT_INTERNAL: u8 = 2;

#[derive(Parser)]
#[command(
    name = "slmc",
    version,
    about = "Compress small language models: distill, prune, quantize, fine-tune; export GGUF and safetensors",
    long_about = "slmc compresses small language models with one binary and no Python.\n\n\
        Models are Hugging Face directories (config.json + *.safetensors + tokenizer.json) of the \
        llama, mistral, qwen2, phi3, gemma, gemma2, gemma3 (text), granite, phi (Phi-2), qwen3 and \
        smollm3 families. Computation runs on the CPU by default (the pure-Rust \
        flex backend); builds with `--features cuda` or `--features tch` add GPU backends.",
    after_help = "Examples:\n  \
        slmc inspect tests/fixtures/models/llama_gqa\n  \
        slmc eval tests/fixtures/models/llama_gqa --data tests/fixtures/eval.txt --ctx 32 --stride 16\n  \
        slmc generate tests/fixtures/models/llama_gqa --prompt \"Once upon\" --max-new-tokens 20\n  \
        slmc export tests/fixtures/models/llama_gqa --format safetensors --dtype bfloat16 -o out/llama\n  \
        slmc export tests/fixtures/models/llama_gqa --format gguf --type q8_0 -o out/llama.gguf\n  \
        slmc run recipes/quickstart.toml\n  \
        slmc quantize recipes/gptq-4bit.toml --set model.path=path/to/hf-model\n  \
        slmc prune recipes/sparse-2of4.toml"
)]
struct Cli {
    /// Compute backend: flex (CPU, always available), cuda or tch (when built with those features).
    #[arg(long, global = true, default_value = "flex", env = "SLMC_DEVICE")]
    device: String,
    /// CPU threads for the flex backend (default: all cores).
    #[arg(long, global = true, env = "SLMC_THREADS")]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show a model directory's (or GGUF file's) architecture, parameters, dtypes, size, vocabulary and context.
    Inspect(commands::inspect::Args),
    /// Perplexity of a model on a .txt, .jsonl or .parquet file (sliding window).
    Eval(commands::eval::Args),
    /// Generate text from a prompt (greedy by default; --temperature/--top-p to sample).
    Generate(commands::generate::Args),
    /// Write a model as a Hugging Face safetensors directory or a GGUF file for llama.cpp.
    Export(commands::export::Args),
    /// Measure throughput on a fixed model configuration.
    #[command(subcommand)]
    Bench(commands::bench::Bench),
    /// Validate a recipe and print its plan (stages, tensors, memory, export sizes) without running.
    Check(commands::check::Args),
    /// Run every stage of a recipe (resumes an interrupted run).
    Run(commands::run::Args),
    /// Run only the finetune stages of a recipe.
    Finetune(commands::run::Args),
    /// Run only the distill stages of a recipe (teacher → student knowledge distillation).
    Distill(commands::run::Args),
    /// Run only the quantize stages of a recipe (RTN or GPTQ, block by block; resumes from the last finished block).
    Quantize(commands::run::Args),
    /// Run only the prune stages of a recipe (magnitude, Wanda, SparseGPT, 2:4; or width/depth pruning to a smaller model).
    Prune(commands::run::Args),
    /// Render a run directory's report.html again (curves, per-module errors, evaluations, artifact sizes, gates).
    Report(commands::report::Args),
    /// Tokenizer utilities.
    #[command(subcommand)]
    Tokenizer(commands::tokenizer::TokenizerCmd),
}

fn main() -> ExitCode {
    // Like other command-line tools, end quietly when the reader of stdout goes away
    // (`slmc inspect DIR | head`) instead of panicking on a failed write.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    slmc_model::kernels::tune_allocator();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage(&e),
    };
    let result = std::panic::catch_unwind(|| run(cli));
    match result {
        Ok(Ok(true)) => ExitCode::SUCCESS,
        Ok(Ok(false)) => ExitCode::from(commands::run::EXIT_GATE),
        Ok(Err(e)) => {
            let mut said = e.to_string();
            eprintln!("error: {said}");
            // Causes the message already quotes (an I/O error inside "path: reason") are not
            // repeated.
            for cause in e.chain().skip(1).map(|c| c.to_string()) {
                if !said.contains(&cause) {
                    eprintln!("  caused by: {cause}");
                    said.push_str(&cause);
                }
            }
            ExitCode::from(EXIT_USER)
        }
        Err(_) => {
            eprintln!(
                "error: internal error (this is a bug in slmc; please report it with the command line above)"
            );
            ExitCode::from(EXIT_INTERNAL)
        }
    }
}

/// Prints clap's message: `--help` and `--version` to stdout with exit code 0, a usage error
/// (unknown flag, missing value) to stderr with the user-error code 1 (clap's own is 2, which slmc
/// reserves for internal errors).
fn usage(e: &clap::Error) -> ExitCode {
    // Nothing useful can be done when the terminal is gone.
    let _ = e.print();
    if e.use_stderr() { ExitCode::from(EXIT_USER) } else { ExitCode::SUCCESS }
}

/// Runs the command; `Ok(false)` means it ran but a recipe gate failed.
fn run(cli: Cli) -> anyhow::Result<bool> {
    backend::configure_threads(cli.threads)?;
    if let Command::Check(a) = cli.command {
        // Planning needs only the device's name, not a build with its backend.
        return commands::check::run(a, &cli.device).map(|_| true);
    }
    let device = backend::device(&cli.device)?;
    match cli.command {
        Command::Inspect(a) => commands::inspect::run(a).map(|_| true),
        Command::Eval(a) => commands::eval::run(a, &device).map(|_| true),
        Command::Generate(a) => commands::generate::run(a, &device).map(|_| true),
        Command::Export(a) => commands::export::run(a, &device).map(|_| true),
        Command::Bench(b) => commands::bench::run(b, &device).map(|_| true),
        Command::Check(_) => unreachable!("handled above"),
        Command::Run(a) => commands::run::run(a, &device, &cli.device, None),
        Command::Finetune(a) => commands::run::run(a, &device, &cli.device, Some(Kind::Finetune)),
        Command::Distill(a) => commands::run::run(a, &device, &cli.device, Some(Kind::Distill)),
        Command::Quantize(a) => commands::run::run(a, &device, &cli.device, Some(Kind::Quantize)),
        Command::Prune(a) => commands::run::run(a, &device, &cli.device, Some(Kind::Prune)),
        Command::Report(a) => commands::report::run(a).map(|_| true),
        Command::Tokenizer(t) => commands::tokenizer::run(t).map(|_| true),
    }
}
