//! Line protocol written straight from queued protobuf records, without decoding them into
//! owned points first (the local-files sink's input).
//!
//! [`write_point`] produces exactly the bytes of `dk_proto::lineproto::encode_point` for the
//! point [`dk_proto::pb::decode`] would return; the tests check that on random points.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use dk_proto::Value;
use dk_proto::pb::{PointRef, ValueRef};
use std::io::Write as _;

/// Line protocol of queued records, cut into chunks of at most `max_points` points and
/// about `max_bytes` bytes (a chunk closes at the first line that reaches it).
#[derive(Default)]
pub(crate) struct Lines {
    /// One line per point, each ending in `\n` (a point with nothing to write is an empty
    /// line, as the local sink writes it).
    pub(crate) buf: Vec<u8>,
    /// `(end offset in buf, points)` of each chunk, in order.
    pub(crate) chunks: Vec<(usize, usize)>,
    /// Points in the chunk being filled.
    open_points: usize,
}

/// Where the chunk being filled starts.
fn open_start(chunks: &[(usize, usize)]) -> usize {
    chunks.last().map_or(0, |c| c.0)
}

impl Lines {
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.chunks.clear();
        self.open_points = 0;
    }

    /// Appends the points of one `PBPoints` record, closing a chunk when it holds
    /// `max_points` points or `max_bytes` bytes. On error nothing of the record is kept and
    /// the error is returned.
    pub(crate) fn push_record(
        &mut self,
        payload: &[u8],
        max_points: usize,
        max_bytes: usize,
    ) -> Result<(), dk_proto::pb::PbError> {
        let mark = (self.buf.len(), self.chunks.len(), self.open_points);
        let Lines {
            buf,
            chunks,
            open_points,
        } = self;
        let mut start = open_start(chunks);
        let result = dk_proto::pb::decode_each(payload, |p| {
            write_point(p, buf);
            buf.push(b'\n');
            *open_points += 1;
            if *open_points >= max_points || buf.len() - start >= max_bytes {
                start = buf.len();
                chunks.push((buf.len(), *open_points));
                *open_points = 0;
            }
        });
        if let Err(e) = result {
            self.buf.truncate(mark.0);
            self.chunks.truncate(mark.1);
            self.open_points = mark.2;
            return Err(e);
        }
        Ok(())
    }

    /// Closes the last chunk.
    pub(crate) fn finish(&mut self) {
        if self.open_points > 0 {
            self.chunks.push((self.buf.len(), self.open_points));
            self.open_points = 0;
        }
    }
}

/// Writes one point as a line (without the newline); writes nothing when no field can be
/// written (all keys empty, or only non-finite floats).
pub(crate) fn write_point(p: &PointRef<'_>, out: &mut Vec<u8>) {
    if !p
        .fields
        .iter()
        .any(|(k, v)| !k.is_empty() && encodable_ref(v))
    {
        return;
    }
    escape_into(p.name.as_bytes(), b", ", out);
    for (k, v) in &p.tags {
        if k.is_empty() || v.is_empty() {
            continue;
        }
        out.push(b',');
        escape_into(k.as_bytes(), b",= ", out);
        out.push(b'=');
        escape_into(v.as_bytes(), b",= ", out);
    }
    out.push(b' ');
    let mut first = true;
    for (k, v) in &p.fields {
        if k.is_empty() || !encodable_ref(v) {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        escape_into(k.as_bytes(), b",= ", out);
        out.push(b'=');
        write_value_ref(v, out);
    }
    out.push(b' ');
    write_i64(p.time, out);
}

fn encodable_ref(v: &ValueRef<'_>) -> bool {
    match v {
        ValueRef::F(f) => f.is_finite(),
        ValueRef::A(items) => items.iter().all(encodable),
        _ => true,
    }
}

fn encodable(v: &Value) -> bool {
    match v {
        Value::F(f) => f.is_finite(),
        Value::A(items) => items.iter().all(encodable),
        _ => true,
    }
}

/// Writes `s` with a backslash before each byte of `special`; a newline becomes a space.
#[inline]
fn escape_into(s: &[u8], special: &[u8], out: &mut Vec<u8>) {
    if !s.iter().any(|b| special.contains(b) || *b == b'\n') {
        out.extend_from_slice(s);
        return;
    }
    for &b in s {
        let b = if b == b'\n' { b' ' } else { b };
        if special.contains(&b) {
            out.push(b'\\');
        }
        out.push(b);
    }
}

fn write_value_ref(v: &ValueRef<'_>, out: &mut Vec<u8>) {
    match v {
        ValueRef::I(i) => write_value(&Value::I(*i), out),
        ValueRef::U(u) => write_value(&Value::U(*u), out),
        ValueRef::F(f) => write_f64(*f, out),
        ValueRef::B(b) => write_value(&Value::B(*b), out),
        ValueRef::S(s) => write_str(s, out),
        ValueRef::D(d) => write_bytes(d, out),
        ValueRef::A(items) => write_array(items, out),
    }
}

fn write_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::I(i) => {
            write_i64(*i, out);
            out.push(b'i');
        }
        Value::U(u) => {
            write_u64(*u, out);
            out.push(b'u');
        }
        Value::F(f) => write_f64(*f, out),
        Value::B(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::S(s) => write_str(s, out),
        Value::D(d) => write_bytes(d, out),
        Value::A(items) => write_array(items, out),
    }
}

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

fn write_bytes(d: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    let start = out.len();
    out.resize(start + base64::encoded_len(d.len(), true).unwrap_or(0), 0);
    let n = BASE64.encode_slice(d, &mut out[start..]).unwrap_or(0);
    out.truncate(start + n);
    out.extend_from_slice(b"\"b");
}

fn write_array(items: &[Value], out: &mut Vec<u8>) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_value(item, out);
    }
    out.push(b']');
}

/// Writes `f` exactly as `Display` does (shortest digits that read back as `f`, never an
/// exponent). Values with at most [`MAX_FRACTION_DIGITS`] decimals whose scaled value stays
/// below 2^50 are written without `core::fmt`; the rest go through `Display`.
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

fn write_i64(v: i64, out: &mut Vec<u8>) {
    if v < 0 {
        out.push(b'-');
    }
    write_u64(v.unsigned_abs(), out);
}

fn write_u64(v: u64, out: &mut Vec<u8>) {
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
    #![allow(clippy::unwrap_used)]
    use super::*;
    use dk_proto::Point;

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
                let v = if self.below(8) == 0 {
                    let kind = self.below(6);
                    Value::A((0..self.below(4)).map(|_| self.basic(kind)).collect())
                } else {
                    let kind = self.below(6);
                    self.basic(kind)
                };
                p.fields.push((self.text(), v));
            }
            p
        }
    }

    /// What the local sink wrote before: decode, then `encode_point` and a newline each.
    fn via_points(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in dk_proto::pb::decode(payload).unwrap() {
            dk_proto::lineproto::encode_point(&p, &mut out);
            out.push(b'\n');
        }
        out
    }

    #[test]
    fn lines_equal_decoding_then_encoding_each_point() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..2000 {
            let points: Vec<Point> = (0..rng.below(8)).map(|_| rng.point()).collect();
            let payload = dk_proto::pb::encode(&points);
            let mut lines = Lines::default();
            lines.push_record(&payload, 1000, usize::MAX).unwrap();
            lines.finish();
            assert_eq!(
                String::from_utf8_lossy(&lines.buf),
                String::from_utf8_lossy(&via_points(&payload)),
                "{points:?}"
            );
            let n: usize = lines.chunks.iter().map(|c| c.1).sum();
            assert_eq!(n, points.len());
        }
    }

    fn assert_display(f: f64) {
        let mut out = Vec::new();
        write_f64(f, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
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
            assert_eq!(String::from_utf8(out).unwrap(), v.to_string());
        }
        let mut rng = Rng(11);
        for _ in 0..100_000 {
            let v = (rng.next() >> rng.below(64)) as i64;
            let mut out = Vec::new();
            write_i64(v, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), v.to_string());
        }
    }

    #[test]
    fn chunks_close_every_max_points_across_records() {
        let record = |n: usize| {
            let points: Vec<Point> = (0..n)
                .map(|i| Point::new("m", i as i64).field("f", Value::I(1)))
                .collect();
            dk_proto::pb::encode(&points)
        };
        let mut lines = Lines::default();
        lines.push_record(&record(3), 2, usize::MAX).unwrap();
        lines.push_record(&record(2), 2, usize::MAX).unwrap();
        lines.finish();
        let counts: Vec<usize> = lines.chunks.iter().map(|c| c.1).collect();
        assert_eq!(counts, vec![2, 2, 1]);
        assert_eq!(lines.chunks.last().unwrap().0, lines.buf.len());
        let text = String::from_utf8(lines.buf[..lines.chunks[0].0].to_vec()).unwrap();
        assert_eq!(text, "m f=1i 0\nm f=1i 1\n");
    }

    #[test]
    fn chunks_close_at_the_line_that_reaches_max_bytes() {
        let points: Vec<Point> = (0..5)
            .map(|i| Point::new("m", i).field("f", Value::I(1)))
            .collect();
        let mut lines = Lines::default();
        // Each line is 9 bytes ("m f=1i 0\n"): 10 bytes close a chunk every second line.
        lines
            .push_record(&dk_proto::pb::encode(&points), 1000, 10)
            .unwrap();
        lines
            .push_record(&dk_proto::pb::encode(&points[..1]), 1000, 10)
            .unwrap();
        lines.finish();
        assert_eq!(lines.chunks, vec![(18, 2), (36, 2), (54, 2)]);
    }

    #[test]
    fn a_corrupt_record_leaves_nothing_behind() {
        let good = dk_proto::pb::encode(&[
            Point::new("m", 1).field("f", Value::I(1)),
            Point::new("m", 2).field("f", Value::I(2)),
        ]);
        let mut lines = Lines::default();
        lines.push_record(&good, 3, usize::MAX).unwrap();
        let before = (lines.buf.clone(), lines.chunks.clone());
        // Two good points then garbage: the chunk closed at the third point is undone too.
        let mut bad = good.clone();
        bad.extend_from_slice(b"\x0a\x05abc");
        assert!(lines.push_record(&bad, 3, usize::MAX).is_err());
        assert_eq!((lines.buf.clone(), lines.chunks.clone()), before);
        lines.push_record(&good, 3, usize::MAX).unwrap();
        lines.finish();
        let counts: Vec<usize> = lines.chunks.iter().map(|c| c.1).collect();
        assert_eq!(counts, vec![3, 1]);
    }
}
