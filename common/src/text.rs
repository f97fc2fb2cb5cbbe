//! Text from tenants, guests and clients on its way to a terminal.

use std::borrow::Cow;

/// What a terminal may be shown of a string a guest, a client or a node
/// chose: control characters (ESC, a bare CR, NUL, C1 codes; tab is kept)
/// and bidirectional overrides and isolates written as `\u{..}`, so that a
/// line cannot move the cursor, recolour or retitle the terminal, or make
/// text read in another order. Borrowed when there is nothing to escape.
///
/// Used for the node's log of guest output (RUSTSEC-2025-0055 was this
/// hole in tracing-subscriber's own formatter) and for `edgectl logs`.
pub fn terminal_safe(text: &str) -> Cow<'_, str> {
    fn unsafe_char(c: char) -> bool {
        (c.is_control() && c != '\t')
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
    }
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
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
    fn control_and_bidi_characters_are_escaped_and_the_rest_kept() {
        assert!(matches!(
            terminal_safe("plain\ttext, ünïcode ✓"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            terminal_safe("\u{1b}[2J\u{1b}]0;pwned\u{7}ok"),
            "\\u{1b}[2J\\u{1b}]0;pwned\\u{7}ok"
        );
        assert_eq!(terminal_safe("a\rb\0c\u{7f}d"), "a\\u{d}b\\u{0}c\\u{7f}d");
        assert_eq!(terminal_safe("x\u{9b}31m"), "x\\u{9b}31m");
        assert_eq!(
            terminal_safe("x\u{202e}y\u{2066}z\u{2069}"),
            "x\\u{202e}y\\u{2066}z\\u{2069}"
        );
    }
}
