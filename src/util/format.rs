//! Numbers as xfer prints them, in tables, reports and summaries.

/// A number with `decimals` decimals, never "-0.0…" (a tiny negative
/// rounds to zero: print it without the sign).
pub fn fixed(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    match s.strip_prefix('-') {
        Some(rest) if rest.chars().all(|c| c == '0' || c == '.') => rest.to_string(),
        _ => s,
    }
}
