//! `targets` / `ignore` selectors bound to a model's module names (Hugging Face names, as
//! PEFT's `target_modules` and llm-compressor's `targets`): `re:<regex>` must match the whole
//! name; anything else is a glob over the whole name, or a plain suffix after a dot
//! (`mlp.down_proj` selects `model.layers.*.mlp.down_proj`).

use crate::diag::Diagnostic;
use crate::schema::{Selection, Selector};
use crate::suggest::did_you_mean;

/// Whether `sel` selects module `name`.
pub fn matches(sel: &Selector, name: &str) -> bool {
    if let Some(re) = sel.text.strip_prefix("re:") {
        return regex_lite::Regex::new(&format!("^(?:{re})$")).is_ok_and(|r| r.is_match(name));
    }
    name == sel.text
        || name.ends_with(&format!(".{}", sel.text))
        || glob_match(sel.text.as_bytes(), name.as_bytes())
}

/// `*` (any run), `?` (one character), everything else literal. Linear in the product of the
/// lengths (no backtracking blow-up on many `*`).
fn glob_match(p: &[u8], s: &[u8]) -> bool {
    // can[j]: the pattern prefix seen so far matches s[..j].
    let mut can = vec![false; s.len() + 1];
    can[0] = true;
    for &c in p {
        let mut next = vec![false; s.len() + 1];
        match c {
            b'*' => {
                let mut any = false;
                for j in 0..=s.len() {
                    any |= can[j];
                    next[j] = any;
                }
            }
            _ => {
                for j in 0..s.len() {
                    next[j + 1] = can[j] && (c == b'?' || c == s[j]);
                }
            }
        }
        can = next;
    }
    can[s.len()]
}

/// Modules names that are never quantized but commonly listed in `ignore` (llm-compressor's
/// default `ignore = ["lm_head"]`).
const NEVER_QUANTIZED: &[&str] = &["lm_head", "model.embed_tokens", "embed_tokens"];

/// The modules a quantize or prune stage touches: `targets` (default: all of `modules`) minus
/// `ignore`. A selector that selects nothing is an error (with the closest module name as a hint).
pub fn resolve(q: &Selection, modules: &[String]) -> Result<Vec<String>, Vec<Diagnostic>> {
    let mut problems = Vec::new();
    let unmatched = |sel: &Selector, key: &str| {
        let mut suffixes: Vec<String> =
            modules.iter().filter_map(|m| m.splitn(4, '.').nth(3).map(str::to_string)).collect();
        suffixes.extend(modules.iter().filter_map(|m| m.rsplit('.').next().map(str::to_string)));
        suffixes.sort();
        suffixes.dedup();
        let mut d = Diagnostic::new(
            format!(
                "`{}` in `{key}` selects none of the model's {} linear modules (e.g. `{}`)",
                sel.text,
                modules.len(),
                modules.first().map_or("", String::as_str)
            ),
            sel.origin.clone(),
        );
        if let Some(l) = did_you_mean(
            &sel.text,
            modules.iter().map(String::as_str).chain(suffixes.iter().map(String::as_str)),
        ) {
            d = d.with_label(l);
        }
        d
    };
    for sel in &q.targets {
        if !modules.iter().any(|m| matches(sel, m)) {
            problems.push(unmatched(sel, "targets"));
        }
    }
    for sel in &q.ignore {
        if !NEVER_QUANTIZED.contains(&sel.text.as_str()) && !modules.iter().any(|m| matches(sel, m)) {
            problems.push(unmatched(sel, "ignore"));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(modules
        .iter()
        .filter(|m| q.targets.is_empty() || q.targets.iter().any(|s| matches(s, m)))
        .filter(|m| !q.ignore.iter().any(|s| matches(s, m)))
        .cloned()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Origin;

    fn sel(s: &str) -> Selector {
        Selector { text: s.into(), origin: Origin::Nowhere }
    }

    #[test]
    fn regex_glob_and_suffix_selectors() {
        let n = "model.layers.3.self_attn.q_proj";
        assert!(matches(&sel(r"re:model\.layers\.\d+\.(self_attn|mlp)\..*"), n));
        assert!(!matches(&sel("re:self_attn"), n), "regexes match the whole name");
        assert!(matches(&sel("model.layers.*.self_attn.*"), n));
        assert!(matches(&sel("self_attn.q_proj"), n));
        assert!(matches(&sel("q_proj"), n));
        assert!(!matches(&sel("proj"), n));
        assert!(!matches(&sel("model.layers.1?.*"), n));
        assert!(matches(&sel("*layers*q_proj"), n));
        let many = format!("{}x", "*".repeat(40));
        assert!(!matches(&sel(&many), &"a".repeat(60)), "no exponential backtracking");
    }

    #[test]
    fn resolve_subtracts_ignore_and_rejects_selectors_that_select_nothing() {
        let modules: Vec<String> = ["self_attn.q_proj", "self_attn.o_proj", "mlp.down_proj"]
            .iter()
            .flat_map(|m| (0..2).map(move |i| format!("model.layers.{i}.{m}")))
            .collect();
        let mut q = Selection { targets: vec![], ignore: vec![sel("lm_head"), sel("model.layers.1.*")] };
        let got = resolve(&q, &modules).unwrap();
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|m| m.starts_with("model.layers.0.")));
        q.targets = vec![sel("re:.*o_proj")];
        assert_eq!(resolve(&q, &modules).unwrap(), vec!["model.layers.0.self_attn.o_proj".to_string()]);
        q.ignore = vec![sel("mlp.gate_proj")];
        let err = resolve(&q, &modules).unwrap_err();
        assert!(err[0].message.contains("`mlp.gate_proj` in `ignore` selects none"), "{}", err[0].message);
    }
}
