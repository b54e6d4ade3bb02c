//! The Graphite plaintext protocol: pure functions from bytes to lines and from one line to a
//! typed [`Sample`] (`path[;tag=value...] value [timestamp]`).
//!
//! Nothing here does I/O. [`split_lines`] cuts a datagram into lines; [`LineFramer`] does the
//! same for a byte stream whose lines may be split across reads (with a carry buffer and a cap
//! on the line length); [`parse_line`] turns one line into a [`Sample`] or a [`LineError`].

use std::fmt;

/// Longest line accepted (Datakit's scanner limit): longer lines are dropped and counted.
pub const MAX_LINE: usize = 64 * 1024;

/// Longest excerpt of offending text an error keeps (for rate-limited logs).
const EXCERPT: usize = 64;

/// Why a line is not a Graphite sample.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// Not two or three whitespace-separated fields.
    #[error("expected `path value [timestamp]`, found {0} space-separated fields")]
    FieldCount(usize),
    /// Nothing before the first `;` of the path.
    #[error("the metric path is empty")]
    EmptyName,
    /// The value is not a float (or overflows one).
    #[error("the value {0:?} is not a number")]
    BadValue(Excerpt),
    /// The value is NaN, which no backend stores.
    #[error("the value is NaN")]
    NanValue,
    /// The timestamp is not a number of seconds.
    #[error("the timestamp {0:?} is not a number of seconds (or -1/N for now)")]
    BadTimestamp(Excerpt),
    /// The timestamp does not fit in nanoseconds since 1970 (i64).
    #[error("the timestamp {0:?} is out of range: send seconds since 1970")]
    TimestampOutOfRange(Excerpt),
    /// The line is longer than [`MAX_LINE`] (reported by the framers, never by [`parse_line`]).
    #[error("the line is longer than {MAX_LINE} bytes")]
    TooLong,
}

/// A short, lossily decoded copy of offending input, for error messages.
#[derive(Clone, PartialEq, Eq)]
pub struct Excerpt(String);

impl Excerpt {
    fn of(bytes: &[u8]) -> Excerpt {
        let cut = &bytes[..bytes.len().min(EXCERPT)];
        Excerpt(String::from_utf8_lossy(cut).into_owned())
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Excerpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// One parsed line, borrowing from the input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample<'a> {
    /// The dotted metric name: the path up to its first `;`.
    pub name: &'a [u8],
    /// The raw tag section after the first `;` (empty when the path has no tags); read it
    /// with [`Sample::tags`].
    pub tag_text: &'a [u8],
    /// The value.
    pub value: f64,
    /// The client's timestamp in nanoseconds; `None` when the line has none, or `-1`/`N`
    /// (the receive time is used).
    pub time_ns: Option<i64>,
}

impl<'a> Sample<'a> {
    /// The Graphite 1.1 tags of the path, in order.
    pub fn tags(&self) -> Tags<'a> {
        Tags {
            rest: (!self.tag_text.is_empty()).then_some(self.tag_text),
        }
    }
}

/// One `;`-separated item of a tagged path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag<'a> {
    /// `key=value` with a non-empty key and value.
    Pair(&'a [u8], &'a [u8]),
    /// An item without `=`, or with an empty key or value: skipped and counted.
    Invalid(&'a [u8]),
}

/// Iterator over the tags of a path (see [`Sample::tags`]).
#[derive(Debug, Clone)]
pub struct Tags<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> Iterator for Tags<'a> {
    type Item = Tag<'a>;

    fn next(&mut self) -> Option<Tag<'a>> {
        let rest = self.rest?;
        let (item, next) = match memchr::memchr(b';', rest) {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        self.rest = next;
        Some(match memchr::memchr(b'=', item) {
            Some(i) if i > 0 && i + 1 < item.len() => Tag::Pair(&item[..i], &item[i + 1..]),
            _ => Tag::Invalid(item),
        })
    }
}

/// Whether a byte separates fields (Graphite's carbon splits on any whitespace).
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'\x0b' | b'\x0c')
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_space(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_space(*last) {
            break;
        }
        s = rest;
    }
    s
}

/// Parses one line (without its newline). Surrounding whitespace is ignored and fields may be
/// separated by runs of spaces or tabs. A blank line is `Ok(None)`.
///
/// # Errors
/// A [`LineError`] saying what is wrong; the caller counts it and goes on with the next line.
pub fn parse_line(line: &[u8]) -> Result<Option<Sample<'_>>, LineError> {
    let line = trim(line);
    if line.is_empty() {
        return Ok(None);
    }
    let mut fields = line.split(|b| is_space(*b)).filter(|f| !f.is_empty());
    let (Some(path), Some(value)) = (fields.next(), fields.next()) else {
        return Err(LineError::FieldCount(1));
    };
    let timestamp = fields.next();
    let extra = fields.count();
    if extra > 0 {
        return Err(LineError::FieldCount(3 + extra));
    }
    let (name, tag_text) = match memchr::memchr(b';', path) {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (path, &path[path.len()..]),
    };
    if name.is_empty() {
        return Err(LineError::EmptyName);
    }
    let value = parse_value(value)?;
    let time_ns = match timestamp {
        None => None,
        Some(t) => parse_timestamp(t)?,
    };
    Ok(Some(Sample {
        name,
        tag_text,
        value,
        time_ns,
    }))
}

/// A float as Go's `strconv.ParseFloat` reads it: decimal or exponent forms, `inf`/`infinity`
/// with a sign, but an overflowing literal (`1e400`) is an error, and NaN is refused.
fn parse_value(text: &[u8]) -> Result<f64, LineError> {
    let bad = || LineError::BadValue(Excerpt::of(text));
    let s = std::str::from_utf8(text).map_err(|_| bad())?;
    let v: f64 = s.parse().map_err(|_| bad())?;
    if v.is_nan() {
        return Err(LineError::NanValue);
    }
    if v.is_infinite() && !s.to_ascii_lowercase().contains("inf") {
        return Err(bad());
    }
    Ok(v)
}

const NANOS: i64 = 1_000_000_000;

/// Seconds (integer, decimal or exponent form) to nanoseconds, truncating below 1 ns as Go's
/// `int64(ts * 1e9)` does; `-1` and `N` mean "now" (`None`).
fn parse_timestamp(text: &[u8]) -> Result<Option<i64>, LineError> {
    if text == b"-1" || text == b"N" || text == b"n" {
        return Ok(None);
    }
    if let Some(ns) = exact_decimal_ns(text) {
        return ns
            .map(Some)
            .ok_or_else(|| LineError::TimestampOutOfRange(Excerpt::of(text)));
    }
    let bad = || LineError::BadTimestamp(Excerpt::of(text));
    let s = std::str::from_utf8(text).map_err(|_| bad())?;
    let secs: f64 = s.parse().map_err(|_| bad())?;
    if !secs.is_finite() {
        return Err(bad());
    }
    let ns = (secs * 1e9).trunc();
    // i64::MAX as f64 rounds up to 2^63, so the upper bound is exclusive.
    if ns >= -(i64::MIN as f64) || ns < i64::MIN as f64 {
        return Err(LineError::TimestampOutOfRange(Excerpt::of(text)));
    }
    Ok(Some(ns as i64))
}

/// `[+-]digits[.digits]` read exactly into nanoseconds: `None` when the text has another
/// form, `Some(None)` when it overflows.
fn exact_decimal_ns(text: &[u8]) -> Option<Option<i64>> {
    let (negative, body) = match text {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, text),
    };
    let (int, frac) = match memchr::memchr(b'.', body) {
        Some(i) => (&body[..i], &body[i + 1..]),
        None => (body, &body[body.len()..]),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.iter().chain(frac).all(u8::is_ascii_digit) {
        return None;
    }
    let mut secs: i64 = 0;
    for d in int {
        secs = match secs
            .checked_mul(10)
            .and_then(|s| s.checked_add(i64::from(d - b'0')))
        {
            Some(s) => s,
            None => return Some(None),
        };
    }
    let mut sub: i64 = 0;
    for i in 0..9 {
        sub = sub * 10 + frac.get(i).map_or(0, |d| i64::from(d - b'0'));
    }
    let ns = secs.checked_mul(NANOS).and_then(|n| n.checked_add(sub));
    Some(ns.map(|n| if negative { -n } else { n }))
}

/// The lines of one datagram or complete buffer: split on `\n`, a trailing `\r` removed, the
/// last line kept even without a newline. Empty lines are yielded (the parser skips them).
pub fn split_lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let data = data.strip_suffix(b"\n").unwrap_or(data);
    let empty = data.is_empty();
    data.split(|b| *b == b'\n')
        .filter(move |_| !empty)
        .map(strip_cr)
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Splits a byte stream into lines across reads.
///
/// A line split across reads is kept in a carry buffer until its newline arrives; only that
/// partial tail is copied, complete lines are handed out straight from the read buffer. A line
/// longer than the cap is dropped (its bytes are skipped up to the next newline) and counted.
/// At end of stream, [`LineFramer::finish`] yields a final line that had no newline.
#[derive(Debug)]
pub struct LineFramer {
    carry: Vec<u8>,
    discarding: bool,
    max_line: usize,
}

impl Default for LineFramer {
    fn default() -> Self {
        LineFramer::new(MAX_LINE)
    }
}

impl LineFramer {
    /// A framer dropping lines longer than `max_line` bytes (newline excluded).
    pub fn new(max_line: usize) -> LineFramer {
        LineFramer {
            carry: Vec::new(),
            discarding: false,
            max_line,
        }
    }

    /// Bytes held for an unfinished line.
    pub fn pending(&self) -> usize {
        self.carry.len()
    }

    /// Hands every complete line of `data` (plus what was carried) to `on_line`, without its
    /// `\n` or `\r\n`, and keeps the unfinished tail. Returns how many over-long lines were
    /// dropped.
    pub fn feed(&mut self, mut data: &[u8], mut on_line: impl FnMut(&[u8])) -> usize {
        let mut too_long = 0;
        // Finish the carried line (or the line being skipped) first.
        if self.discarding || !self.carry.is_empty() {
            match memchr::memchr(b'\n', data) {
                None => {
                    if !self.discarding {
                        if self.carry.len() + data.len() > self.max_line + 1 {
                            // +1: a trailing `\r` may still be cut off.
                            self.carry.clear();
                            self.discarding = true;
                            too_long += 1;
                        } else {
                            self.carry.extend_from_slice(data);
                        }
                    }
                    return too_long;
                }
                Some(nl) => {
                    if self.discarding {
                        self.discarding = false;
                    } else {
                        self.carry.extend_from_slice(&data[..nl]);
                        let line = strip_cr(&self.carry);
                        if line.len() > self.max_line {
                            too_long += 1;
                        } else {
                            on_line(line);
                        }
                        self.carry.clear();
                    }
                    data = &data[nl + 1..];
                }
            }
        }
        // Complete lines straight from `data`.
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', data) {
            let line = strip_cr(&data[start..nl]);
            if line.len() > self.max_line {
                too_long += 1;
            } else {
                on_line(line);
            }
            start = nl + 1;
        }
        let tail = &data[start..];
        if tail.len() > self.max_line + 1 {
            self.discarding = true;
            too_long += 1;
        } else {
            self.carry.extend_from_slice(tail);
        }
        too_long
    }

    /// End of stream: hands out a final line that had no newline (a client may close right
    /// after its last line). Returns 1 if that line was too long (or being skipped), else 0.
    pub fn finish(&mut self, mut on_line: impl FnMut(&[u8])) -> usize {
        let was_discarding = std::mem::take(&mut self.discarding);
        let line = strip_cr(&self.carry);
        let too_long = if was_discarding || line.len() > self.max_line {
            usize::from(!was_discarding)
        } else {
            if !line.is_empty() {
                on_line(line);
            }
            0
        };
        self.carry.clear();
        too_long
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(line: &str) -> Sample<'_> {
        parse_line(line.as_bytes())
            .unwrap_or_else(|e| panic!("{line:?}: {e}"))
            .unwrap_or_else(|| panic!("{line:?} is blank"))
    }

    fn tags(line: &str) -> Vec<(String, String)> {
        sample(line)
            .tags()
            .filter_map(|t| match t {
                Tag::Pair(k, v) => Some((
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )),
                Tag::Invalid(_) => None,
            })
            .collect()
    }

    #[test]
    fn parses_path_value_and_integer_seconds_exactly() {
        let s = sample("servers.web-1.cpu.load 0.75 1700000000");
        assert_eq!(s.name, b"servers.web-1.cpu.load");
        assert_eq!(s.tag_text, b"");
        assert_eq!(s.value, 0.75);
        assert_eq!(s.time_ns, Some(1_700_000_000_000_000_000));
    }

    #[test]
    fn reads_fractional_seconds_to_the_nanosecond() {
        assert_eq!(
            sample("a 1 1700000000.123456789").time_ns,
            Some(1_700_000_000_123_456_789)
        );
        assert_eq!(
            sample("a 1 1700000000.5").time_ns,
            Some(1_700_000_000_500_000_000)
        );
        // Digits below a nanosecond are truncated, as Go's int64(ts*1e9) truncates.
        assert_eq!(sample("a 1 1.0000000019").time_ns, Some(1_000_000_001));
        assert_eq!(sample("a 1 .5").time_ns, Some(500_000_000));
        assert_eq!(sample("a 1 -1.5").time_ns, Some(-1_500_000_000));
        assert_eq!(sample("a 1 1.7e9").time_ns, Some(1_700_000_000_000_000_000));
    }

    #[test]
    fn a_missing_or_minus_one_or_n_timestamp_means_now() {
        assert_eq!(sample("a.b 3").time_ns, None);
        assert_eq!(sample("a.b 3 -1").time_ns, None);
        assert_eq!(sample("a.b 3 N").time_ns, None);
    }

    #[test]
    fn accepts_go_float_forms_for_the_value() {
        for (text, want) in [
            ("42", 42.0),
            ("-3.5", -3.5),
            ("+.5", 0.5),
            ("1e3", 1000.0),
            ("5.", 5.0),
            ("Inf", f64::INFINITY),
            ("-infinity", f64::NEG_INFINITY),
        ] {
            assert_eq!(sample(&format!("m {text} 1")).value, want, "{text}");
        }
    }

    #[test]
    fn refuses_nan_overflowing_and_non_numeric_values() {
        assert_eq!(parse_line(b"m NaN 1"), Err(LineError::NanValue));
        assert!(matches!(
            parse_line(b"m 1e400 1"),
            Err(LineError::BadValue(_))
        ));
        assert!(
            matches!(parse_line(b"m 12abc 1"), Err(LineError::BadValue(e)) if e.as_str() == "12abc")
        );
        assert!(matches!(
            parse_line(b"m \xff 1"),
            Err(LineError::BadValue(_))
        ));
    }

    #[test]
    fn refuses_bad_and_out_of_range_timestamps() {
        assert!(matches!(
            parse_line(b"m 1 yesterday"),
            Err(LineError::BadTimestamp(_))
        ));
        assert!(matches!(
            parse_line(b"m 1 1700000000000"),
            Err(LineError::TimestampOutOfRange(_))
        ));
        assert!(matches!(
            parse_line(b"m 1 1e300"),
            Err(LineError::TimestampOutOfRange(_))
        ));
        assert!(matches!(
            parse_line(b"m 1 inf"),
            Err(LineError::BadTimestamp(_))
        ));
        assert!(matches!(
            parse_line(b"m 1 99999999999999999999999"),
            Err(LineError::TimestampOutOfRange(_))
        ));
    }

    #[test]
    fn counts_fields_of_malformed_lines() {
        assert_eq!(parse_line(b"lonely"), Err(LineError::FieldCount(1)));
        assert_eq!(parse_line(b"a 1 2 3"), Err(LineError::FieldCount(4)));
        assert_eq!(parse_line(b"a 1 2 3 4"), Err(LineError::FieldCount(5)));
        assert_eq!(parse_line(b";k=v 1 2"), Err(LineError::EmptyName));
    }

    #[test]
    fn tolerates_runs_of_spaces_tabs_and_surrounding_whitespace() {
        let s = sample("  a.b\t 2   1700000000 \r");
        assert_eq!(
            (s.name, s.value, s.time_ns),
            (&b"a.b"[..], 2.0, Some(1_700_000_000_000_000_000))
        );
    }

    #[test]
    fn blank_lines_are_not_samples() {
        assert_eq!(parse_line(b""), Ok(None));
        assert_eq!(parse_line(b" \t\r"), Ok(None));
    }

    #[test]
    fn reads_graphite_tags_from_the_path() {
        let s = sample("disk.used;datacenter=dc1;rack=a1;server=web01 42 1700000000");
        assert_eq!(s.name, b"disk.used");
        assert_eq!(
            tags("disk.used;datacenter=dc1;rack=a1;server=web01 42 1700000000"),
            vec![
                ("datacenter".into(), "dc1".into()),
                ("rack".into(), "a1".into()),
                ("server".into(), "web01".into())
            ]
        );
        // `=` inside a value is kept.
        assert_eq!(tags("m;q=a=b 1 1"), vec![("q".into(), "a=b".into())]);
    }

    #[test]
    fn marks_tags_without_key_value_as_invalid_and_keeps_the_rest() {
        let s = sample("m;good=1;novalue;=v;k=;;x=y 1 1");
        let items: Vec<Tag<'_>> = s.tags().collect();
        assert_eq!(
            items,
            vec![
                Tag::Pair(b"good", b"1"),
                Tag::Invalid(b"novalue"),
                Tag::Invalid(b"=v"),
                Tag::Invalid(b"k="),
                Tag::Invalid(b""),
                Tag::Pair(b"x", b"y"),
            ]
        );
        assert_eq!(
            sample("m; 1 1").tags().count(),
            0,
            "nothing after ';' is no tag"
        );
    }

    #[test]
    fn splits_datagrams_on_lf_and_crlf_keeping_an_unterminated_last_line() {
        let lines: Vec<&[u8]> = split_lines(b"a 1 1\r\nb 2 2\nc 3 3").collect();
        assert_eq!(lines, vec![&b"a 1 1"[..], b"b 2 2", b"c 3 3"]);
        let lines: Vec<&[u8]> = split_lines(b"a 1 1\n\nb 2 2\n").collect();
        assert_eq!(lines, vec![&b"a 1 1"[..], b"", b"b 2 2"]);
        assert_eq!(split_lines(b"").count(), 0);
        assert_eq!(split_lines(b"\n").count(), 0);
    }

    fn frame(framer: &mut LineFramer, chunks: &[&[u8]]) -> (Vec<String>, usize) {
        let mut out = Vec::new();
        let mut too_long = 0;
        for c in chunks {
            too_long += framer.feed(c, |l| out.push(String::from_utf8_lossy(l).into_owned()));
        }
        too_long += framer.finish(|l| out.push(String::from_utf8_lossy(l).into_owned()));
        (out, too_long)
    }

    #[test]
    fn framer_joins_a_line_split_across_reads() {
        let mut f = LineFramer::new(100);
        let (lines, too_long) = frame(
            &mut f,
            &[b"a.b 1 17", b"00000000\r", b"\nc.d 2 1700000001\nfinal 3"],
        );
        assert_eq!(
            lines,
            vec!["a.b 1 1700000000", "c.d 2 1700000001", "final 3"]
        );
        assert_eq!(too_long, 0);
        assert_eq!(f.pending(), 0);
    }

    #[test]
    fn framer_splits_at_every_byte_boundary_identically() {
        let stream = b"x.y 1 1\r\nlong.name;t=v 2.5 1700000000.25\n\nz 3\n";
        let whole = frame(&mut LineFramer::new(64), &[stream]).0;
        for cut in 0..stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(
                frame(&mut LineFramer::new(64), &[a, b]).0,
                whole,
                "cut {cut}"
            );
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(frame(&mut LineFramer::new(64), &bytes).0, whole);
    }

    #[test]
    fn framer_drops_over_long_lines_and_resumes_after_their_newline() {
        let long = vec![b'x'; 50];
        let mut f = LineFramer::new(10);
        // A long line inside one read.
        let mut stream = b"ok 1\n".to_vec();
        stream.extend_from_slice(&long);
        stream.extend_from_slice(b"\nafter 2\n");
        assert_eq!(
            frame(&mut f, &[&stream]),
            (vec!["ok 1".into(), "after 2".into()], 1)
        );
        // A long line spread over many reads, counted once.
        let chunks: Vec<&[u8]> = long.chunks(7).collect();
        let mut all = vec![&b"ok 1\nxx"[..]];
        all.extend(chunks);
        all.push(b"\nafter 2\n");
        assert_eq!(
            frame(&mut f, &all),
            (vec!["ok 1".into(), "after 2".into()], 1)
        );
        // A long unterminated line at the end of the stream.
        assert_eq!(frame(&mut f, &[&long]), (vec![], 1));
        // Exactly the cap is fine, with or without `\r`.
        assert_eq!(
            frame(&mut f, &[b"0123456789\r", b"\n0123456789"]),
            (vec!["0123456789".into(), "0123456789".into()], 0)
        );
    }
}
