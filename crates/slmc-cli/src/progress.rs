//! Progress bars (drawn on stderr, hidden when it is not a terminal).

use indicatif::{ProgressBar, ProgressStyle};

/// A bar counting `unit`s with rate and ETA.
pub fn bar(total: u64, message: &str, unit: &str) -> ProgressBar {
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(&format!(
            "{{msg}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit} {{per_sec}} ETA {{eta}}"
        ))
        .expect("static template")
        .progress_chars("=> "),
    );
    pb.set_message(message.to_string());
    pb
}

/// Draws pipeline events: a bar per training stage (loss, lr, tokens/s, ETA), lines for
/// evaluations, stage results and artifacts.
#[derive(Default)]
pub struct RunProgress {
    bar: Option<ProgressBar>,
}

impl RunProgress {
    fn println(&self, line: String) {
        match &self.bar {
            // A hidden bar (stderr is not a terminal: CI logs, pipes) would swallow the line.
            Some(b) if !b.is_hidden() => b.println(line),
            _ => eprintln!("{line}"),
        }
    }

    fn replace_bar(&mut self, bar: Option<ProgressBar>) {
        if let Some(old) = self.bar.take() {
            old.finish_and_clear();
        }
        self.bar = bar;
    }

    /// Handles one event.
    pub fn event(&mut self, e: &slmc_pipeline::Event) {
        use slmc_pipeline::Event as E;
        match e {
            E::Info(s) => self.println(s.clone()),
            E::StageStart { index, kind, steps } => {
                self.replace_bar(None);
                eprintln!("stage {index}: {kind}");
                if let Some(n) = steps {
                    self.replace_bar(Some(bar(*n as u64, kind.name(), "steps")));
                }
            }
            E::StageSkipped { index, kind } => {
                self.println(format!("stage {index}: {kind} already done (resumed)"))
            }
            E::Tokenizing { split, docs, tokens } => {
                if self.bar.is_none() {
                    let pb = ProgressBar::new_spinner();
                    self.bar = Some(pb);
                }
                if let Some(b) = &self.bar {
                    b.set_message(format!("tokenizing {split}: {docs} documents, {tokens} tokens"));
                    b.tick();
                }
            }
            E::Train(t) => match t {
                slmc_train::Event::Resumed { step } => {
                    self.println(format!("resuming from the checkpoint at step {step}"))
                }
                slmc_train::Event::Step { step, loss, lr, grad_norm, tokens_per_s, .. } => {
                    if let Some(b) = &self.bar {
                        b.set_position(*step as u64);
                        b.set_message(format!(
                            "loss {loss:.4} lr {lr:.2e} |g| {grad_norm:.2} {tokens_per_s:.0} tok/s"
                        ));
                    }
                }
                slmc_train::Event::Eval { step, loss } => {
                    self.println(format!("  step {step}: val loss {loss:.4}, val ppl {:.3}", loss.exp()))
                }
                slmc_train::Event::Checkpoint { .. } => {}
                slmc_train::Event::CheckpointRejected { path, reason } => self.println(format!(
                    "warning: checkpoint {} is damaged ({reason}); passed over for the one before it",
                    path.display()
                )),
            },
            E::Evaluating { done, total } => {
                if self.bar.as_ref().is_none_or(|b| b.length() != Some(*total as u64)) {
                    self.replace_bar(Some(bar(*total as u64, "eval", "tok")));
                }
                if let Some(b) = &self.bar {
                    b.set_position(*done as u64);
                }
            }
            E::StageDone { summary, .. } => {
                self.replace_bar(None);
                eprintln!("{summary}");
            }
            E::Artifact(p) => self.println(format!("wrote {p}")),
            E::CalibBlock { kind, index, total } => {
                if self.bar.as_ref().is_none_or(|b| b.length() != Some(*total as u64)) {
                    self.replace_bar(Some(bar(*total as u64, kind.name(), "blocks")));
                }
                if let Some(b) = &self.bar {
                    b.set_position(*index as u64);
                    b.set_message(format!("{kind} block {index}"));
                }
            }
            E::CalibModule { name, seconds, rel_error, sparsity } => {
                if let Some(b) = &self.bar {
                    let short = name.strip_prefix("model.layers.").unwrap_or(name);
                    let zeros = sparsity.map_or(String::new(), |s| format!(" {:.1} % zeros,", s * 100.0));
                    b.set_message(match rel_error {
                        Some(e) => format!("{short}:{zeros} rel. error {e:.2e} ({seconds:.2} s)"),
                        None => format!("{short}:{zeros} ({seconds:.2} s)"),
                    });
                }
            }
            E::Warning(w) => self.println(format!("warning: {w}")),
        }
    }

    /// Clears any bar left.
    pub fn finish(&mut self) {
        self.replace_bar(None);
    }
}
