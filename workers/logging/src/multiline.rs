//! Joining the lines of one multi-line record (a stack trace after its first line), with
//! Datakit's rules for where a record starts.
//!
//! A line starts a new record when it matches one of the start patterns. As long as no
//! pattern has matched yet on this stream (and when there are no patterns at all), a line
//! starts a record unless it begins with white space, so indented continuation lines (`\tat
//! ...`) stick to the line before them. A line that does not start a record is appended (with
//! `\n`) to the record being built; with no record being built it is passed through alone.
//! A record is handed over when the next one starts, when it outgrows the byte or line bound
//! (a forced, partial flush: following continuation lines keep accumulating into the next
//! piece), or when the caller flushes it (end of stream, idle timeout).

use regex::Regex;

/// Datakit's bound for one joined record: 80 % of Dataway's default `max_raw_body_size`
/// (1 MiB).
pub const DEFAULT_MAX_BYTES: usize = 1024 * 1024 * 8 / 10;

/// Bound on the number of lines in one record (Datakit has none; the byte bound usually
/// applies first).
pub const DEFAULT_MAX_LINES: usize = 10_000;

/// Start patterns for `auto_multiline_detection`: lines beginning with a time stamp in one
/// of the common layouts (Go's RFC 3339, ANSIC, Unix and Ruby dates, RFC 822, 850 and 1123,
/// `2006-01-02 15:04:05,000`, Java's `SimpleFormatter`, an ISO date, Gin's access log).
pub const AUTO_PATTERNS: &[&str] = &[
    // 2006-01-02T15:04:05Z07:00, 2006-01-02T15:04:05.999999999Z07:00
    r"^[0-9]+-[0-9]+-[0-9]+[A-Za-z_]+[0-9]+:[0-9]+:[0-9]+",
    // Mon Jan _2 15:04:05 2006, Mon Jan _2 15:04:05 MST 2006, Mon Jan 02 15:04:05 -0700 2006
    r"^[A-Za-z_]+ [A-Za-z_]+ +[0-9]+ [0-9]+:[0-9]+:[0-9]+",
    // 02 Jan 06 15:04 MST, 02 Jan 06 15:04 -0700
    r"^[0-9]+ [A-Za-z_]+ [0-9]+ [0-9]+:[0-9]+ (?:[A-Za-z_]+|-[0-9]+)",
    // Monday, 02-Jan-06 15:04:05 MST
    r"^[A-Za-z_]+, [0-9]+-[A-Za-z_]+-[0-9]+ [0-9]+:[0-9]+:[0-9]+ [A-Za-z_]+",
    // Mon, 02 Jan 2006 15:04:05 MST, Mon, 02 Jan 2006 15:04:05 -0700
    r"^[A-Za-z_]+, [0-9]+ [A-Za-z_]+ [0-9]+ [0-9]+:[0-9]+:[0-9]+ (?:[A-Za-z_]+|-[0-9]+)",
    // 2021-07-08 05:08:19,214
    r"^[0-9]+-[0-9]+-[0-9]+ [0-9]+:[0-9]+:[0-9]+",
    // Jan 2, 2006 3:04:05 PM
    r"^[A-Za-z_]+ [0-9]+, [0-9]+ [0-9]+:[0-9]+:[0-9]+ (?:AM|PM)",
    // 2021-01-31
    r"^[0-9]{4}-(?:0?[1-9]|1[012])-(?:0?[1-9]|[12][0-9]|3[01])",
    // [GIN] 2006/01/02 - 08:53:39
    r"^\[GIN\] [0-9]+/[0-9]+/[0-9]+ - [0-9]+:[0-9]+:[0-9]+",
];

/// A start pattern that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pattern {index} ({pattern:?}) is not a valid regular expression: {reason}")]
pub struct PatternError {
    /// Position in the list given to [`StartMatcher::new`].
    pub index: usize,
    /// The pattern.
    pub pattern: String,
    /// The compiler's message.
    pub reason: String,
}

/// The compiled start patterns, shared by every connection of an input.
#[derive(Debug, Clone, Default)]
pub struct StartPatterns {
    any: Option<Regex>,
}

impl StartPatterns {
    /// Compiles the patterns (Go RE2 syntax, which Rust's `regex` accepts); an empty list
    /// means "no patterns" (records start at lines not beginning with white space).
    ///
    /// # Errors
    /// The first pattern that does not compile.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<StartPatterns, PatternError> {
        if patterns.is_empty() {
            return Ok(StartPatterns { any: None });
        }
        for (index, p) in patterns.iter().enumerate() {
            if let Err(e) = Regex::new(p.as_ref()) {
                return Err(PatternError {
                    index,
                    pattern: p.as_ref().to_string(),
                    reason: e.to_string(),
                });
            }
        }
        // "Any pattern matches" is one pass of the alternation of all of them.
        let joined = patterns
            .iter()
            .map(|p| format!("(?:{})", p.as_ref()))
            .collect::<Vec<_>>()
            .join("|");
        let any = Regex::new(&joined).map_err(|e| PatternError {
            index: 0,
            pattern: joined.clone(),
            reason: e.to_string(),
        })?;
        Ok(StartPatterns { any: Some(any) })
    }

    /// Whether there are any patterns.
    pub fn is_empty(&self) -> bool {
        self.any.is_none()
    }
}

/// Whether `line` begins with white space as Datakit tests it (its first byte as a
/// character); an empty line counts as white space.
fn begins_with_space(line: &str) -> bool {
    match line.as_bytes().first() {
        None => true,
        Some(b) => matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ' | 0x85 | 0xa0),
    }
}

/// What [`Joiner::push`] produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Joined<'a> {
    /// Nothing yet: the line went into the record being built.
    Nothing,
    /// The line stands alone (no record was being built).
    Line(&'a str),
    /// A finished record; `forced` when it was cut at the byte or line bound.
    Record {
        /// The record's text (lines joined with `\n`).
        text: String,
        /// Cut at a bound rather than ended by the next record.
        forced: bool,
    },
}

/// Joins the lines of one stream into records (see the module documentation).
#[derive(Debug)]
pub struct Joiner {
    patterns: StartPatterns,
    matched_once: bool,
    buf: String,
    lines: usize,
    max_bytes: usize,
    max_lines: usize,
    after_forced_flush: bool,
}

impl Joiner {
    /// A joiner with the given start patterns and bounds (at least 1 byte and 2 lines).
    pub fn new(patterns: StartPatterns, max_bytes: usize, max_lines: usize) -> Joiner {
        Joiner {
            patterns,
            matched_once: false,
            buf: String::new(),
            lines: 0,
            max_bytes: max_bytes.max(1),
            max_lines: max_lines.max(2),
            after_forced_flush: false,
        }
    }

    /// Whether `line` starts a record.
    fn starts_record(&mut self, line: &str) -> bool {
        if let Some(re) = &self.patterns.any {
            if re.is_match(line) {
                self.matched_once = true;
                return true;
            }
            if self.matched_once {
                return false;
            }
        }
        !begins_with_space(line)
    }

    /// Feeds one line (without its newline).
    pub fn push<'a>(&mut self, line: &'a str) -> Joined<'a> {
        if self.starts_record(line) {
            let done = self.take();
            self.buf.push_str(line);
            self.lines = 1;
            self.after_forced_flush = false;
            return match done {
                Some(text) => Joined::Record {
                    text,
                    forced: false,
                },
                None => Joined::Nothing,
            };
        }
        if self.buf.is_empty() && !self.after_forced_flush {
            return Joined::Line(line);
        }
        if !self.buf.is_empty() {
            self.buf.push('\n');
        }
        self.buf.push_str(line);
        self.lines += 1;
        if self.buf.len() > self.max_bytes || self.lines >= self.max_lines {
            self.after_forced_flush = true;
            if let Some(text) = self.take() {
                return Joined::Record { text, forced: true };
            }
        }
        Joined::Nothing
    }

    /// Bytes of the record being built.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Hands over the record being built, if any.
    pub fn flush(&mut self) -> Option<String> {
        self.take()
    }

    fn take(&mut self) -> Option<String> {
        self.lines = 0;
        if self.buf.is_empty() {
            return None;
        }
        let cap = self.buf.len().min(4096);
        Some(std::mem::replace(&mut self.buf, String::with_capacity(cap)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs lines through a joiner and returns the records, flushing at the end.
    fn join(patterns: &[&str], lines: &[&str]) -> Vec<String> {
        let mut j = Joiner::new(
            StartPatterns::new(patterns).unwrap(),
            DEFAULT_MAX_BYTES,
            DEFAULT_MAX_LINES,
        );
        let mut out = Vec::new();
        for l in lines {
            match j.push(l) {
                Joined::Nothing => {}
                Joined::Line(s) => out.push(s.to_string()),
                Joined::Record { text, .. } => out.push(text),
            }
        }
        out.extend(j.flush());
        out
    }

    #[test]
    fn without_patterns_indented_lines_join_the_line_before() {
        let out = join(
            &[],
            &[
                "Exception in thread main",
                "\tat a.b(C.java:1)",
                "  at d.e(F.java:2)",
                "next line",
                "last",
            ],
        );
        assert_eq!(
            out,
            vec![
                "Exception in thread main\n\tat a.b(C.java:1)\n  at d.e(F.java:2)",
                "next line",
                "last"
            ]
        );
    }

    #[test]
    fn a_record_is_held_until_the_next_one_starts_or_a_flush() {
        let mut j = Joiner::new(StartPatterns::default(), 100, 100);
        assert_eq!(j.push("first"), Joined::Nothing);
        assert_eq!(j.pending(), 5);
        assert_eq!(
            j.push("second"),
            Joined::Record {
                text: "first".into(),
                forced: false
            }
        );
        assert_eq!(j.flush(), Some("second".into()));
        assert_eq!(j.flush(), None);
    }

    #[test]
    fn a_pattern_decides_once_it_has_matched() {
        let out = join(
            &[r"^\d{4}-\d{2}-\d{2}"],
            &[
                "no date yet",
                "still none",
                "2024-01-02 first record",
                "continuation without indent",
                "2024-01-02 second record",
                "  indented",
            ],
        );
        assert_eq!(
            out,
            vec![
                "no date yet",
                "still none",
                "2024-01-02 first record\ncontinuation without indent",
                "2024-01-02 second record\n  indented"
            ]
        );
    }

    #[test]
    fn a_continuation_without_a_record_stands_alone() {
        let out = join(&[r"^START"], &["START a", "more"]);
        assert_eq!(out, vec!["START a\nmore"]);
        let mut j = Joiner::new(StartPatterns::new(&["^START"]).unwrap(), 100, 100);
        assert_eq!(j.push("START"), Joined::Nothing);
        assert!(j.flush().is_some());
        // After a normal flush a continuation line has no record to join.
        assert_eq!(j.push("orphan"), Joined::Line("orphan"));
    }

    #[test]
    fn a_record_over_the_byte_bound_is_cut_and_continues() {
        let mut j = Joiner::new(StartPatterns::default(), 10, 100);
        assert_eq!(j.push("start"), Joined::Nothing);
        assert_eq!(
            j.push(" 123456"),
            Joined::Record {
                text: "start\n 123456".into(),
                forced: true
            }
        );
        // Continuation lines after a forced cut build the next piece.
        assert_eq!(j.push(" more"), Joined::Nothing);
        assert_eq!(j.flush(), Some(" more".into()));
    }

    #[test]
    fn a_record_at_the_line_bound_is_cut() {
        let mut j = Joiner::new(StartPatterns::default(), 1000, 3);
        assert_eq!(j.push("s"), Joined::Nothing);
        assert_eq!(j.push(" a"), Joined::Nothing);
        assert_eq!(
            j.push(" b"),
            Joined::Record {
                text: "s\n a\n b".into(),
                forced: true
            }
        );
    }

    #[test]
    fn auto_patterns_recognise_common_time_stamps() {
        let p = StartPatterns::new(AUTO_PATTERNS).unwrap();
        let re = p.any.unwrap();
        for line in [
            "2006-01-02T15:04:05Z07:00 x",
            "2006-01-02T15:04:05.999999999+07:00 x",
            "Mon Jan  2 15:04:05 2006 x",
            "Mon Jan  2 15:04:05 MST 2006 x",
            "Mon Jan 02 15:04:05 -0700 2006 x",
            "02 Jan 06 15:04 MST x",
            "02 Jan 06 15:04 -0700 x",
            "Monday, 02-Jan-06 15:04:05 MST x",
            "Mon, 02 Jan 2006 15:04:05 MST x",
            "Mon, 02 Jan 2006 15:04:05 -0700 x",
            "2021-07-08 05:08:19,214 x",
            "Jan 2, 2006 3:04:05 PM x",
            "2021-01-31",
            "[GIN] 2006/01/02 - 08:53:39 x",
        ] {
            assert!(re.is_match(line), "{line}");
        }
        for line in ["\tat x", "hello world", "<13>1 2024-01-01", "12:00:00 x"] {
            assert!(!re.is_match(line), "{line}");
        }
    }

    #[test]
    fn reports_the_pattern_that_does_not_compile() {
        let e = StartPatterns::new(&["ok", "(unclosed"]).unwrap_err();
        assert_eq!(e.index, 1);
        assert_eq!(e.pattern, "(unclosed");
    }

    #[test]
    fn white_space_is_tested_on_the_first_byte_as_datakit_does() {
        assert!(begins_with_space(""));
        assert!(begins_with_space(" x"));
        assert!(begins_with_space("\u{b}x"));
        assert!(!begins_with_space("x "));
        // U+3000 (ideographic space) starts with byte 0xE3: not white space for Datakit.
        assert!(!begins_with_space("\u{3000}x"));
    }
}
