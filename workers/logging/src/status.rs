//! The `status` field of a log point: Datakit's default, its normalisation of level names,
//! and `ignore_status`.
//!
//! Datakit does not guess a level from the message text: a socket log line gets
//! `status = "info"`, and only a Pipeline script that extracts a status changes it, after
//! which the value is normalised with [`normalize`] (`E` and `error` → `error`, `warn` →
//! `warning`...). Without Pipeline support every socket line is therefore `info`.

use std::borrow::Cow;

/// The status of a line no Pipeline has classified.
pub const DEFAULT_STATUS: &str = "info";

/// Datakit's canonical name of a level (case-insensitive): the one-letter and long forms of
/// emerg, alert, critical, error, warning, notice, info, debug (also trace, verbose) and OK;
/// an empty status is [`DEFAULT_STATUS`], anything else is kept lower-cased.
pub fn normalize(status: &str) -> Cow<'static, str> {
    let lower = status.to_ascii_lowercase();
    let canonical = match lower.as_str() {
        "" => DEFAULT_STATUS,
        "f" | "emerg" => "emerg",
        "a" | "alert" => "alert",
        "c" | "critical" => "critical",
        "e" | "error" => "error",
        "w" | "warn" | "warning" => "warning",
        "n" | "notice" => "notice",
        "i" | "info" => "info",
        "d" | "trace" | "verbose" | "debug" => "debug",
        "o" | "s" | "ok" => "OK",
        _ => return Cow::Owned(lower),
    };
    Cow::Borrowed(canonical)
}

/// Whether a point of `status` is dropped by `ignore_status` (entries compared
/// case-insensitively with the status).
pub fn is_ignored(status: &str, ignore_status: &[String]) -> bool {
    ignore_status
        .iter()
        .any(|s| s.trim().eq_ignore_ascii_case(status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_level_names_as_datakit() {
        for (input, want) in [
            ("E", "error"),
            ("ERROR", "error"),
            ("warn", "warning"),
            ("W", "warning"),
            ("f", "emerg"),
            ("trace", "debug"),
            ("Verbose", "debug"),
            ("ok", "OK"),
            ("s", "OK"),
            ("", "info"),
            ("Custom", "custom"),
        ] {
            assert_eq!(normalize(input), want, "{input}");
        }
    }

    #[test]
    fn ignore_status_matches_case_insensitively() {
        let list = vec!["INFO".to_string(), "debug".to_string()];
        assert!(is_ignored("info", &list));
        assert!(!is_ignored("error", &list));
        assert!(!is_ignored("info", &[]));
    }
}
