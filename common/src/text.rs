//! Text from users and member clusters on its way to a person: bounded in messages, and made
//! harmless before it reaches a terminal.

use std::borrow::Cow;

/// `s` for an error message: quoted, and at most `max` characters of it.
pub fn quote_short(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => format!("{s:?}"),
        Some((end, _)) => format!("{:?}… ({} bytes)", &s[..end], s.len()),
    }
}

/// Whether `c` can change what a terminal shows beyond printing itself: C0 controls other
/// than newline and tab (ESC starts escape sequences, CR rewrites a line), DEL, C1 controls
/// (CSI is one), and the Unicode bidirectional overrides that reorder a line.
fn unsafe_for_terminal(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every character that could forge or hide output on a terminal written as
/// `\uXXXX`. Newlines and tabs stay. Inside JSON strings (and YAML double-quoted ones) the
/// result means the same as the input.
pub fn terminal_safe(s: &str) -> Cow<'_, str> {
    if !s.chars().any(unsafe_for_terminal) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if unsafe_for_terminal(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_and_overrides_are_shown_not_obeyed() {
        let forged = "edge-1\x1b[2K\rAvailable\u{9b}31m\u{202e}evil\x07";
        let safe = terminal_safe(forged);
        assert_eq!(
            safe,
            "edge-1\\u001b[2K\\u000dAvailable\\u009b31m\\u202eevil\\u0007"
        );
        assert!(!safe.chars().any(unsafe_for_terminal));
        assert_eq!(terminal_safe("a\tb\nc"), "a\tb\nc");
        // Inside a JSON string the escape means the same character.
        let json = serde_json::to_string(&forged).unwrap();
        let back: String = serde_json::from_str(&terminal_safe(&json)).unwrap();
        assert_eq!(back, forged);
    }

    #[test]
    fn long_names_are_cut_in_messages() {
        let name = "x".repeat(5 << 20);
        let q = quote_short(&name, 64);
        assert!(q.len() < 120, "{q}");
        assert!(q.ends_with(&format!("({} bytes)", name.len())));
        assert_eq!(quote_short("edge-1", 64), "\"edge-1\"");
    }

    proptest::proptest! {
        #[test]
        fn nothing_unsafe_survives(s in "\\PC*|[\\x00-\\x1f\\x7f-\\u{9f}\\u{202a}-\\u{202e}a]{0,40}") {
            proptest::prop_assert!(!terminal_safe(&s).chars().any(unsafe_for_terminal));
        }
    }
}
