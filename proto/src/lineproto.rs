//! Line protocol decoding and encoding with Datakit's rules.
//!
//! The decoder is a single forward scan over the body bytes: it never backtracks, never
//! panics, and allocates only the output strings. Its syntax is the one of Datakit's fork of
//! the InfluxDB 1.x parser:
//!
//! ```text
//! measurement[,tag=value...] field=value[,field=value...] [timestamp]
//! ```
//!
//! * Lines are separated by `\n` (a `\r` before it is ignored); blank lines and lines whose
//!   first non-blank byte is `#` are skipped. A quoted string field may contain raw newlines.
//! * Escapes: `\,` and `\ ` in the measurement; `\,`, `\=` and `\ ` in tag keys, tag values
//!   and field keys (`\"` too in field keys); `\"` and `\\` in string fields. Any other
//!   backslash is kept as it is, as in Datakit.
//! * Values: float `3.14`, `3`, `-1e3`; int `42i`; uint `42u`; string `"text"`; bool
//!   `t`/`T`/`true`/`True`/`TRUE` and the `f` forms; bytes `"<base64>"b`; homogeneous arrays
//!   of those, `[1i,2i]`, `["a","b"]`, `[]`.
//! * A tag and a field with the same key: the tag wins (as Datakit's `SetTag`); a field key
//!   given twice: the last value wins; a tag key given twice is an error.
//! * A missing or zero timestamp is replaced by [`DecodeOptions::now_ns`].

use std::collections::{HashMap, HashSet};
use std::io::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::pb::{PointRef, ValueRef};
use crate::{Point, Value};

/// Timestamp precision of a line-protocol body (`precision` query parameter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    /// Guess per point from the magnitude (Datakit's default when `precision` is absent).
    #[default]
    Auto,
    /// Nanoseconds.
    Ns,
    /// Microseconds.
    Us,
    /// Milliseconds.
    Ms,
    /// Seconds.
    S,
    /// Minutes.
    M,
    /// Hours.
    H,
}

impl Precision {
    /// Parses Datakit's `precision` values (`n`, `ns`, `u`, `us`, `ms`, `s`, `m`, `h`);
    /// anything else is nanoseconds, as in Datakit.
    pub fn from_query(s: &str) -> Precision {
        match s {
            "n" | "ns" => Precision::Ns,
            "u" | "us" => Precision::Us,
            "ms" => Precision::Ms,
            "s" => Precision::S,
            "m" => Precision::M,
            "h" => Precision::H,
            _ => Precision::Ns,
        }
    }

    /// Converts a raw timestamp in this precision to nanoseconds; `None` when the result
    /// does not fit an `i64`. [`Precision::Auto`] guesses from the magnitude as Datakit does
    /// (`ts/1e9 < 10` ⇒ s, `ts/1e12 < 10` ⇒ ms, `ts/1e15 < 10` ⇒ µs, else ns).
    pub fn to_ns(self, ts: i64) -> Option<i64> {
        let factor: i64 = match self {
            Precision::Auto => {
                if ts / 1_000_000_000 < 10 {
                    1_000_000_000
                } else if ts / 1_000_000_000_000 < 10 {
                    1_000_000
                } else if ts / 1_000_000_000_000_000 < 10 {
                    1_000
                } else {
                    1
                }
            }
            Precision::Ns => 1,
            Precision::Us => 1_000,
            Precision::Ms => 1_000_000,
            Precision::S => 1_000_000_000,
            Precision::M => 60_000_000_000,
            Precision::H => 3_600_000_000_000,
        };
        ts.checked_mul(factor)
    }
}

/// Options for [`decode`].
#[derive(Clone, Debug)]
pub struct DecodeOptions {
    /// Precision of timestamps in the body.
    pub precision: Precision,
    /// Time (ns) given to points without a timestamp.
    pub now_ns: i64,
}

impl DecodeOptions {
    /// Options with an explicit precision and receive time.
    pub fn new(precision: Precision, now_ns: i64) -> Self {
        DecodeOptions { precision, now_ns }
    }

    /// The time (ns) of a point whose raw timestamp is `ts` (`None` or 0: [`Self::now_ns`]).
    /// `None` when the timestamp overflows in this precision.
    pub fn point_time(&self, ts: Option<i64>) -> Option<i64> {
        match ts {
            None | Some(0) => Some(self.now_ns),
            Some(ts) => self.precision.to_ns(ts),
        }
    }
}

impl Default for DecodeOptions {
    /// [`Precision::Auto`], and the current system time as the receive time.
    fn default() -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        DecodeOptions {
            precision: Precision::Auto,
            now_ns: now,
        }
    }
}

/// A body that is not valid line protocol.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("lineproto parse error: line {line}, column {column}: {message}")]
pub struct LpError {
    /// 1-based line number.
    pub line: usize,
    /// 1-based byte column in that line.
    pub column: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

impl LpError {
    /// Builds the error for byte offset `pos` of `body`, counting lines and columns.
    fn at(body: &[u8], pos: usize, message: String) -> LpError {
        let pos = pos.min(body.len());
        let before = &body[..pos];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        LpError {
            line,
            column: pos - line_start + 1,
            message,
        }
    }
}

/// An error at a byte offset, turned into an [`LpError`] once, at the top.
struct PosError {
    pos: usize,
    message: String,
}

type PResult<T> = Result<T, PosError>;

fn perr<T>(pos: usize, message: impl Into<String>) -> PResult<T> {
    Err(PosError {
        pos,
        message: message.into(),
    })
}

/// Byte classes for the scanners: bit set = the byte stops the scan of that part.
const STOP_MEASUREMENT: u8 = 1;
const STOP_TAG_KEY: u8 = 2;
const STOP_TAG_VALUE: u8 = 4;
const STOP_FIELD_KEY: u8 = 8;
const STOP_STRING: u8 = 16;
const STOP_TOKEN: u8 = 32;
const STOP_ARRAY_TOKEN: u8 = 64;

const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut c = 0;
        if b == b'\\' {
            c |= STOP_MEASUREMENT | STOP_TAG_KEY | STOP_TAG_VALUE | STOP_FIELD_KEY | STOP_STRING;
        }
        if b == b',' || b == b' ' || b == b'\n' {
            c |= STOP_MEASUREMENT | STOP_TAG_KEY | STOP_TAG_VALUE | STOP_FIELD_KEY;
        }
        if b == b'=' {
            c |= STOP_TAG_KEY | STOP_TAG_VALUE | STOP_FIELD_KEY;
        }
        if b == b'"' {
            c |= STOP_STRING;
        }
        if b == b',' || b == b' ' || b == b'\t' || b == b'\n' || b == b'\r' {
            c |= STOP_TOKEN | STOP_ARRAY_TOKEN;
        }
        if b == b']' {
            c |= STOP_ARRAY_TOKEN;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// Decodes a line-protocol body into points.
///
/// # Errors
/// [`LpError`] naming the first bad line and position.
pub fn decode(body: &[u8], opts: &DecodeOptions) -> Result<Vec<Point>, LpError> {
    let mut parser = Parser::new(body, opts);
    parser
        .run()
        .map_err(|e| LpError::at(body, e.pos, e.message))
}

/// Decodes a line-protocol body a bounded number of points at a time, so the points of a
/// huge body never all exist at once; the points and errors are exactly those of [`decode`].
pub struct ChunkDecoder<'a> {
    parser: Parser<'a>,
    failed: bool,
}

impl<'a> ChunkDecoder<'a> {
    /// A decoder over `body`.
    pub fn new(body: &'a [u8], opts: &'a DecodeOptions) -> Self {
        ChunkDecoder {
            parser: Parser::new(body, opts),
            failed: false,
        }
    }

    /// The next at most `max_points` points, stopping early after the point that crosses
    /// `max_bytes` of text; `None` at the end of the body or after an error.
    ///
    /// # Errors
    /// [`LpError`] naming the bad line; the chunks before it were good.
    pub fn next_chunk(
        &mut self,
        max_points: usize,
        max_bytes: usize,
    ) -> Option<Result<Vec<Point>, LpError>> {
        if self.failed {
            return None;
        }
        let mut out = Vec::with_capacity(max_points.clamp(1, 4096));
        let until = self.parser.pos.saturating_add(max_bytes.max(1));
        match self.parser.run_some(&mut out, max_points.max(1), until) {
            Ok(()) if out.is_empty() => None,
            Ok(()) => Some(Ok(out)),
            Err(e) => {
                self.failed = true;
                Some(Err(LpError::at(self.parser.buf, e.pos, e.message)))
            }
        }
    }

    /// Bytes of the body consumed so far.
    pub fn position(&self) -> usize {
        self.parser.pos
    }
}

struct Parser<'a> {
    buf: &'a [u8],
    /// The body as text when it is valid UTF-8 (then every slice between ASCII delimiters
    /// is too, and needs no further check).
    text: Option<&'a str>,
    pos: usize,
    opts: &'a DecodeOptions,
    /// Reused buffer for unescaping.
    scratch: Vec<u8>,
    /// Reused: byte offset of each tag key of the current line.
    tag_pos: Vec<usize>,
    /// Reused: the tags of the current line.
    tag_buf: Vec<(String, String)>,
    /// Reused: the fields of the current line.
    field_buf: Vec<(String, Value)>,
}

impl<'a> Parser<'a> {
    fn new(body: &'a [u8], opts: &'a DecodeOptions) -> Self {
        Parser {
            buf: body,
            text: std::str::from_utf8(body).ok(),
            pos: 0,
            opts,
            scratch: Vec::new(),
            tag_pos: Vec::new(),
            tag_buf: Vec::new(),
            field_buf: Vec::new(),
        }
    }
}

impl Parser<'_> {
    fn run(&mut self) -> PResult<Vec<Point>> {
        let lines = self.buf.iter().filter(|&&b| b == b'\n').count() + 1;
        let mut out = Vec::with_capacity(lines.min(self.buf.len() / 8 + 1));
        while self.pos < self.buf.len() {
            self.skip_blanks();
            match self.peek() {
                None => break,
                Some(b'\n') => self.pos += 1,
                Some(b'\r') if self.at_eol() => self.consume_eol(),
                Some(b'#') => self.skip_line(),
                Some(_) => out.push(self.point()?),
            }
        }
        Ok(out)
    }

    /// As [`Self::run`], stopping after `max` points or once past byte `until`.
    fn run_some(&mut self, out: &mut Vec<Point>, max: usize, until: usize) -> PResult<()> {
        while self.pos < self.buf.len() && out.len() < max && self.pos < until {
            self.skip_blanks();
            match self.peek() {
                None => break,
                Some(b'\n') => self.pos += 1,
                Some(b'\r') if self.at_eol() => self.consume_eol(),
                Some(b'#') => self.skip_line(),
                Some(_) => out.push(self.point()?),
            }
        }
        Ok(())
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// Skips spaces, tabs and NULs (as Datakit's parser does before each part).
    #[inline]
    fn skip_blanks(&mut self) {
        while let Some(b' ' | b'\t' | 0) = self.peek() {
            self.pos += 1;
        }
    }

    /// True at the end of the body, at `\n`, or at a `\r` that ends the line.
    #[inline]
    fn at_eol(&self) -> bool {
        match self.peek() {
            None | Some(b'\n') => true,
            Some(b'\r') => matches!(self.buf.get(self.pos + 1), None | Some(b'\n')),
            _ => false,
        }
    }

    /// Consumes the end of line the parser is at (see [`Self::at_eol`]).
    #[inline]
    fn consume_eol(&mut self) {
        if self.peek() == Some(b'\r') {
            self.pos += 1;
        }
        if self.peek() == Some(b'\n') {
            self.pos += 1;
        }
    }

    fn skip_line(&mut self) {
        match self.buf[self.pos..].iter().position(|&b| b == b'\n') {
            Some(i) => self.pos += i + 1,
            None => self.pos = self.buf.len(),
        }
    }

    /// Scans until an unescaped byte of class `stop`; returns whether a backslash was seen.
    #[inline]
    fn scan(&mut self, stop: u8) -> bool {
        let buf = self.buf;
        let mut pos = self.pos;
        let mut escaped = false;
        while pos < buf.len() {
            let b = buf[pos];
            if CLASS[b as usize] & stop == 0 {
                pos += 1;
            } else if b == b'\\' {
                escaped = true;
                // An escaped newline still ends the line: never skip over it.
                pos += if buf.get(pos + 1).is_some_and(|&n| n != b'\n') {
                    2
                } else {
                    1
                };
            } else {
                break;
            }
        }
        self.pos = pos.min(buf.len());
        escaped
    }

    fn point(&mut self) -> PResult<Point> {
        let line_start = self.pos;
        let name = self.measurement()?;
        self.tag_buf.clear();
        self.field_buf.clear();
        if self.peek() == Some(b',') {
            self.pos += 1;
            self.tags()?;
        }
        // Now at the space before the fields. Only spaces separate them: a tab or NUL there
        // starts the first field key, so every key the encoder writes reads back the same.
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
        if self.at_eol() {
            return perr(
                self.pos,
                "missing fields: expected a space then field=value after the measurement and tags",
            );
        }
        self.fields()?;
        self.skip_blanks();
        let ts = if self.at_eol() {
            None
        } else {
            Some(self.timestamp()?)
        };
        self.skip_blanks();
        if !self.at_eol() {
            return perr(
                self.pos,
                "unexpected text after the timestamp: expected the end of the line",
            );
        }
        self.consume_eol();
        let Some(time) = self.opts.point_time(ts) else {
            return perr(
                line_start,
                format!(
                    "timestamp {} overflows nanoseconds with precision {:?}",
                    ts.unwrap_or_default(),
                    self.opts.precision
                ),
            );
        };
        let mut point = Point {
            name,
            tags: self.tag_buf.drain(..).collect(),
            fields: self.field_buf.drain(..).collect(),
            time,
        };
        dedupe(&mut point);
        Ok(point)
    }

    fn measurement(&mut self) -> PResult<String> {
        let start = self.pos;
        if self.peek() == Some(b',') {
            return perr(
                start,
                "missing measurement: a line must start with its name",
            );
        }
        let escaped = self.scan(STOP_MEASUREMENT);
        let end = self.pos;
        match self.peek() {
            Some(b',' | b' ') => {}
            _ => {
                return perr(
                    end,
                    "missing fields: expected a space then field=value after the measurement",
                );
            }
        }
        Ok(self.text(start, end, escaped, b", "))
    }

    fn tags(&mut self) -> PResult<()> {
        self.tag_pos.clear();
        loop {
            let key_start = self.pos;
            let escaped = self.scan(STOP_TAG_KEY);
            let key_end = self.pos;
            if key_end == key_start {
                return perr(key_start, "missing tag key: expected key=value after ','");
            }
            if self.peek() != Some(b'=') {
                let key = String::from_utf8_lossy(&self.buf[key_start..key_end]).into_owned();
                return perr(key_end, format!("expected '=' after tag key {key:?}"));
            }
            let key = self.text(key_start, key_end, escaped, b",= ");
            self.pos += 1;
            let value_start = self.pos;
            let escaped = self.scan(STOP_TAG_VALUE);
            let value_end = self.pos;
            match self.peek() {
                Some(b'=') => {
                    return perr(
                        value_end,
                        format!("unescaped '=' in the value of tag {key:?}: write it as \\="),
                    );
                }
                Some(b',' | b' ') if value_end > value_start => {}
                Some(b',' | b' ') => {
                    return perr(value_start, format!("missing value of tag {key:?}"));
                }
                _ => {
                    return perr(
                        value_end,
                        "missing fields: expected a space then field=value after the tags",
                    );
                }
            }
            let value = self.text(value_start, value_end, escaped, b",= ");
            self.tag_buf.push((key, value));
            self.tag_pos.push(key_start);
            if self.peek() == Some(b',') {
                self.pos += 1;
            } else {
                return match duplicate(&self.tag_buf) {
                    Some(i) => perr(
                        self.tag_pos[i],
                        format!("duplicate tag key {:?}", self.tag_buf[i].0),
                    ),
                    None => Ok(()),
                };
            }
        }
    }

    fn fields(&mut self) -> PResult<()> {
        loop {
            let key_start = self.pos;
            let escaped = self.scan(STOP_FIELD_KEY);
            let key_end = self.pos;
            if self.peek() != Some(b'=') {
                let key = String::from_utf8_lossy(&self.buf[key_start..key_end]).into_owned();
                return perr(key_end, format!("expected '=' after field key {key:?}"));
            }
            if key_end == key_start {
                return perr(key_start, "missing field key before '='");
            }
            let key = self.text(key_start, key_end, escaped, b",= \"");
            self.pos += 1;
            let value = self.value(&key, false)?;
            self.field_buf.push((key, value));
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b' ' | b'\t') => return Ok(()),
                _ if self.at_eol() => return Ok(()),
                _ => {
                    return perr(
                        self.pos,
                        "expected ',' before the next field or a space before the timestamp",
                    );
                }
            }
        }
    }

    /// Parses one field value at the current position.
    fn value(&mut self, key: &str, in_array: bool) -> PResult<Value> {
        let start = self.pos;
        match self.peek() {
            Some(b'"') => self.quoted(key),
            Some(b'[') if in_array => perr(
                start,
                format!("nested array in field {key:?}: arrays hold basic values only"),
            ),
            Some(b'[') => self.array(key),
            Some(b't' | b'T' | b'f' | b'F') => {
                let token = self.token(in_array);
                match token {
                    b"t" | b"T" | b"true" | b"True" | b"TRUE" => Ok(Value::B(true)),
                    b"f" | b"F" | b"false" | b"False" | b"FALSE" => Ok(Value::B(false)),
                    _ => perr(
                        start,
                        format!(
                            "invalid boolean in field {key:?}: expected t, T, true, True, TRUE, f, F, false, False or FALSE"
                        ),
                    ),
                }
            }
            Some(b'-' | b'0'..=b'9' | b'.') => {
                let token = self.token(in_array);
                number(token).map_err(|what| PosError {
                    pos: start,
                    message: format!("invalid {what} in field {key:?}"),
                })
            }
            _ => perr(
                start,
                format!(
                    "missing or invalid value of field {key:?}: expected a number, 42i, 42u, \"string\", t/f, \"base64\"b or [array]"
                ),
            ),
        }
    }

    /// Scans an unquoted value (number or boolean) and returns its bytes.
    #[inline]
    fn token(&mut self, in_array: bool) -> &[u8] {
        let stop = if in_array {
            STOP_ARRAY_TOKEN
        } else {
            STOP_TOKEN
        };
        let start = self.pos;
        let buf = self.buf;
        let mut pos = start;
        while pos < buf.len() && CLASS[buf[pos] as usize] & stop == 0 {
            pos += 1;
        }
        self.pos = pos;
        &buf[start..pos]
    }

    /// A `"string"` or `"base64"b` value.
    fn quoted(&mut self, key: &str) -> PResult<Value> {
        let open = self.pos;
        self.pos += 1;
        let start = self.pos;
        let buf = self.buf;
        let mut pos = start;
        let mut escaped = false;
        loop {
            while pos < buf.len() && CLASS[buf[pos] as usize] & STOP_STRING == 0 {
                pos += 1;
            }
            match buf.get(pos) {
                None => {
                    return perr(
                        open,
                        format!("unterminated string in field {key:?}: missing the closing '\"'"),
                    );
                }
                Some(b'\\') => {
                    escaped = true;
                    pos += 2;
                }
                Some(_) => break,
            }
        }
        let end = pos;
        self.pos = pos + 1;
        if self.peek() == Some(b'b') {
            self.pos += 1;
            let raw = &buf[start..end];
            return match BASE64.decode(raw) {
                Ok(bytes) => Ok(Value::D(bytes)),
                Err(e) => perr(
                    start,
                    format!("invalid base64 in bytes field {key:?}: {e}; expected \"<base64>\"b"),
                ),
            };
        }
        if !escaped {
            return Ok(Value::S(self.string(start, end)));
        }
        self.scratch.clear();
        let mut i = start;
        while i < end {
            let b = buf[i];
            if b == b'\\' && i + 1 < end && matches!(buf[i + 1], b'"' | b'\\') {
                self.scratch.push(buf[i + 1]);
                i += 2;
            } else {
                self.scratch.push(b);
                i += 1;
            }
        }
        Ok(Value::S(lossy(&self.scratch)))
    }

    /// A `[v,v,...]` array of one basic type.
    fn array(&mut self, key: &str) -> PResult<Value> {
        let open = self.pos;
        self.pos += 1;
        let mut items: Vec<Value> = Vec::new();
        self.skip_spaces();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::A(items));
        }
        loop {
            let item_start = self.pos;
            if self.at_eol() {
                return perr(
                    open,
                    format!("unterminated array in field {key:?}: missing the closing ']'"),
                );
            }
            let item = self.value(key, true)?;
            if let Some(first) = items.first()
                && std::mem::discriminant(first) != std::mem::discriminant(&item)
            {
                return perr(
                    item_start,
                    format!(
                        "mixed array in field {key:?}: a {} after a {}; all elements must have one type",
                        item.type_name(),
                        first.type_name()
                    ),
                );
            }
            items.push(item);
            self.skip_spaces();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_spaces();
                }
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::A(items));
                }
                _ => {
                    return perr(
                        self.pos,
                        format!("expected ',' or ']' in the array of field {key:?}"),
                    );
                }
            }
        }
    }

    fn skip_spaces(&mut self) {
        while let Some(b' ' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }

    fn timestamp(&mut self) -> PResult<i64> {
        let start = self.pos;
        let token = self.token(false);
        parse_i64(token).ok_or_else(|| PosError {
            pos: start,
            message: "invalid timestamp: expected an integer (Unix time) at the end of the line"
                .to_string(),
        })
    }

    /// `buf[start..end]` as a string (both ends sit next to ASCII delimiters).
    #[inline]
    fn string(&self, start: usize, end: usize) -> String {
        match self.text.and_then(|t| t.get(start..end)) {
            Some(s) => s.to_owned(),
            None => lossy(&self.buf[start..end]),
        }
    }

    /// The text of `buf[start..end]`, with `\x` turned into `x` for each `x` in `unescape`.
    fn text(&mut self, start: usize, end: usize, escaped: bool, unescape: &[u8]) -> String {
        if !escaped {
            return self.string(start, end);
        }
        let raw = &self.buf[start..end];
        self.scratch.clear();
        let mut i = 0;
        while i < raw.len() {
            let b = raw[i];
            if b == b'\\' && i + 1 < raw.len() {
                let n = raw[i + 1];
                if unescape.contains(&n) {
                    self.scratch.push(n);
                } else {
                    self.scratch.push(b);
                    self.scratch.push(n);
                }
                i += 2;
            } else {
                self.scratch.push(b);
                i += 1;
            }
        }
        lossy(&self.scratch)
    }
}

/// Bytes as a string; invalid UTF-8 sequences become U+FFFD.
#[inline]
fn lossy(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Parses `-?[0-9]+` into an `i64`.
fn parse_i64(token: &[u8]) -> Option<i64> {
    let (neg, digits) = match token.first() {
        Some(b'-') => (true, &token[1..]),
        _ => (false, token),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let d = i64::from(d - b'0');
        v = v.checked_mul(10)?;
        v = if neg {
            v.checked_sub(d)?
        } else {
            v.checked_add(d)?
        };
    }
    Some(v)
}

/// Parses `[0-9]+` into a `u64`.
fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(v)
}

/// A numeric token: `42i`, `42u` or a float; on error, the kind of number that was wrong.
fn number(token: &[u8]) -> Result<Value, &'static str> {
    match token.last() {
        Some(b'i') => parse_i64(&token[..token.len() - 1])
            .map(Value::I)
            .ok_or("integer (expected -?digits followed by i, within int64)"),
        Some(b'u') => parse_u64(&token[..token.len() - 1])
            .map(Value::U)
            .ok_or("unsigned integer (expected digits followed by u, within uint64)"),
        _ => parse_f64(token)
            .map(Value::F)
            .ok_or("float (expected digits with an optional '.', exponent and leading '-')"),
    }
}

/// Parses a float in the syntax Datakit accepts: `-?` digits, one `.`, `e`/`E` with a sign.
fn parse_f64(token: &[u8]) -> Option<f64> {
    let body = token.strip_prefix(b"-").unwrap_or(token);
    let mut digits = 0;
    let mut dots = 0;
    let mut exp = false;
    for (i, &b) in body.iter().enumerate() {
        match b {
            b'0'..=b'9' => digits += 1,
            b'.' if !exp => dots += 1,
            b'e' | b'E' if i > 0 && !exp => exp = true,
            b'+' | b'-' if i > 0 && matches!(body[i - 1], b'e' | b'E') => {}
            _ => return None,
        }
    }
    if digits == 0 || dots > 1 {
        return None;
    }
    let s = std::str::from_utf8(token).ok()?;
    let v: f64 = s.parse().ok()?;
    v.is_finite().then_some(v)
}

/// The index of the second occurrence of a repeated key, if any.
fn duplicate(kvs: &[(String, String)]) -> Option<usize> {
    if kvs.len() <= 16 {
        (1..kvs.len()).find(|&i| kvs[..i].iter().any(|(k, _)| *k == kvs[i].0))
    } else {
        let mut seen: HashSet<&str> = HashSet::with_capacity(kvs.len());
        kvs.iter().position(|(k, _)| !seen.insert(k.as_str()))
    }
}

/// Applies Datakit's key rules after a line: a tag hides a field of the same key, and the
/// last of repeated field keys wins.
fn dedupe(point: &mut Point) {
    let n = point.fields.len();
    if n > 1 {
        if n <= 16 {
            let mut i = 0;
            while i < point.fields.len() {
                let dup = point.fields[i + 1..]
                    .iter()
                    .any(|(k, _)| *k == point.fields[i].0);
                if dup {
                    point.fields.remove(i);
                } else {
                    i += 1;
                }
            }
        } else {
            let mut last: HashMap<&str, usize> = HashMap::with_capacity(n);
            for (i, (k, _)) in point.fields.iter().enumerate() {
                last.insert(k.as_str(), i);
            }
            if last.len() != n {
                let keep: Vec<bool> = point
                    .fields
                    .iter()
                    .enumerate()
                    .map(|(i, (k, _))| last.get(k.as_str()) == Some(&i))
                    .collect();
                let mut idx = 0;
                point.fields.retain(|_| {
                    idx += 1;
                    keep[idx - 1]
                });
            }
        }
    }
    if point.tags.is_empty() {
        return;
    }
    if point.tags.len() * point.fields.len() <= 64 {
        let tags = &point.tags;
        point
            .fields
            .retain(|(k, _)| !tags.iter().any(|(t, _)| t == k));
    } else {
        let tags: HashSet<&str> = point.tags.iter().map(|(k, _)| k.as_str()).collect();
        point.fields.retain(|(k, _)| !tags.contains(k.as_str()));
    }
}

// ---------------------------------------------------------------------------------------
// Encoding
//
// One encoder serves owned [`Point`]s and [`PointRef`]s borrowed from protobuf records: both
// are read through [`EncodeValue`], so they produce the same bytes by construction.

/// A field value the encoder can write: [`Value`] and [`ValueRef`], both read as a
/// [`ValueRef`] borrowed from them.
trait EncodeValue {
    fn view(&self) -> ValueRef<'_>;
}

impl EncodeValue for Value {
    #[inline]
    fn view(&self) -> ValueRef<'_> {
        self.into()
    }
}

impl EncodeValue for ValueRef<'_> {
    #[inline]
    fn view(&self) -> ValueRef<'_> {
        self.reborrow()
    }
}

/// Appends one point as a line (without the trailing newline) to `out`.
///
/// Nothing is written for a point that has no field line protocol can carry (no fields,
/// or only non-finite floats); callers normalise points first ([`crate::normalize`]).
/// Tags with an empty key or value and fields with an empty key are skipped, and a control
/// byte (newline, NUL, CR, DEL...; tab is kept) inside the measurement, a key or a tag value is
/// written as a space, since line protocol cannot carry them.
pub fn encode_point(point: &Point, out: &mut Vec<u8>) {
    write_line(&point.name, &point.tags, &point.fields, point.time, out);
}

/// Appends a point borrowed from a protobuf record ([`crate::pb::decode_each`]) as a line:
/// exactly the bytes [`encode_point`] writes for [`PointRef::to_point`].
pub fn encode_point_ref(point: &PointRef<'_>, out: &mut Vec<u8>) {
    write_line(point.name, &point.tags, &point.fields, point.time, out);
}

/// The encoder behind [`encode_point`] and [`encode_point_ref`].
#[inline]
fn write_line<T: AsRef<str>, K: AsRef<str>, V: EncodeValue>(
    name: &str,
    tags: &[(T, T)],
    fields: &[(K, V)],
    time: i64,
    out: &mut Vec<u8>,
) {
    if !fields
        .iter()
        .any(|(k, v)| !k.as_ref().is_empty() && encodable(&v.view()))
    {
        return;
    }
    escape_into(name.as_bytes(), &ESCAPE_NAME, out);
    for (k, v) in tags {
        let (k, v) = (k.as_ref(), v.as_ref());
        if k.is_empty() || v.is_empty() {
            continue;
        }
        out.push(b',');
        escape_into(k.as_bytes(), &ESCAPE_KEY, out);
        out.push(b'=');
        escape_into(v.as_bytes(), &ESCAPE_KEY, out);
    }
    out.push(b' ');
    let mut first = true;
    for (k, v) in fields {
        let (k, v) = (k.as_ref(), v.view());
        if k.is_empty() || !encodable(&v) {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        escape_into(k.as_bytes(), &ESCAPE_KEY, out);
        out.push(b'=');
        write_value(&v, out);
    }
    out.push(b' ');
    write_i64(time, out);
}

/// Encodes points as `\n`-separated lines (no trailing newline).
pub fn encode(points: &[Point]) -> Vec<u8> {
    let mut out = Vec::with_capacity(points.iter().map(|p| p.approx_size() + 16).sum());
    for p in points {
        let mark = out.len();
        if mark > 0 {
            out.push(b'\n');
        }
        let before = out.len();
        encode_point(p, &mut out);
        if out.len() == before {
            out.truncate(mark);
        }
    }
    out
}

/// Whether line protocol can carry the value (no NaN or infinity, also inside arrays).
fn encodable(v: &ValueRef<'_>) -> bool {
    match v {
        ValueRef::F(f) => f.is_finite(),
        ValueRef::A(items) => items.iter().all(|i| encodable(&i.into())),
        _ => true,
    }
}

/// ASCII control bytes but tab (NUL, CR, LF... and DEL): line protocol cannot carry them in a
/// measurement, key or tag value, so they are written as spaces.
#[inline]
const fn is_control(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// Bytes [`escape_into`] must handle: control bytes plus the specials of a measurement.
const ESCAPE_NAME: [u8; 256] = escape_table(b", ");
/// Bytes [`escape_into`] must handle: control bytes plus the specials of a key or tag value.
const ESCAPE_KEY: [u8; 256] = escape_table(b",= ");

/// 0: written as is; 1: a control byte (written as an escaped space); 2: escaped with a
/// backslash. The space must be special in every table.
const fn escape_table(special: &[u8]) -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        if is_control(b as u8) {
            t[b] = 1;
        }
        b += 1;
    }
    let mut i = 0;
    while i < special.len() {
        t[special[i] as usize] = 2;
        i += 1;
    }
    t
}

/// Whether `s` holds a byte `table` marks: eight bytes at a time, a cheap superset test (a
/// byte below 0x21, `,`, `=` or DEL) before the exact lookup.
#[inline]
fn needs_escape(s: &[u8], table: &[u8; 256]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    #[inline]
    fn has_zero(v: u64) -> bool {
        v.wrapping_sub(ONES) & !v & HIGH != 0
    }
    let mut chunks = s.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let x = u64::from_le_bytes(w);
        let below = x.wrapping_sub(ONES * 0x21) & !x & HIGH != 0;
        let marked = below
            || has_zero(x ^ (ONES * u64::from(b',')))
            || has_zero(x ^ (ONES * u64::from(b'=')))
            || has_zero(x ^ (ONES * 0x7f));
        if marked && c.iter().any(|&b| table[b as usize] != 0) {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| table[b as usize] != 0)
}

/// Writes `s` with a backslash before each special byte of `table`; a control byte (newline,
/// NUL, CR... but not tab) becomes a space, or `_` right after a backslash (which would escape
/// a space).
#[inline]
fn escape_into(s: &[u8], table: &[u8; 256], out: &mut Vec<u8>) {
    if !needs_escape(s, table) {
        out.extend_from_slice(s);
        return;
    }
    let mut prev = 0u8;
    for &b in s {
        let b = match table[b as usize] {
            0 => b,
            // The space a control byte becomes is special in both tables.
            1 if prev == b'\\' => b'_',
            1 => {
                out.push(b'\\');
                b' '
            }
            _ => {
                out.push(b'\\');
                b
            }
        };
        prev = b;
        out.push(b);
    }
}

fn write_value(v: &ValueRef<'_>, out: &mut Vec<u8>) {
    match v {
        ValueRef::I(i) => {
            write_i64(*i, out);
            out.push(b'i');
        }
        ValueRef::U(u) => {
            write_u64(*u, out);
            out.push(b'u');
        }
        ValueRef::F(f) => write_f64(*f, out),
        ValueRef::B(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        ValueRef::S(s) => write_str(s, out),
        ValueRef::D(d) => {
            out.push(b'"');
            let start = out.len();
            out.resize(start + base64::encoded_len(d.len(), true).unwrap_or(0), 0);
            let n = BASE64.encode_slice(d, &mut out[start..]).unwrap_or(0);
            out.truncate(start + n);
            out.extend_from_slice(b"\"b");
        }
        ValueRef::A(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(&item.into(), out);
            }
            out.push(b']');
        }
    }
}

/// A string field: quoted, with `"` and `\` escaped (newlines stay raw).
fn write_str(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    if bytes.iter().any(|&b| b == b'"' || b == b'\\') {
        for &b in bytes {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
    } else {
        out.extend_from_slice(bytes);
    }
    out.push(b'"');
}

/// Writes a finite float in its shortest round-trip decimal form without an exponent
/// (as Go's `strconv.FormatFloat(f, 'f', -1, 64)`), so it decodes back as a float: exactly
/// what `Display` writes. Values with at most [`MAX_FRACTION_DIGITS`] decimals whose scaled
/// value stays below 2^50 are written without `core::fmt`; the rest go through `Display`.
fn write_f64(f: f64, out: &mut Vec<u8>) {
    if !write_f64_short(f, out) {
        let _ = write!(out, "{f}");
    }
}

/// Fraction digits [`write_f64_short`] tries before giving up.
const MAX_FRACTION_DIGITS: usize = 9;
/// Powers of ten up to 10^MAX_FRACTION_DIGITS (exact in f64).
const POW10: [f64; MAX_FRACTION_DIGITS + 1] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];
/// 2^50: below it, `|f|·10^k` is within 1/8 of a candidate integer and its rounding error
/// is at most 1/16, so rounding finds the candidate; and the gap between doubles near `f`,
/// times 10^k, stays under 1.
const EXACT_LIMIT: f64 = 1_125_899_906_842_624.0;

/// The short form of `f`, when one with at most [`MAX_FRACTION_DIGITS`] decimals reads back
/// as `f`; false (nothing written) otherwise.
///
/// Why this equals `Display`: for the smallest `k` such that some integer `m` has
/// `m / 10^k == f` (parsing is correctly rounded, as is the division of two exact values),
/// the decimal `m·10^-k` is a shortest round-trip representation; and as `|f|·10^k < 2^50`,
/// the gap between doubles near `f` is below `10^-k`, so it is the only one of that length
/// and therefore the one `Display` prints. Trailing zeros cannot occur (a smaller `k` would
/// have matched).
fn write_f64_short(f: f64, out: &mut Vec<u8>) -> bool {
    let a = f.abs();
    if !a.is_finite() {
        return false;
    }
    for (k, &scale) in POW10.iter().enumerate() {
        let scaled = a * scale;
        if scaled >= EXACT_LIMIT {
            return false;
        }
        let m = scaled.round();
        if m / scale != a {
            continue;
        }
        // 0 <= m <= 2^50: the conversion is exact.
        let m = m as u64;
        if f.is_sign_negative() {
            out.push(b'-');
        }
        let mut digits = [b'0'; 20];
        let n = write_digits(m, &mut digits);
        let digits = &digits[digits.len() - n..];
        if k == 0 {
            out.extend_from_slice(digits);
        } else if n > k {
            out.extend_from_slice(&digits[..n - k]);
            out.push(b'.');
            out.extend_from_slice(&digits[n - k..]);
        } else {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat_n(b'0', k - n));
            out.extend_from_slice(digits);
        }
        return true;
    }
    false
}

/// Writes `v` in decimal.
pub(crate) fn write_i64(v: i64, out: &mut Vec<u8>) {
    if v < 0 {
        out.push(b'-');
    }
    write_u64(v.unsigned_abs(), out);
}

/// Writes `v` in decimal.
pub(crate) fn write_u64(v: u64, out: &mut Vec<u8>) {
    let mut buf = [0u8; 20];
    let n = write_digits(v, &mut buf);
    out.extend_from_slice(&buf[buf.len() - n..]);
}

/// "00" to "99".
const PAIRS: &[u8; 200] = b"\
    0001020304050607080910111213141516171819\
    2021222324252627282930313233343536373839\
    4041424344454647484950515253545556575859\
    6061626364656667686970717273747576777879\
    8081828384858687888990919293949596979899";

/// Writes the decimal digits of `v` at the end of `buf`; returns how many.
fn write_digits(mut v: u64, buf: &mut [u8; 20]) -> usize {
    let mut i = buf.len();
    while v >= 100 {
        let pair = (v % 100) as usize * 2;
        v /= 100;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if v >= 10 {
        let pair = v as usize * 2;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        i -= 1;
        buf[i] = b'0' + v as u8;
    }
    buf.len() - i
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_123_456_789;

    fn opts() -> DecodeOptions {
        DecodeOptions::new(Precision::Ns, NOW)
    }

    fn one(line: &str) -> Point {
        let mut pts = decode(line.as_bytes(), &opts()).expect("valid line");
        assert_eq!(pts.len(), 1, "{line}");
        pts.remove(0)
    }

    fn err(body: &str) -> LpError {
        decode(body.as_bytes(), &opts()).expect_err("invalid body")
    }

    #[test]
    fn the_chunk_decoder_yields_the_points_and_error_of_decode() {
        let body = "# c\nm a=1 1\nm s=\"x\ny\" 2\n\nm a=3 3\nm a=4 4\nbad\nm a=6 6\n";
        let whole = err(body);
        let o = opts();
        let mut d = ChunkDecoder::new(body.as_bytes(), &o);
        let mut got = Vec::new();
        let mut sizes = Vec::new();
        let mut failed = None;
        while let Some(r) = d.next_chunk(2, usize::MAX) {
            match r {
                Ok(c) => {
                    sizes.push(c.len());
                    got.extend(c);
                }
                Err(e) => failed = Some(e),
            }
        }
        assert_eq!(sizes, vec![2, 2]);
        assert_eq!(got[1].fields[0].1, Value::S("x\ny".into()));
        assert_eq!(failed, Some(whole));
        let good = "m a=1 1\nm a=2 2\nm a=3 3";
        let mut d = ChunkDecoder::new(good.as_bytes(), &o);
        let mut all = Vec::new();
        while let Some(Ok(c)) = d.next_chunk(2, usize::MAX) {
            all.extend(c);
        }
        assert_eq!(all, decode(good.as_bytes(), &o).expect("valid"));
        assert_eq!(d.position(), good.len());
        // A byte bound ends a chunk after the point that crosses it.
        let mut d = ChunkDecoder::new(good.as_bytes(), &o);
        let firsts: Vec<usize> = std::iter::from_fn(|| d.next_chunk(10, 3))
            .map(|c| c.map(|c| c.len()).unwrap_or(0))
            .collect();
        assert_eq!(firsts, vec![1, 1, 1]);
    }

    #[test]
    fn decodes_a_metric_line_with_tags_fields_and_time() {
        let p = one("cpu,host=h1,cpu=cpu-total usage=12.5,n=3i 1700000000000000000");
        assert_eq!(p.name, "cpu");
        assert_eq!(
            p.tags,
            vec![
                ("host".into(), "h1".into()),
                ("cpu".into(), "cpu-total".into())
            ]
        );
        assert_eq!(
            p.fields,
            vec![("usage".into(), Value::F(12.5)), ("n".into(), Value::I(3))]
        );
        assert_eq!(p.time, 1_700_000_000_000_000_000);
    }

    #[test]
    fn decodes_every_value_type() {
        let p = one(
            r#"m f=2.5,g=3,e=1e3,ne=-2.5E-2,i=-42i,u=42u,s="hi",t=t,T=T,tr=true,Tr=True,TR=TRUE,f0=f,F0=F,fa=false,Fa=False,FA=FALSE,d="aGVsbG8="b"#,
        );
        let want = vec![
            ("f", Value::F(2.5)),
            ("g", Value::F(3.0)),
            ("e", Value::F(1000.0)),
            ("ne", Value::F(-0.025)),
            ("i", Value::I(-42)),
            ("u", Value::U(42)),
            ("s", Value::S("hi".into())),
            ("t", Value::B(true)),
            ("T", Value::B(true)),
            ("tr", Value::B(true)),
            ("Tr", Value::B(true)),
            ("TR", Value::B(true)),
            ("f0", Value::B(false)),
            ("F0", Value::B(false)),
            ("fa", Value::B(false)),
            ("Fa", Value::B(false)),
            ("FA", Value::B(false)),
            ("d", Value::D(b"hello".to_vec())),
        ];
        let got: Vec<(&str, Value)> = p
            .fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        assert_eq!(got, want);
        assert_eq!(p.time, NOW, "no timestamp means the receive time");
    }

    #[test]
    fn decodes_arrays_of_each_basic_type() {
        let p = one(
            r#"m a=[1i,-2i],b=[1u,2u],c=[1.5,2],d=[true,f],e=["x","y\"z"],g=["aGk="b],h=[],sp=[ 1i , 2i ]"#,
        );
        assert_eq!(
            p.get_field("a"),
            Some(&Value::A(vec![Value::I(1), Value::I(-2)]))
        );
        assert_eq!(
            p.get_field("b"),
            Some(&Value::A(vec![Value::U(1), Value::U(2)]))
        );
        assert_eq!(
            p.get_field("c"),
            Some(&Value::A(vec![Value::F(1.5), Value::F(2.0)]))
        );
        assert_eq!(
            p.get_field("d"),
            Some(&Value::A(vec![Value::B(true), Value::B(false)]))
        );
        assert_eq!(
            p.get_field("e"),
            Some(&Value::A(vec![
                Value::S("x".into()),
                Value::S("y\"z".into())
            ]))
        );
        assert_eq!(
            p.get_field("g"),
            Some(&Value::A(vec![Value::D(b"hi".to_vec())]))
        );
        assert_eq!(p.get_field("h"), Some(&Value::A(vec![])));
        assert_eq!(
            p.get_field("sp"),
            Some(&Value::A(vec![Value::I(1), Value::I(2)]))
        );
    }

    #[test]
    fn rejects_mixed_and_nested_arrays() {
        let e = err("m a=[1i,2u]");
        assert!(e.message.contains("mixed array"), "{e}");
        assert_eq!((e.line, e.column), (1, 9));
        let e = err("m a=[[1i]]");
        assert!(e.message.contains("nested array"), "{e}");
        let e = err("m a=[1i,2i");
        assert!(e.message.contains("array"), "{e}");
    }

    #[test]
    fn unescapes_measurement_keys_and_values() {
        let p = one(r#"my\ meas\,ure,t\ k\=1=v\,a\ l\=x f\,k\ \=\"=1i,s="a \"q\" \\ b \n" 1"#);
        assert_eq!(p.name, "my meas,ure");
        assert_eq!(p.tags, vec![("t k=1".into(), "v,a l=x".into())]);
        assert_eq!(p.fields[0].0, "f,k =\"");
        assert_eq!(p.fields[1].1, Value::S(r#"a "q" \ b \n"#.into()));
    }

    #[test]
    fn keeps_unknown_backslash_sequences_as_datakit_does() {
        let p = one(r#"m\x,path=C:\dir f=1"#);
        assert_eq!(p.name, r"m\x");
        assert_eq!(p.get_tag("path"), Some(r"C:\dir"));
    }

    #[test]
    fn allows_raw_newlines_inside_string_fields() {
        let pts = decode(b"log msg=\"line1\nline2\" 5\nm f=1 6", &opts()).expect("valid");
        assert_eq!(pts.len(), 2);
        assert_eq!(
            pts[0].get_field("msg"),
            Some(&Value::S("line1\nline2".into()))
        );
        assert_eq!(pts[1].time, 6);
    }

    #[test]
    fn skips_comments_blank_lines_and_tolerates_crlf() {
        let body = b"# a comment\r\n\r\n   \n\t# indented comment\ncpu f=1 1\r\n  mem f=2i 2\r\n\n";
        let pts = decode(body, &opts()).expect("valid");
        let names: Vec<&str> = pts.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, vec!["cpu", "mem"]);
        assert_eq!(pts[0].time, 1);
        assert_eq!(pts[1].get_field("f"), Some(&Value::I(2)));
        assert!(decode(b"", &opts()).expect("empty").is_empty());
    }

    #[test]
    fn auto_precision_detects_seconds_millis_micros_and_nanos() {
        let o = DecodeOptions::new(Precision::Auto, NOW);
        let body = b"m f=1 1700000000\nm f=1 1700000000123\nm f=1 1700000000123456\nm f=1 1700000000123456789";
        let times: Vec<i64> = decode(body, &o)
            .expect("valid")
            .iter()
            .map(|p| p.time)
            .collect();
        assert_eq!(
            times,
            vec![
                1_700_000_000_000_000_000,
                1_700_000_000_123_000_000,
                1_700_000_000_123_456_000,
                1_700_000_000_123_456_789
            ]
        );
    }

    #[test]
    fn explicit_precision_multiplies() {
        for (p, want) in [
            (Precision::Ns, 7),
            (Precision::Us, 7_000),
            (Precision::Ms, 7_000_000),
            (Precision::S, 7_000_000_000),
            (Precision::M, 420_000_000_000),
            (Precision::H, 25_200_000_000_000),
        ] {
            let pts = decode(b"m f=1 7", &DecodeOptions::new(p, NOW)).expect("valid");
            assert_eq!(pts[0].time, want, "{p:?}");
        }
        assert_eq!(Precision::from_query("u"), Precision::Us);
        assert_eq!(Precision::from_query("ms"), Precision::Ms);
        assert_eq!(Precision::from_query("bogus"), Precision::Ns);
    }

    #[test]
    fn zero_or_missing_timestamp_means_now() {
        let pts = decode(b"m f=1 0\nm f=1", &opts()).expect("valid");
        assert_eq!(pts[0].time, NOW);
        assert_eq!(pts[1].time, NOW);
    }

    #[test]
    fn overflowing_timestamp_is_an_error() {
        let e = decode(
            b"m f=1 9223372036854775807",
            &DecodeOptions::new(Precision::S, NOW),
        )
        .expect_err("overflow");
        assert!(e.message.contains("overflows"), "{e}");
        let e = err("m f=1 99999999999999999999");
        assert!(e.message.contains("timestamp"), "{e}");
        assert_eq!((e.line, e.column), (1, 7));
    }

    #[test]
    fn tag_hides_field_of_same_key_and_last_field_wins() {
        let p = one("m,a=x a=1i,b=1i,b=2i");
        assert_eq!(p.tags, vec![("a".into(), "x".into())]);
        assert_eq!(p.fields, vec![("b".into(), Value::I(2))]);
    }

    #[test]
    fn duplicate_tags_are_an_error_with_position() {
        let e = err("m f=1\nm,a=1,b=2,a=3 f=1");
        assert_eq!((e.line, e.column), (2, 11));
        assert!(e.message.contains("duplicate tag key \"a\""), "{e}");
    }

    #[test]
    fn errors_carry_line_column_and_expectation() {
        let cases: &[(&str, usize, usize, &str)] = &[
            ("cpu", 1, 4, "missing fields"),
            ("cpu,host=a", 1, 11, "missing fields"),
            ("ok f=1\n,t=1 f=1", 2, 1, "missing measurement"),
            ("m,=v f=1", 1, 3, "missing tag key"),
            ("m,k f=1", 1, 4, "expected '='"),
            ("m,k= f=1", 1, 5, "missing value of tag"),
            ("m,k=a=b f=1", 1, 6, "unescaped '='"),
            ("m f", 1, 4, "expected '=' after field key \"f\""),
            ("m =1", 1, 3, "missing field key"),
            ("m f=", 1, 5, "missing or invalid value"),
            ("m f=1x", 1, 5, "invalid float"),
            ("m f=1.2.3", 1, 5, "invalid float"),
            ("m f=1.5i", 1, 5, "invalid integer"),
            ("m f=-1u", 1, 5, "invalid unsigned"),
            ("m f=99999999999999999999i", 1, 5, "invalid integer"),
            ("m f=1e999", 1, 5, "invalid float"),
            ("m f=NaN", 1, 5, "missing or invalid value"),
            ("m f=tru", 1, 5, "invalid boolean"),
            ("m f=\"abc", 1, 5, "unterminated string"),
            ("m f=\"abc\"x", 1, 10, "expected ','"),
            ("m f=\"!!\"b", 1, 6, "invalid base64"),
            ("m f=1 12a", 1, 7, "invalid timestamp"),
            ("m f=1 12 extra", 1, 10, "unexpected text"),
            ("m f=1,", 1, 7, "expected '='"),
            ("m f=1\r2", 1, 6, "expected ','"),
        ];
        for (body, line, column, what) in cases {
            let e = err(body);
            assert_eq!((e.line, e.column), (*line, *column), "{body:?}: {e}");
            assert!(e.message.contains(what), "{body:?}: {e}");
        }
    }

    #[test]
    fn invalid_utf8_is_replaced_not_rejected() {
        let p = decode(b"m\xff,t=\xfe f=\"\xc3\" 1", &opts()).expect("decodes");
        assert_eq!(p[0].name, "m\u{fffd}");
        assert_eq!(p[0].get_tag("t"), Some("\u{fffd}"));
        assert_eq!(p[0].get_field("f"), Some(&Value::S("\u{fffd}".into())));
    }

    #[test]
    fn encodes_canonical_line_protocol() {
        let p = Point::new("my meas,x", 42)
            .tag("t k", "v=1,2")
            .field("f", Value::F(3.0))
            .field("i", Value::I(-4))
            .field("u", Value::U(5))
            .field("s", Value::S("say \"hi\" \\".into()))
            .field("b", Value::B(true))
            .field("d", Value::D(b"hello".to_vec()))
            .field("a", Value::A(vec![Value::I(1), Value::I(2)]))
            .field("sa", Value::A(vec![Value::S("x".into())]));
        let line = String::from_utf8(encode(std::slice::from_ref(&p))).expect("utf8");
        assert_eq!(
            line,
            r#"my\ meas\,x,t\ k=v\=1\,2 f=3,i=-4i,u=5u,s="say \"hi\" \\",b=true,d="aGVsbG8="b,a=[1i,2i],sa=["x"] 42"#
        );
        assert_eq!(one(&line), p);
    }

    #[test]
    fn encodes_floats_in_shortest_form_that_decodes_as_float() {
        for f in [
            0.1,
            3.0,
            -0.5,
            1e21,
            1.5e-7,
            f64::MAX,
            f64::MIN_POSITIVE,
            123456789.125,
        ] {
            let p = Point::new("m", 1).field("f", Value::F(f));
            let line = encode(std::slice::from_ref(&p));
            assert!(
                !line.contains(&b'e'),
                "no exponent: {}",
                String::from_utf8_lossy(&line)
            );
            assert_eq!(decode(&line, &opts()).expect("decodes")[0], p);
        }
        let line = encode(&[Point::new("m", 1).field("f", Value::F(3.0))]);
        assert_eq!(line, b"m f=3 1");
    }

    #[test]
    fn encode_skips_points_and_parts_line_protocol_cannot_carry() {
        let empty = Point::new("nofields", 1);
        let nan = Point::new("nan", 1).field("x", Value::F(f64::NAN));
        let ok = Point::new("ok", 2)
            .tag("", "v")
            .tag("empty", "")
            .tag("nl", "a\nb")
            .field("x", Value::F(f64::INFINITY))
            .field("y", Value::I(1));
        let out = encode(&[empty, nan.clone(), ok, nan]);
        assert_eq!(out, b"ok,nl=a\\ b y=1i 2");
    }

    /// A small deterministic generator (xorshift), so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn text(&mut self) -> String {
            const ALPHABET: &[&str] = &[
                "a", "b", "z", "0", "9", ",", "=", " ", "\n", "\\", "\"", ".", "é", "_", "",
            ];
            (0..self.below(6))
                .map(|_| ALPHABET[self.below(ALPHABET.len() as u64) as usize])
                .collect()
        }
        fn float(&mut self) -> f64 {
            match self.below(10) {
                0 => f64::NAN,
                1 => f64::INFINITY,
                2 => f64::NEG_INFINITY,
                3 => -0.0,
                4 => (self.below(1 << 20) as f64) * 1024.0,
                5 => self.below(1000) as f64 + 0.5,
                6 => f64::from_bits(self.next()),
                7 => 1e300 * (self.below(100) as f64),
                _ => (self.next() as i64 as f64) / 1e9,
            }
        }
        fn basic(&mut self, kind: u64) -> Value {
            match kind {
                0 => Value::I(self.next() as i64),
                1 => Value::U(self.next() >> self.below(64)),
                2 => Value::F(self.float()),
                3 => Value::B(self.below(2) == 0),
                4 => Value::S(self.text()),
                _ => Value::D((0..self.below(7)).map(|_| self.next() as u8).collect()),
            }
        }
        fn point(&mut self) -> Point {
            let mut p = Point::new(self.text(), self.next() as i64 >> self.below(64));
            for _ in 0..self.below(4) {
                p.tags.push((self.text(), self.text()));
            }
            for _ in 0..self.below(5) {
                let kind = self.below(6);
                let v = if self.below(8) == 0 {
                    Value::A((0..self.below(4)).map(|_| self.basic(kind)).collect())
                } else {
                    self.basic(kind)
                };
                p.fields.push((self.text(), v));
            }
            p
        }
    }

    #[test]
    fn borrowed_points_encode_as_their_owned_points_do() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..2000 {
            let points: Vec<Point> = (0..rng.below(8)).map(|_| rng.point()).collect();
            let record = crate::pb::encode(&points);
            let mut owned = Vec::new();
            for p in crate::pb::decode(&record).expect("decodes") {
                encode_point(&p, &mut owned);
                owned.push(b'\n');
            }
            let mut borrowed = Vec::new();
            let n = crate::pb::decode_each(&record, |p| {
                encode_point_ref(p, &mut borrowed);
                borrowed.push(b'\n');
            })
            .expect("decodes");
            assert_eq!(n, points.len());
            assert_eq!(
                String::from_utf8_lossy(&borrowed),
                String::from_utf8_lossy(&owned),
                "{points:?}"
            );
        }
    }

    fn assert_display(f: f64) {
        let mut out = Vec::new();
        write_f64(f, &mut out);
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            format!("{f}"),
            "{f:e} ({:#x})",
            f.to_bits()
        );
    }

    #[test]
    fn floats_are_written_as_display_writes_them() {
        let mut rng = Rng(7);
        for _ in 0..300_000 {
            let f = rng.float();
            if f.is_finite() {
                assert_display(f);
            }
        }
        // Decimals of every length and magnitude the short path takes or just misses.
        for _ in 0..300_000 {
            let digits = rng.below(18) as u32;
            let m = rng.next() % 10u64.pow(digits);
            let k = rng.below(12) as i32;
            let f = m as f64 / 10f64.powi(k);
            for f in [
                f,
                f64::from_bits(f.to_bits() + 1),
                f64::from_bits(f.to_bits().saturating_sub(1)),
            ] {
                assert_display(f);
                assert_display(-f);
            }
        }
        for f in [
            0.0,
            0.1,
            0.2,
            0.3,
            1.0 / 3.0,
            2.0 / 3.0,
            0.1 + 0.2,
            0.5,
            1e-9,
            1.5e-9,
            1e-10,
            123_456_789.123_456_79,
            4_503_599_627_370_495.5,
            4_503_599_627_370_496.0,
            1_125_899_906_842_623.9,
            1_125_899_906_842_624.0,
            112_589_990_684_262.35,
            9_007_199_254_740_993.0,
            1e15,
            1e16,
            1e21,
            1e300,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            u64::MAX as f64,
            i64::MIN as f64,
        ] {
            assert_display(f);
            assert_display(-f);
        }
    }

    #[test]
    fn integers_are_written_in_decimal() {
        for v in [
            0,
            1,
            9,
            10,
            99,
            100,
            101,
            999,
            1000,
            12_345,
            u64::MAX,
            1 << 63,
        ] {
            let mut out = Vec::new();
            write_u64(v, &mut out);
            assert_eq!(String::from_utf8(out).expect("utf8"), v.to_string());
        }
        let mut rng = Rng(11);
        for _ in 0..100_000 {
            let v = (rng.next() >> rng.below(64)) as i64;
            let mut out = Vec::new();
            write_i64(v, &mut out);
            assert_eq!(String::from_utf8(out).expect("utf8"), v.to_string());
        }
        let mut out = Vec::new();
        write_i64(i64::MIN, &mut out);
        assert_eq!(out, i64::MIN.to_string().as_bytes());
    }
}

#[cfg(test)]
mod control_byte_tests {
    use super::*;
    use crate::{Point, Value};

    #[test]
    fn control_bytes_in_names_keys_and_tag_values_are_written_as_spaces_and_parse_back() {
        let opts = DecodeOptions::new(Precision::Ns, 0);
        let controls = (0u8..0x20).filter(|b| *b != b'\t').chain([0x7f]);
        for b in controls {
            let c = char::from(b);
            for text in [format!("a{c}b"), format!("{c}b"), format!("a{c}")] {
                let spaced = text.replace(c, " ");
                for slot in 0..4 {
                    let mut p = Point::new("m", 1);
                    match slot {
                        0 => p.name = text.clone(),
                        1 => p.tags.push((text.clone(), "x".into())),
                        2 => p.tags.push(("t".into(), text.clone())),
                        _ => p.fields.push((text.clone(), Value::I(2))),
                    }
                    p.fields.push(("f".into(), Value::I(1)));
                    let mut line = Vec::new();
                    encode_point(&p, &mut line);
                    assert!(
                        !line.iter().any(|&x| is_control(x)),
                        "byte {b:#x} in slot {slot} was written raw: {line:?}"
                    );
                    let got = decode(&line, &opts)
                        .unwrap_or_else(|e| panic!("byte {b:#x} slot {slot}: {e}"));
                    let mut want = p.clone();
                    match slot {
                        0 => want.name = spaced.clone(),
                        1 => want.tags[0].0 = spaced.clone(),
                        2 => want.tags[0].1 = spaced.clone(),
                        _ => want.fields[0].0 = spaced.clone(),
                    }
                    assert_eq!(got, vec![want], "byte {b:#x} slot {slot}");
                }
            }
        }
    }

    #[test]
    fn every_marked_byte_is_found_at_every_position_of_long_strings() {
        for len in [1usize, 7, 8, 9, 16, 23, 40] {
            for pos in 0..len {
                for b in 0u8..=255 {
                    let mut s = vec![b'a'; len];
                    s[pos] = b;
                    let want = ESCAPE_KEY[b as usize] != 0;
                    assert_eq!(
                        needs_escape(&s, &ESCAPE_KEY),
                        want,
                        "byte {b:#x} at {pos} of {len}"
                    );
                    let want = ESCAPE_NAME[b as usize] != 0;
                    assert_eq!(
                        needs_escape(&s, &ESCAPE_NAME),
                        want,
                        "byte {b:#x} at {pos} of {len}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_nul_in_a_tag_value_never_reaches_the_file_and_the_line_parses_back() {
        let p = Point::new("cpu", 7)
            .tag("host", "web\0one")
            .field("usage", Value::F(1.5));
        let body = encode(&[p]);
        assert!(!body.contains(&0), "{body:?}");
        let got = decode(&body, &DecodeOptions::new(Precision::Ns, 0)).unwrap();
        assert_eq!(got[0].get_tag("host"), Some("web one"));
    }
}
