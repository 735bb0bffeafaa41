//! "Did you mean" suggestions.

/// The candidate closest to `word` when it is plausibly a typo of it.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase().replace('_', "-");
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&lower, c), c))
        .filter(|(d, c)| {
            *d <= (c.len().max(word.len()) / 3).max(2) || c.contains(&lower) || lower.contains(c)
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Names users bring from other tools (transformers, torchtune, axolotl) and the slmc key they
/// mean.
const ALIASES: &[(&str, &str)] = &[
    ("learning-rate", "lr"),
    ("min-learning-rate", "min-lr"),
    ("max-steps", "steps"),
    ("num-steps", "steps"),
    ("warmup", "warmup-steps"),
    ("gradient-accumulation-steps", "grad-accum"),
    ("max-grad-norm", "clip-grad-norm"),
    ("micro-batch-size", "batch-size"),
    ("lr-scheduler", "schedule"),
    ("type", "kind"),
    ("seq-length", "seq-len"),
    ("max-seq-len", "seq-len"),
    ("sequence-len", "seq-len"),
    ("adam-beta1", "beta1"),
    ("adam-beta2", "beta2"),
    ("adam-epsilon", "eps"),
];

/// A label suggesting the closest candidate, if any (typos, snake_case, and names other tools
/// use for the same setting).
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let candidates: Vec<&str> = candidates.into_iter().collect();
    let alias = closest(word, ALIASES.iter().map(|(a, _)| *a))
        .and_then(|a| ALIASES.iter().find(|(x, _)| *x == a))
        .map(|(_, canonical)| *canonical)
        .filter(|c| candidates.contains(c));
    alias.or_else(|| closest(word, candidates.iter().copied())).map(|c| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_typos_and_snake_case() {
        assert_eq!(closest("lerning-rate", ["lr", "learning-rate", "steps"]), Some("learning-rate"));
        assert_eq!(closest("batch_size", ["batch-size", "steps"]), Some("batch-size"));
        assert_eq!(closest("zzzzzz", ["lr", "steps"]), None);
        assert_eq!(did_you_mean("lerning-rate", ["lr", "steps"]).as_deref(), Some("did you mean `lr`?"));
        assert_eq!(did_you_mean("max_steps", ["lr", "steps"]).as_deref(), Some("did you mean `steps`?"));
    }
}
