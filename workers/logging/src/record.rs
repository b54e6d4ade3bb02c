//! From received bytes to log messages: charset decoding, line splitting, ANSI stripping and
//! multi-line joining, in Datakit's order, for a TCP stream or a UDP datagram. Pure: no
//! sockets, no clock.
//!
//! TCP, per connection: decode → split on `\n` (partial lines carried, over-long lines cut) →
//! strip ANSI (optional) → trim trailing white space → skip blank lines → join multi-line
//! records. At the end of the stream the unterminated last line and the
//! record being built are both handed over.
//!
//! UDP, per datagram: decode → split on `\n` (no carry) → skip empty lines → strip ANSI
//! (optional) → skip empty messages. No trimming and no joining, as in Datakit.

use std::borrow::Cow;

use crate::ansi;
use crate::charset::{Charset, StreamDecoder};
use crate::multiline::{self, Joined, Joiner, StartPatterns};
use crate::split::{self, LineSplitter};

/// How lines are shaped into messages (one per input; shared by its connections).
#[derive(Debug, Clone)]
pub struct Shaping {
    /// Lines longer than this are cut into pieces (bytes, after decoding).
    pub max_line: usize,
    /// The charset of the received bytes.
    pub charset: Charset,
    /// `remove_ansi_escape_codes`.
    pub strip_ansi: bool,
    /// Where multi-line records start (TCP only).
    pub patterns: StartPatterns,
    /// Bound of a joined record in bytes.
    pub max_record_bytes: usize,
    /// Bound of a joined record in lines.
    pub max_record_lines: usize,
}

impl Default for Shaping {
    fn default() -> Self {
        Shaping {
            max_line: split::DEFAULT_MAX_LINE,
            charset: Charset::None,
            strip_ansi: false,
            patterns: StartPatterns::default(),
            max_record_bytes: multiline::DEFAULT_MAX_BYTES,
            max_record_lines: multiline::DEFAULT_MAX_LINES,
        }
    }
}

/// What happened to the bytes besides the messages produced.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Lines cut at `max_line` plus records cut at the multi-line bounds.
    pub truncated: u64,
    /// Chunks (charset decoding) or lines (UTF-8) in which malformed bytes became U+FFFD.
    pub decode_errors: u64,
}

/// Turns one TCP connection's bytes into messages.
#[derive(Debug)]
pub struct StreamAssembler {
    splitter: LineSplitter,
    joiner: Joiner,
    decoder: Option<StreamDecoder>,
    decoded: String,
    strip_ansi: bool,
    counts: Counts,
}

impl StreamAssembler {
    /// A fresh assembler for one stream.
    pub fn new(shaping: &Shaping) -> StreamAssembler {
        StreamAssembler {
            splitter: LineSplitter::new(shaping.max_line),
            joiner: Joiner::new(
                shaping.patterns.clone(),
                shaping.max_record_bytes,
                shaping.max_record_lines,
            ),
            decoder: StreamDecoder::new(shaping.charset),
            decoded: String::new(),
            strip_ansi: shaping.strip_ansi,
            counts: Counts::default(),
        }
    }

    /// Feeds received bytes; finished messages are appended to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<String>) {
        let StreamAssembler {
            splitter,
            joiner,
            decoder,
            decoded,
            strip_ansi,
            counts,
        } = self;
        let bytes = match decoder {
            Some(d) => {
                decoded.clear();
                if d.decode(chunk, false, decoded) {
                    counts.decode_errors += 1;
                }
                decoded.as_bytes()
            }
            None => chunk,
        };
        splitter.push(bytes, |line, truncated| {
            stream_line(joiner, *strip_ansi, counts, line, truncated, out);
        });
    }

    /// Whether a joined record is waiting for its continuation lines (the caller flushes it
    /// with [`StreamAssembler::flush_pending`] after an idle timeout).
    pub fn has_pending(&self) -> bool {
        self.joiner.pending() > 0
    }

    /// Bytes of an unterminated line waiting for its newline.
    pub fn carried(&self) -> usize {
        self.splitter.carried()
    }

    /// Hands over the record being joined (the stream went idle); a partial line stays.
    pub fn flush_pending(&mut self, out: &mut Vec<String>) {
        if let Some(text) = self.joiner.flush() {
            out.push(text);
        }
    }

    /// Ends the stream: the unterminated last line and the record being joined are handed
    /// over. The assembler must not be fed afterwards.
    pub fn finish(&mut self, out: &mut Vec<String>) {
        let StreamAssembler {
            splitter,
            joiner,
            decoder,
            decoded,
            strip_ansi,
            counts,
        } = self;
        if let Some(mut d) = decoder.take() {
            decoded.clear();
            if d.decode(&[], true, decoded) {
                counts.decode_errors += 1;
            }
            splitter.push(decoded.as_bytes(), |line, truncated| {
                stream_line(joiner, *strip_ansi, counts, line, truncated, out);
            });
        }
        splitter.finish(|line, truncated| {
            stream_line(joiner, *strip_ansi, counts, line, truncated, out);
        });
        if let Some(text) = joiner.flush() {
            out.push(text);
        }
    }

    /// The counts since the last call.
    pub fn take_counts(&mut self) -> Counts {
        std::mem::take(&mut self.counts)
    }
}

/// Text of a line: borrowed when it is valid UTF-8; otherwise malformed bytes become U+FFFD.
fn text_of<'a>(line: &'a [u8], counts: &mut Counts) -> Cow<'a, str> {
    match std::str::from_utf8(line) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => {
            counts.decode_errors += 1;
            String::from_utf8_lossy(line)
        }
    }
}

fn stream_line(
    joiner: &mut Joiner,
    strip_ansi: bool,
    counts: &mut Counts,
    line: &[u8],
    truncated: bool,
    out: &mut Vec<String>,
) {
    if line.is_empty() {
        return;
    }
    if truncated {
        counts.truncated += 1;
    }
    let text = text_of(line, counts);
    let text = if strip_ansi {
        ansi::strip(&text)
    } else {
        Cow::Borrowed(text.as_ref())
    };
    let text = text.trim_end();
    if text.is_empty() {
        // Blank lines (spaces, a lone `\r`) are skipped like empty ones.
        return;
    }
    match joiner.push(text) {
        Joined::Nothing => {}
        Joined::Line(s) => {
            if !s.is_empty() {
                out.push(s.to_owned());
            }
        }
        Joined::Record { text, forced } => {
            if forced {
                counts.truncated += 1;
            }
            out.push(text);
        }
    }
}

/// Turns one UDP datagram into messages (appended to `out`).
pub fn datagram(shaping: &Shaping, datagram: &[u8], out: &mut Vec<String>, counts: &mut Counts) {
    let mut decoded = String::new();
    let bytes = match StreamDecoder::new(shaping.charset) {
        Some(mut d) => {
            if d.decode(datagram, true, &mut decoded) {
                counts.decode_errors += 1;
            }
            decoded.as_bytes()
        }
        None => datagram,
    };
    split::split_datagram(bytes, shaping.max_line, |line, truncated| {
        if line.is_empty() {
            return;
        }
        if truncated {
            counts.truncated += 1;
        }
        let text = text_of(line, counts);
        let text = if shaping.strip_ansi {
            ansi::strip(&text).into_owned()
        } else {
            text.into_owned()
        };
        if !text.is_empty() {
            out.push(text);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(shaping: &Shaping, chunks: &[&[u8]]) -> Vec<String> {
        let mut a = StreamAssembler::new(shaping);
        let mut out = Vec::new();
        for c in chunks {
            a.push(c, &mut out);
        }
        a.finish(&mut out);
        out
    }

    #[test]
    fn keeps_the_last_line_without_newline_when_the_stream_ends() {
        let out = stream(&Shaping::default(), &[b"first\nsec", b"ond"]);
        assert_eq!(out, vec!["first", "second"]);
    }

    #[test]
    fn holds_the_last_record_until_idle_flush() {
        let mut a = StreamAssembler::new(&Shaping::default());
        let mut out = Vec::new();
        a.push(b"one\ntwo\n", &mut out);
        assert_eq!(out, vec!["one"]);
        assert!(a.has_pending());
        a.flush_pending(&mut out);
        assert_eq!(out, vec!["one", "two"]);
        assert!(!a.has_pending());
    }

    #[test]
    fn trims_trailing_space_and_crlf_and_skips_blank_lines() {
        let out = stream(&Shaping::default(), &[b"a  \r\n\r\n\nb\t\n"]);
        assert_eq!(out, vec!["a", "b"]);
    }

    #[test]
    fn joins_indented_lines_and_pattern_records() {
        let out = stream(
            &Shaping::default(),
            &[b"java.lang.Error: x\n\tat A.b(A.java:1)\n\tat C.d(C.java:2)\nnext\n"],
        );
        assert_eq!(
            out,
            vec![
                "java.lang.Error: x\n\tat A.b(A.java:1)\n\tat C.d(C.java:2)",
                "next"
            ]
        );
        let shaping = Shaping {
            patterns: StartPatterns::new(&[r"^\d{4}-"]).unwrap(),
            ..Shaping::default()
        };
        let out = stream(
            &shaping,
            &[b"2024-01-01 a\nplain continuation\n2024-01-02 b\n"],
        );
        assert_eq!(
            out,
            vec!["2024-01-01 a\nplain continuation", "2024-01-02 b"]
        );
    }

    #[test]
    fn strips_ansi_before_joining_when_asked() {
        let shaping = Shaping {
            strip_ansi: true,
            ..Shaping::default()
        };
        let out = stream(&shaping, &[b"\x1b[31mred\x1b[0m\n"]);
        assert_eq!(out, vec!["red"]);
        let out = stream(&Shaping::default(), &[b"\x1b[31mred\x1b[0m\n"]);
        assert_eq!(out, vec!["\x1b[31mred\x1b[0m"]);
    }

    #[test]
    fn counts_cut_lines_and_replaced_bytes() {
        let shaping = Shaping {
            max_line: 4,
            ..Shaping::default()
        };
        let mut a = StreamAssembler::new(&shaping);
        let mut out = Vec::new();
        a.push(b"abcdefgh\xff\n", &mut out);
        a.finish(&mut out);
        assert_eq!(out, vec!["abcd", "efgh", "\u{fffd}"]);
        assert_eq!(
            a.take_counts(),
            Counts {
                truncated: 2,
                decode_errors: 1
            }
        );
        assert_eq!(a.take_counts(), Counts::default());
    }

    #[test]
    fn decodes_utf16_streams_before_splitting() {
        let shaping = Shaping {
            charset: Charset::Utf16Le,
            ..Shaping::default()
        };
        let bytes: Vec<u8> = "línea uno\nlínea dos"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let (a, b) = bytes.split_at(7);
        assert_eq!(stream(&shaping, &[a, b]), vec!["línea uno", "línea dos"]);
        let mut out = Vec::new();
        datagram(&shaping, &bytes, &mut out, &mut Counts::default());
        assert_eq!(out, vec!["línea uno", "línea dos"]);
    }

    #[test]
    fn datagrams_split_without_trimming_or_joining() {
        let mut out = Vec::new();
        let mut counts = Counts::default();
        datagram(
            &Shaping::default(),
            b"a \n\tindented\n\nlast",
            &mut out,
            &mut counts,
        );
        assert_eq!(out, vec!["a ", "\tindented", "last"]);
        assert_eq!(counts, Counts::default());
    }
}
