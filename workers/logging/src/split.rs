//! Cutting a byte stream into lines: `\n` ends a line, a partial line is carried to the next
//! chunk, and a line longer than the maximum is cut into pieces.
//!
//! The cut positions depend only on the bytes, never on how the stream was chunked by reads:
//! a line of `n` bytes is cut every `max_line` bytes (moved back by up to three bytes so a
//! UTF-8 character is never split), and every piece but the last is flagged `truncated`.

/// Datakit's limit for one line read from a socket: 512 KiB.
pub const DEFAULT_MAX_LINE: usize = 512 * 1024;

/// The smallest maximum line length accepted (so a UTF-8 character always fits in a piece).
pub const MIN_MAX_LINE: usize = 4;

/// A carry buffer larger than this is released once it is empty again.
const KEEP_CAPACITY: usize = 256 * 1024;

/// Splits a stream of chunks into lines (see the module documentation).
#[derive(Debug)]
pub struct LineSplitter {
    carry: Vec<u8>,
    max_line: usize,
}

impl LineSplitter {
    /// A splitter cutting lines longer than `max_line` bytes (at least [`MIN_MAX_LINE`]).
    pub fn new(max_line: usize) -> Self {
        LineSplitter {
            carry: Vec::new(),
            max_line: max_line.max(MIN_MAX_LINE),
        }
    }

    /// The maximum line length in use.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Bytes of an unterminated line waiting for the next chunk.
    pub fn carried(&self) -> usize {
        self.carry.len()
    }

    /// Feeds one chunk; `emit(line, truncated)` is called for every complete line (without
    /// its `\n`, possibly empty) and for every full piece cut off an over-long line.
    pub fn push(&mut self, chunk: &[u8], mut emit: impl FnMut(&[u8], bool)) {
        let mut rest = chunk;
        while let Some(pos) = memchr::memchr(b'\n', rest) {
            let line = &rest[..pos];
            if self.carry.is_empty() {
                emit_cut(line, self.max_line, &mut emit);
            } else {
                self.carry.extend_from_slice(line);
                emit_cut(&self.carry, self.max_line, &mut emit);
                self.carry.clear();
                self.release();
            }
            rest = &rest[pos + 1..];
        }
        if rest.is_empty() {
            return;
        }
        self.carry.extend_from_slice(rest);
        // The line is already longer than the limit: hand over the full pieces now so the
        // carry stays bounded by `max_line` plus one chunk.
        if self.carry.len() > self.max_line {
            let mut start = 0;
            while self.carry.len() - start > self.max_line {
                let cut = char_cut(&self.carry[start..], self.max_line);
                emit(&self.carry[start..start + cut], true);
                start += cut;
            }
            self.carry.drain(..start);
        }
    }

    /// Ends the stream: an unterminated last line is emitted (not lost, unlike Datakit).
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8], bool)) {
        if !self.carry.is_empty() {
            emit_cut(&self.carry, self.max_line, &mut emit);
            self.carry.clear();
            self.release();
        }
    }

    fn release(&mut self) {
        if self.carry.capacity() > KEEP_CAPACITY {
            self.carry = Vec::new();
        }
    }
}

/// Splits one datagram on `\n` (no carry: an unterminated last line is a line), cutting
/// over-long lines as [`LineSplitter`] does.
pub fn split_datagram(datagram: &[u8], max_line: usize, mut emit: impl FnMut(&[u8], bool)) {
    let max_line = max_line.max(MIN_MAX_LINE);
    for line in datagram.split(|b| *b == b'\n') {
        emit_cut(line, max_line, &mut emit);
    }
}

/// Emits `line`, cut into pieces of at most `max_line` bytes when it is longer.
fn emit_cut(mut line: &[u8], max_line: usize, emit: &mut impl FnMut(&[u8], bool)) {
    while line.len() > max_line {
        let cut = char_cut(line, max_line);
        emit(&line[..cut], true);
        line = &line[cut..];
    }
    emit(line, false);
}

/// Where to cut `buf` (longer than `max`): at `max`, moved back by up to three bytes so the
/// cut does not fall inside a UTF-8 sequence (when the bytes look like UTF-8).
fn char_cut(buf: &[u8], max: usize) -> usize {
    let is_continuation = |b: u8| b & 0b1100_0000 == 0b1000_0000;
    (max.saturating_sub(3).max(1)..=max)
        .rev()
        .find(|&i| !is_continuation(buf[i]))
        .unwrap_or(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(splitter: &mut LineSplitter, chunks: &[&[u8]], finish: bool) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        for c in chunks {
            splitter.push(c, |l, t| {
                out.push((String::from_utf8_lossy(l).into_owned(), t))
            });
        }
        if finish {
            splitter.finish(|l, t| out.push((String::from_utf8_lossy(l).into_owned(), t)));
        }
        out
    }

    fn plain(v: &[(String, bool)]) -> Vec<&str> {
        v.iter().map(|(l, _)| l.as_str()).collect()
    }

    #[test]
    fn splits_on_newlines_and_keeps_empty_lines_for_the_caller() {
        let mut s = LineSplitter::new(100);
        let out = lines(&mut s, &[b"a\n\nb\n"], false);
        assert_eq!(plain(&out), vec!["a", "", "b"]);
        assert_eq!(s.carried(), 0);
    }

    #[test]
    fn joins_a_line_split_across_chunks() {
        let mut s = LineSplitter::new(100);
        let out = lines(&mut s, &[b"hel", b"lo wo", b"rld\nnext", b"\n"], false);
        assert_eq!(plain(&out), vec!["hello world", "next"]);
    }

    #[test]
    fn keeps_an_unterminated_last_line_at_the_end_of_the_stream() {
        let mut s = LineSplitter::new(100);
        let out = lines(&mut s, &[b"one\ntw", b"o"], false);
        assert_eq!(plain(&out), vec!["one"]);
        assert_eq!(s.carried(), 3);
        let mut rest = Vec::new();
        s.finish(|l, t| rest.push((l.to_vec(), t)));
        assert_eq!(rest, vec![(b"two".to_vec(), false)]);
        assert_eq!(s.carried(), 0);
    }

    #[test]
    fn cuts_an_over_long_line_into_flagged_pieces() {
        let mut s = LineSplitter::new(4);
        let out = lines(&mut s, &[b"abcdefghij\nxy\n"], false);
        assert_eq!(
            out,
            vec![
                ("abcd".to_string(), true),
                ("efgh".to_string(), true),
                ("ij".to_string(), false),
                ("xy".to_string(), false),
            ]
        );
    }

    #[test]
    fn a_line_of_exactly_the_maximum_is_not_cut() {
        let mut s = LineSplitter::new(4);
        let out = lines(&mut s, &[b"ab", b"cd", b"\n"], false);
        assert_eq!(out, vec![("abcd".to_string(), false)]);
    }

    #[test]
    fn bounds_the_carry_of_a_line_that_never_ends() {
        let mut s = LineSplitter::new(8);
        let mut pieces = 0;
        for _ in 0..100 {
            s.push(b"0123456", |l, t| {
                assert_eq!(l.len(), 8);
                assert!(t);
                pieces += 1;
            });
            assert!(s.carried() <= 8);
        }
        assert_eq!(pieces, 700 / 8);
    }

    #[test]
    fn never_cuts_inside_a_utf8_character() {
        // "é" is two bytes: a cut at 5 would split the third one.
        let text = "ééééé\n";
        let mut s = LineSplitter::new(5);
        let out = lines(&mut s, &[text.as_bytes()], false);
        assert_eq!(plain(&out), vec!["éé", "éé", "é"]);
        assert!(out[0].1 && out[1].1 && !out[2].1);
    }

    #[test]
    fn cuts_at_the_same_places_however_the_stream_is_chunked() {
        let text: Vec<u8> = "x".repeat(23).bytes().chain(*b"\nshort\n").collect();
        let mut whole = LineSplitter::new(10);
        let expected = lines(&mut whole, &[&text], true);
        for size in 1..text.len() {
            let mut s = LineSplitter::new(10);
            let chunks: Vec<&[u8]> = text.chunks(size).collect();
            assert_eq!(lines(&mut s, &chunks, true), expected, "chunk size {size}");
        }
    }

    #[test]
    fn splits_datagrams_without_carry() {
        let mut out = Vec::new();
        split_datagram(b"a\nb\r\nc", 100, |l, t| out.push((l.to_vec(), t)));
        assert_eq!(
            out,
            vec![
                (b"a".to_vec(), false),
                (b"b\r".to_vec(), false),
                (b"c".to_vec(), false)
            ]
        );
    }
}
