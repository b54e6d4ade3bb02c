//! Removing ANSI escape sequences (terminal colours, cursor moves) from a line, for
//! `remove_ansi_escape_codes = true`.

use std::borrow::Cow;
use std::sync::OnceLock;

use regex::Regex;

/// One escape sequence: ESC or CSI (U+009B), optional intermediate characters, then either
/// an OSC-style body ended by BEL or numeric parameters ended by a final character. This is
/// the same language Datakit strips.
const ESCAPE: &str = concat!(
    r"[\x1B\x{9B}][\[\]()#;?]*",
    r"(?:",
    r"(?:[A-Za-z0-9]*(?:;[A-Za-z0-9]*)*)?\x07",
    r"|",
    r"(?:[0-9]{1,4}(?:;[0-9]{0,4})*)?[0-9A-PRZcf-ntqry=><~]",
    r")"
);

fn escape_regex() -> Option<&'static Regex> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    RE.get_or_init(|| Regex::new(ESCAPE).ok()).as_ref()
}

/// `line` without its ANSI escape sequences; borrowed when it has none.
pub fn strip(line: &str) -> Cow<'_, str> {
    if !line.contains(['\u{1b}', '\u{9b}']) {
        return Cow::Borrowed(line);
    }
    match escape_regex() {
        Some(re) => re.replace_all(line, ""),
        None => Cow::Borrowed(line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_escape_pattern_compiles() {
        assert!(escape_regex().is_some());
    }

    #[test]
    fn removes_colour_codes() {
        assert_eq!(
            strip("\x1b[31mERROR\x1b[0m disk \x1b[1;32mfull\x1b[m"),
            "ERROR disk full"
        );
    }

    #[test]
    fn removes_osc_titles_and_csi_characters() {
        assert_eq!(strip("\x1b]0;title\x07text"), "text");
        assert_eq!(strip("a\u{9b}2Jb"), "ab");
        assert_eq!(strip("\x1b[2K\x1b[1Gprogress"), "progress");
    }

    #[test]
    fn leaves_plain_text_borrowed() {
        assert!(matches!(strip("plain [31m text"), Cow::Borrowed(_)));
        assert_eq!(strip("plain [31m text"), "plain [31m text");
    }

    #[test]
    fn keeps_a_lone_escape_that_starts_no_sequence() {
        assert_eq!(strip("a\x1b"), "a\x1b");
    }
}
