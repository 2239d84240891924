//! Text helpers for error messages: bounded, never the whole of a foreign answer.

/// Shortens an upstream message so a log line stays readable.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
