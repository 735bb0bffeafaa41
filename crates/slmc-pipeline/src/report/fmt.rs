//! How the report writes numbers: perplexity to 3 decimals, sizes in MB, changes in percent,
//! durations in s / min / h, counts with thousands separators.

/// A perplexity (3 decimals).
pub(crate) fn ppl(v: f64) -> String {
    format!("{v:.3}")
}

/// A relative change in percent with its sign (`+1.23 %`).
pub(crate) fn percent_change(v: f64, reference: f64) -> String {
    format!("{:+.2} %", (v / reference - 1.0) * 100.0)
}

/// Bytes as megabytes (10⁶ bytes, 2 decimals).
pub(crate) fn mb(bytes: u64) -> String {
    format!("{:.2}", bytes as f64 / 1e6)
}

/// A duration: `4.2 s`, `3 min 05 s`, `1 h 02 min`.
pub(crate) fn seconds(s: f64) -> String {
    if s < 60.0 {
        return format!("{s:.1} s");
    }
    let total = s.round() as u64;
    if total < 3600 {
        format!("{} min {:02} s", total / 60, total % 60)
    } else {
        format!("{} h {:02} min", total / 3600, (total % 3600) / 60)
    }
}

/// An integer with thousands separators (`1,234,567`).
pub(crate) fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A small positive quantity in scientific notation with 2 significant decimals (`3.41e-4`).
pub(crate) fn sci(v: f64) -> String {
    format!("{v:.2e}")
}

/// A loss (nats/token, 3 decimals).
pub(crate) fn loss(v: f64) -> String {
    format!("{v:.3}")
}

/// A token count scaled for an axis: the divisor and its unit word.
pub(crate) fn token_scale(max: f64) -> (f64, &'static str) {
    if max >= 2e6 {
        (1e6, "millions")
    } else if max >= 2e3 {
        (1e3, "thousands")
    } else {
        (1.0, "")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_for_people() {
        assert_eq!(ppl(105.53649), "105.536");
        assert_eq!(percent_change(105.536, 95.198), "+10.86 %");
        assert_eq!(percent_change(90.0, 100.0), "-10.00 %");
        assert_eq!(mb(7_123_456), "7.12");
        assert_eq!(seconds(4.24), "4.2 s");
        assert_eq!(seconds(185.0), "3 min 05 s");
        assert_eq!(seconds(3720.0), "1 h 02 min");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(999), "999");
        assert_eq!(sci(0.000341), "3.41e-4");
        assert_eq!(token_scale(61_440.0), (1e3, "thousands"));
    }
}
