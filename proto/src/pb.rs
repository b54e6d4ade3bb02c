//! Protobuf `PBPoints` (Datakit's `point.proto`, package `point`) encoding and decoding.
//!
//! [`schema`] holds the messages as prost-derived structs (no `protoc`, no build script),
//! with the field numbers of cliutils' `point/point.proto`. [`encode`] writes the same bytes
//! the derived encoder would, but straight from borrowed [`Point`]s without building the
//! message tree. [`decode`] walks the wire format by hand (prost only unpacks array `Any`s)
//! straight into points, so memory stays proportional to the output whatever the input
//! claims.
//!
//! Mapping: a tag is a `Field` with `is_tag = true` and a string value `s`; a field maps its
//! value to the `val` oneof; an array is a `google.protobuf.Any` of type
//! `type.googleapis.com/point.Array`. `type`, `unit`, `description`, `warns` and `debugs`
//! are not part of the point model and are dropped on decode.

use std::borrow::Cow;

use prost::Message as _;

use crate::lineproto::DecodeOptions;
use crate::{Point, Value};

/// The `type_url` of an array value packed into `google.protobuf.Any`.
pub const ARRAY_TYPE_URL: &str = "type.googleapis.com/point.Array";

/// The messages of Datakit's `point.proto` (package `point`).
pub mod schema {
    /// `PBPoints { repeated PBPoint arr = 1; }`
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PbPoints {
        /// The points.
        #[prost(message, repeated, tag = "1")]
        pub arr: Vec<PbPoint>,
    }

    /// `PBPoint`: a measurement, its tags and fields, time in ns, and build diagnostics.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PbPoint {
        /// Measurement name.
        #[prost(string, tag = "1")]
        pub name: String,
        /// Tags and fields.
        #[prost(message, repeated, tag = "2")]
        pub fields: Vec<Field>,
        /// Unix time in nanoseconds.
        #[prost(int64, tag = "3")]
        pub time: i64,
        /// Warnings attached while building the point.
        #[prost(message, repeated, tag = "4")]
        pub warns: Vec<Warn>,
        /// Debug notes.
        #[prost(message, repeated, tag = "5")]
        pub debugs: Vec<Debug>,
    }

    /// `Field`: one tag (`is_tag`, string value) or field.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Field {
        /// Key.
        #[prost(string, tag = "1")]
        pub key: String,
        /// The value oneof.
        #[prost(oneof = "Val", tags = "2, 3, 4, 5, 6, 11, 7")]
        pub val: Option<Val>,
        /// Whether the key is a tag.
        #[prost(bool, tag = "8")]
        pub is_tag: bool,
        /// `MetricType` enum (UNSPECIFIED = 0, COUNT, RATE, GAUGE, ...).
        #[prost(int32, tag = "9")]
        pub r#type: i32,
        /// Unit name.
        #[prost(string, tag = "10")]
        pub unit: String,
        /// Description.
        #[prost(string, tag = "12")]
        pub description: String,
    }

    /// `Field.val`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Val {
        /// `int64 i = 2`.
        #[prost(int64, tag = "2")]
        I(i64),
        /// `uint64 u = 3`.
        #[prost(uint64, tag = "3")]
        U(u64),
        /// `double f = 4`.
        #[prost(double, tag = "4")]
        F(f64),
        /// `bool b = 5`.
        #[prost(bool, tag = "5")]
        B(bool),
        /// `bytes d = 6`.
        #[prost(bytes = "vec", tag = "6")]
        D(Vec<u8>),
        /// `string s = 11`.
        #[prost(string, tag = "11")]
        S(String),
        /// `google.protobuf.Any a = 7`.
        #[prost(message, tag = "7")]
        A(Any),
    }

    /// `google.protobuf.Any`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Any {
        /// Type URL (`type.googleapis.com/point.Array`).
        #[prost(string, tag = "1")]
        pub type_url: String,
        /// The packed message.
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }

    /// `Array { repeated BasicTypes arr = 1; }`
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Array {
        /// Elements.
        #[prost(message, repeated, tag = "1")]
        pub arr: Vec<BasicTypes>,
    }

    /// `BasicTypes { oneof x { i = 1; u = 2; f = 3; b = 4; d = 5; s = 6; } }`
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BasicTypes {
        /// The element.
        #[prost(oneof = "Basic", tags = "1, 2, 3, 4, 5, 6")]
        pub x: Option<Basic>,
    }

    /// `BasicTypes.x`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Basic {
        /// `int64 i = 1`.
        #[prost(int64, tag = "1")]
        I(i64),
        /// `uint64 u = 2`.
        #[prost(uint64, tag = "2")]
        U(u64),
        /// `double f = 3`.
        #[prost(double, tag = "3")]
        F(f64),
        /// `bool b = 4`.
        #[prost(bool, tag = "4")]
        B(bool),
        /// `bytes d = 5`.
        #[prost(bytes = "vec", tag = "5")]
        D(Vec<u8>),
        /// `string s = 6`.
        #[prost(string, tag = "6")]
        S(String),
    }

    /// `Warn { string type = 1; string msg = 2; }`
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Warn {
        /// Warn type.
        #[prost(string, tag = "1")]
        pub r#type: String,
        /// Message (`message` in JSON).
        #[prost(string, tag = "2")]
        pub msg: String,
    }

    /// `Debug { string info = 1; }`
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Debug {
        /// Debug note.
        #[prost(string, tag = "1")]
        pub info: String,
    }
}

/// A body that is not a valid `PBPoints` message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("protobuf decode error: {0}")]
pub struct PbError(pub String);

// ---------------------------------------------------------------------------------------
// Encoding

const WT_VARINT: u8 = 0;
const WT_FIXED64: u8 = 1;
const WT_LEN: u8 = 2;
const WT_FIXED32: u8 = 5;

#[inline]
fn varint_len(v: u64) -> usize {
    // 1 byte per started 7 bits; 0 takes one byte.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[inline]
fn put_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Writes a one-byte key (every tag of the schema is below 16).
#[inline]
fn put_key(tag: u8, wire_type: u8, out: &mut Vec<u8>) {
    out.push((tag << 3) | wire_type);
}

#[inline]
fn len_field_len(n: usize) -> usize {
    1 + varint_len(n as u64) + n
}

#[inline]
fn put_len_field(tag: u8, bytes: &[u8], out: &mut Vec<u8>) {
    put_key(tag, WT_LEN, out);
    put_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// Whether protobuf can carry the value (arrays hold basic values only).
fn pb_encodable(v: &Value) -> bool {
    match v {
        Value::A(items) => items.iter().all(|i| !matches!(i, Value::A(_))),
        _ => true,
    }
}

/// Length of a `BasicTypes` message body.
fn basic_len(v: &Value) -> usize {
    match v {
        Value::I(i) => 1 + varint_len(*i as u64),
        Value::U(u) => 1 + varint_len(*u),
        Value::F(_) => 9,
        Value::B(_) => 2,
        Value::D(d) => len_field_len(d.len()),
        Value::S(s) => len_field_len(s.len()),
        Value::A(_) => 0,
    }
}

fn put_basic(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::I(i) => {
            put_key(1, WT_VARINT, out);
            put_varint(*i as u64, out);
        }
        Value::U(u) => {
            put_key(2, WT_VARINT, out);
            put_varint(*u, out);
        }
        Value::F(f) => {
            put_key(3, WT_FIXED64, out);
            out.extend_from_slice(&f.to_le_bytes());
        }
        Value::B(b) => {
            put_key(4, WT_VARINT, out);
            out.push(u8::from(*b));
        }
        Value::D(d) => put_len_field(5, d, out),
        Value::S(s) => put_len_field(6, s.as_bytes(), out),
        Value::A(_) => {}
    }
}

/// Length of the `point.Array` message body of `items`.
fn array_len(items: &[Value]) -> usize {
    items.iter().map(|i| len_field_len(basic_len(i))).sum()
}

/// Length of the `Any` message body wrapping an array.
fn any_len(items: &[Value]) -> usize {
    let arr = array_len(items);
    len_field_len(ARRAY_TYPE_URL.len()) + if arr > 0 { len_field_len(arr) } else { 0 }
}

/// Length of the value part (oneof) of a `Field` message.
fn val_len(v: &Value) -> usize {
    match v {
        Value::I(i) => 1 + varint_len(*i as u64),
        Value::U(u) => 1 + varint_len(*u),
        Value::F(_) => 9,
        Value::B(_) => 2,
        Value::D(d) => len_field_len(d.len()),
        Value::S(s) => len_field_len(s.len()),
        Value::A(items) => len_field_len(any_len(items)),
    }
}

fn put_val(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::I(i) => {
            put_key(2, WT_VARINT, out);
            put_varint(*i as u64, out);
        }
        Value::U(u) => {
            put_key(3, WT_VARINT, out);
            put_varint(*u, out);
        }
        Value::F(f) => {
            put_key(4, WT_FIXED64, out);
            out.extend_from_slice(&f.to_le_bytes());
        }
        Value::B(b) => {
            put_key(5, WT_VARINT, out);
            out.push(u8::from(*b));
        }
        Value::D(d) => put_len_field(6, d, out),
        Value::S(s) => put_len_field(11, s.as_bytes(), out),
        Value::A(items) => {
            put_key(7, WT_LEN, out);
            put_varint(any_len(items) as u64, out);
            put_len_field(1, ARRAY_TYPE_URL.as_bytes(), out);
            let arr = array_len(items);
            if arr > 0 {
                put_key(2, WT_LEN, out);
                put_varint(arr as u64, out);
                for item in items {
                    put_key(1, WT_LEN, out);
                    put_varint(basic_len(item) as u64, out);
                    put_basic(item, out);
                }
            }
        }
    }
}

#[inline]
fn key_len(key: &str) -> usize {
    if key.is_empty() {
        0
    } else {
        len_field_len(key.len())
    }
}

fn tag_len(key: &str, value: &str) -> usize {
    key_len(key) + len_field_len(value.len()) + 2
}

fn field_len(key: &str, value: &Value) -> usize {
    key_len(key) + val_len(value)
}

fn point_len(p: &Point) -> usize {
    let name = key_len(&p.name);
    let tags: usize = p
        .tags
        .iter()
        .map(|(k, v)| len_field_len(tag_len(k, v)))
        .sum();
    let fields: usize = p
        .fields
        .iter()
        .filter(|(_, v)| pb_encodable(v))
        .map(|(k, v)| len_field_len(field_len(k, v)))
        .sum();
    let time = if p.time != 0 {
        1 + varint_len(p.time as u64)
    } else {
        0
    };
    name + tags + fields + time
}

fn put_point(p: &Point, out: &mut Vec<u8>) {
    if !p.name.is_empty() {
        put_len_field(1, p.name.as_bytes(), out);
    }
    for (k, v) in &p.tags {
        put_key(2, WT_LEN, out);
        put_varint(tag_len(k, v) as u64, out);
        if !k.is_empty() {
            put_len_field(1, k.as_bytes(), out);
        }
        put_len_field(11, v.as_bytes(), out);
        put_key(8, WT_VARINT, out);
        out.push(1);
    }
    for (k, v) in &p.fields {
        if !pb_encodable(v) {
            continue;
        }
        put_key(2, WT_LEN, out);
        put_varint(field_len(k, v) as u64, out);
        if !k.is_empty() {
            put_len_field(1, k.as_bytes(), out);
        }
        put_val(v, out);
    }
    if p.time != 0 {
        put_key(3, WT_VARINT, out);
        put_varint(p.time as u64, out);
    }
}

/// Appends points as a `PBPoints` message to `out`.
///
/// Tags are written first (as `Field`s with `is_tag`), then fields; a field holding a
/// nested array, which protobuf cannot carry, is skipped.
pub fn encode_to(points: &[Point], out: &mut Vec<u8>) {
    for p in points {
        put_entry(p, point_len(p), out);
    }
}

/// Appends one `PBPoints` entry (field 1) holding `p`, whose encoded length is `len`.
fn put_entry(p: &Point, len: usize, out: &mut Vec<u8>) {
    put_key(1, WT_LEN, out);
    put_varint(len as u64, out);
    put_point(p, out);
}

/// Encodes points as a `PBPoints` message, in a buffer of exactly its size: the supervisor
/// keeps these as queue records (in the queue's memory cache too), and a buffer grown past an
/// estimate doubles, holding up to twice the bytes.
pub fn encode(points: &[Point]) -> Vec<u8> {
    let lens: Vec<usize> = points.iter().map(point_len).collect();
    let mut out = Vec::with_capacity(lens.iter().map(|&n| len_field_len(n)).sum());
    for (p, &n) in points.iter().zip(&lens) {
        put_entry(p, n, &mut out);
    }
    out
}

// ---------------------------------------------------------------------------------------
// Decoding

/// A cursor over protobuf wire data.
struct Wire<'a> {
    buf: &'a [u8],
}

impl<'a> Wire<'a> {
    #[inline]
    fn varint(&mut self) -> Result<u64, String> {
        // Most varints (keys, lengths, small values) are one byte.
        if let Some((&b, rest)) = self.buf.split_first()
            && b < 0x80
        {
            self.buf = rest;
            return Ok(u64::from(b));
        }
        self.varint_slow()
    }

    fn varint_slow(&mut self) -> Result<u64, String> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some((&b, rest)) = self.buf.split_first() else {
                return Err("truncated varint".into());
            };
            self.buf = rest;
            if i == 9 && b > 1 {
                return Err("varint longer than 64 bits".into());
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    /// Reads a field key: (field number, wire type).
    #[inline]
    fn key(&mut self) -> Result<(u64, u8), String> {
        let k = self.varint()?;
        let tag = k >> 3;
        if tag == 0 {
            return Err("field number 0".into());
        }
        Ok((tag, (k & 7) as u8))
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.buf.len() {
            return Err(format!(
                "length {n} runs past the end of the message ({} bytes left)",
                self.buf.len()
            ));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    #[inline]
    fn len_delimited(&mut self) -> Result<&'a [u8], String> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| format!("length {n} too large"))?;
        self.take(n)
    }

    /// Skips a field of an unknown number.
    fn skip(&mut self, wire_type: u8) -> Result<(), String> {
        match wire_type {
            WT_VARINT => self.varint().map(|_| ()),
            WT_FIXED64 => self.take(8).map(|_| ()),
            WT_LEN => self.len_delimited().map(|_| ()),
            WT_FIXED32 => self.take(4).map(|_| ()),
            other => Err(format!("unsupported wire type {other}")),
        }
    }
}

fn expect_wire(what: &str, got: u8, want: u8) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what} has wire type {got}, expected {want}"))
    }
}

/// Decodes a `PBPoints` message. Times are kept as sent (0 stays 0); see [`decode_with`].
///
/// # Errors
/// [`PbError`] for malformed protobuf or values that do not fit the point model: a tag
/// whose value is not a string, an `Any` that is not a `point.Array`, a mixed-type array.
pub fn decode(body: &[u8]) -> Result<Vec<Point>, PbError> {
    let mut out = Vec::new();
    decode_each(body, |view| out.push(view.to_point()))?;
    Ok(out)
}

/// Decodes a `PBPoints` message and fixes times as Datakit's decoder does: 0 becomes
/// `opts.now_ns`, others are converted from `opts.precision`.
///
/// # Errors
/// As [`decode`], and a time that overflows in that precision.
pub fn decode_with(body: &[u8], opts: &DecodeOptions) -> Result<Vec<Point>, PbError> {
    let mut points = decode(body)?;
    for (i, p) in points.iter_mut().enumerate() {
        p.time = opts
            .point_time(Some(p.time))
            .ok_or_else(|| top_error(i, &format!("time {} overflows nanoseconds", p.time)))?;
    }
    Ok(points)
}

/// A field value borrowed from a `PBPoints` body (see [`decode_each`]); arrays are unpacked.
#[derive(Clone, Debug, PartialEq)]
pub enum ValueRef<'a> {
    /// Signed integer.
    I(i64),
    /// Unsigned integer.
    U(u64),
    /// Float.
    F(f64),
    /// Boolean.
    B(bool),
    /// String.
    S(&'a str),
    /// Raw bytes.
    D(&'a [u8]),
    /// Array of basic values of one type (owned when unpacked from a record).
    A(Cow<'a, [Value]>),
}

impl ValueRef<'_> {
    /// The owned [`Value`].
    pub fn to_value(&self) -> Value {
        match self {
            ValueRef::I(i) => Value::I(*i),
            ValueRef::U(u) => Value::U(*u),
            ValueRef::F(f) => Value::F(*f),
            ValueRef::B(b) => Value::B(*b),
            ValueRef::S(s) => Value::S((*s).to_owned()),
            ValueRef::D(d) => Value::D(d.to_vec()),
            ValueRef::A(items) => Value::A(items.to_vec()),
        }
    }

    /// The same value borrowed from `self` (an owned array is not copied).
    pub fn reborrow(&self) -> ValueRef<'_> {
        match self {
            ValueRef::A(items) => ValueRef::A(Cow::Borrowed(items)),
            other => other.clone(),
        }
    }
}

impl<'a> From<&'a Value> for ValueRef<'a> {
    /// A view of an owned value, copying nothing.
    fn from(v: &'a Value) -> Self {
        match v {
            Value::I(i) => ValueRef::I(*i),
            Value::U(u) => ValueRef::U(*u),
            Value::F(f) => ValueRef::F(*f),
            Value::B(b) => ValueRef::B(*b),
            Value::S(s) => ValueRef::S(s),
            Value::D(d) => ValueRef::D(d),
            Value::A(items) => ValueRef::A(Cow::Borrowed(items)),
        }
    }
}

/// A point borrowed from a `PBPoints` body: what [`decode`] would return, without copying
/// the strings (see [`decode_each`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PointRef<'a> {
    /// Measurement name.
    pub name: &'a str,
    /// Tags in wire order.
    pub tags: Vec<(&'a str, &'a str)>,
    /// Fields in wire order (nil fields left out).
    pub fields: Vec<(&'a str, ValueRef<'a>)>,
    /// Unix time in nanoseconds, as sent.
    pub time: i64,
}

impl PointRef<'_> {
    /// The owned [`Point`], as [`decode`] returns it.
    pub fn to_point(&self) -> Point {
        Point {
            name: self.name.to_owned(),
            tags: self
                .tags
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            fields: self
                .fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.to_value()))
                .collect(),
            time: self.time,
        }
    }
}

/// Walks a `PBPoints` message and calls `each` with every point, borrowed from `body`
/// (one reused [`PointRef`], so nothing is allocated per point but array values); returns
/// the number of points. The points are exactly those [`decode`] returns.
///
/// # Errors
/// As [`decode`]. `each` may already have been called for the points before the error.
pub fn decode_each<'a>(
    body: &'a [u8],
    mut each: impl FnMut(&PointRef<'a>),
) -> Result<usize, PbError> {
    decode_each_entry(body, |_, view| each(view))
}

/// As [`decode_each`], and hands `each` the point's entry as it sits on the wire too (see
/// [`entries`]): a point checked by decoding can be passed on without encoding it again.
///
/// # Errors
/// As [`decode_each`].
pub fn decode_each_entry<'a>(
    body: &'a [u8],
    mut each: impl FnMut(&'a [u8], &PointRef<'a>),
) -> Result<usize, PbError> {
    let mut entries = entries(body);
    let mut view = PointRef::default();
    let mut n = 0;
    loop {
        let next = entries.advance().and_then(|entry| {
            let Some((entry, msg)) = entry else {
                return Ok(None);
            };
            decode_point(msg, &mut view)?;
            Ok(Some(entry))
        });
        match next {
            Ok(Some(entry)) => {
                each(entry, &view);
                n += 1;
            }
            Ok(None) => return Ok(n),
            Err(e) => return Err(top_error(n, &e)),
        }
    }
}

/// The points of a `PBPoints` message as they sit on the wire, without decoding them: each
/// entry is the `arr` field of one point (key, length, `PBPoint` message), so each is a
/// `PBPoints` message of that point and entries concatenated in any order are one of those
/// points in that order. Other top-level fields are skipped, as [`decode`] skips them; the
/// entries are therefore those of the points [`decode`] returns.
pub fn entries(body: &[u8]) -> Entries<'_> {
    Entries {
        wire: Wire { buf: body },
        n: 0,
        failed: false,
    }
}

/// Iterator of [`entries`]: yields each point's entry, or once an error (the wire format is
/// broken at that point; the points themselves are not checked) and then nothing.
pub struct Entries<'a> {
    wire: Wire<'a>,
    /// Entries yielded so far.
    n: usize,
    failed: bool,
}

/// A point's entry and the `PBPoint` message inside it.
type EntryAndMessage<'a> = (&'a [u8], &'a [u8]);

impl<'a> Entries<'a> {
    /// The next point's entry and its `PBPoint` message.
    fn advance(&mut self) -> Result<Option<EntryAndMessage<'a>>, String> {
        while !self.wire.buf.is_empty() {
            let start = self.wire.buf;
            let (tag, wt) = self.wire.key()?;
            if tag == 1 {
                expect_wire("PBPoints.arr", wt, WT_LEN)?;
                let msg = self.wire.len_delimited()?;
                let entry = &start[..start.len() - self.wire.buf.len()];
                return Ok(Some((entry, msg)));
            }
            self.wire.skip(wt)?;
        }
        Ok(None)
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<&'a [u8], PbError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.advance() {
            Ok(Some((entry, _))) => {
                self.n += 1;
                Some(Ok(entry))
            }
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(top_error(self.n, &e)))
            }
        }
    }
}

fn top_error(index: usize, e: &str) -> PbError {
    PbError(format!("point #{index}: {e}"))
}

fn utf8<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str, String> {
    std::str::from_utf8(bytes).map_err(|_| format!("{what} is not valid UTF-8"))
}

/// Decodes one `PBPoint` message into `view` (its vectors are reused).
fn decode_point<'a>(msg: &'a [u8], view: &mut PointRef<'a>) -> Result<(), String> {
    let mut wire = Wire { buf: msg };
    view.name = "";
    view.time = 0;
    view.tags.clear();
    view.fields.clear();
    while !wire.buf.is_empty() {
        let (tag, wt) = wire.key()?;
        match tag {
            1 => {
                expect_wire("PBPoint.name", wt, WT_LEN)?;
                view.name = utf8(wire.len_delimited()?, "the measurement name")?;
            }
            2 => {
                expect_wire("PBPoint.fields", wt, WT_LEN)?;
                let raw = wire.len_delimited()?;
                let index = view.tags.len() + view.fields.len();
                add_field(view, raw).map_err(|e| format!("field #{index}: {e}"))?;
            }
            3 => {
                expect_wire("PBPoint.time", wt, WT_VARINT)?;
                view.time = wire.varint()? as i64;
            }
            _ => wire.skip(wt)?,
        }
    }
    Ok(())
}

/// The value of a `Field` as it sits on the wire.
enum RawVal<'a> {
    I(i64),
    U(u64),
    F(f64),
    B(bool),
    D(&'a [u8]),
    S(&'a [u8]),
    A(&'a [u8]),
}

impl RawVal<'_> {
    fn name(&self) -> &'static str {
        match self {
            RawVal::I(_) => "int",
            RawVal::U(_) => "uint",
            RawVal::F(_) => "float",
            RawVal::B(_) => "bool",
            RawVal::D(_) => "bytes",
            RawVal::S(_) => "string",
            RawVal::A(_) => "any",
        }
    }
}

/// Decodes one `Field` message (proto3 rules: the last value of a field wins, unknown
/// fields are skipped) and adds it to the point being built.
fn add_field<'a>(view: &mut PointRef<'a>, msg: &'a [u8]) -> Result<(), String> {
    let mut wire = Wire { buf: msg };
    let mut key: &[u8] = b"";
    let mut val: Option<RawVal<'a>> = None;
    let mut is_tag = false;
    while !wire.buf.is_empty() {
        let (tag, wt) = wire.key()?;
        match (tag, wt) {
            (1, WT_LEN) => key = wire.len_delimited()?,
            (2, WT_VARINT) => val = Some(RawVal::I(wire.varint()? as i64)),
            (3, WT_VARINT) => val = Some(RawVal::U(wire.varint()?)),
            (4, WT_FIXED64) => {
                let b = wire.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                val = Some(RawVal::F(f64::from_le_bytes(a)));
            }
            (5, WT_VARINT) => val = Some(RawVal::B(wire.varint()? != 0)),
            (6, WT_LEN) => val = Some(RawVal::D(wire.len_delimited()?)),
            (11, WT_LEN) => val = Some(RawVal::S(wire.len_delimited()?)),
            (7, WT_LEN) => val = Some(RawVal::A(wire.len_delimited()?)),
            (8, WT_VARINT) => is_tag = wire.varint()? != 0,
            (9, WT_VARINT) => {
                wire.varint()?;
            }
            (10 | 12, WT_LEN) => {
                utf8_check(wire.len_delimited()?, "unit or description")?;
            }
            (1..=12, _) => {
                return Err(format!("Field number {tag} has the wrong wire type {wt}"));
            }
            _ => wire.skip(wt)?,
        }
    }
    let key = utf8(key, "the key")?;
    if is_tag {
        let value = match val {
            Some(RawVal::S(s)) => utf8(s, "the tag value")?,
            None => "",
            Some(other) => {
                return Err(format!(
                    "tag {key:?} has a {} value; tags must be strings",
                    other.name()
                ));
            }
        };
        view.tags.push((key, value));
        return Ok(());
    }
    let value = match val {
        None => return Ok(()), // Datakit's nil field: nothing to keep.
        Some(RawVal::I(i)) => ValueRef::I(i),
        Some(RawVal::U(u)) => ValueRef::U(u),
        Some(RawVal::F(f)) => ValueRef::F(f),
        Some(RawVal::B(b)) => ValueRef::B(b),
        Some(RawVal::D(d)) => ValueRef::D(d),
        Some(RawVal::S(s)) => ValueRef::S(utf8(s, "the string value")?),
        Some(RawVal::A(a)) => {
            let any = schema::Any::decode(a).map_err(|e| format!("field {key:?}: {e}"))?;
            ValueRef::A(Cow::Owned(decode_array(key, &any)?))
        }
    };
    view.fields.push((key, value));
    Ok(())
}

fn utf8_check(bytes: &[u8], what: &str) -> Result<(), String> {
    std::str::from_utf8(bytes)
        .map(|_| ())
        .map_err(|_| format!("{what} is not valid UTF-8"))
}

/// Unpacks a `point.Array` from an `Any`, checking that its elements share one type.
pub(crate) fn decode_array(key: &str, any: &schema::Any) -> Result<Vec<Value>, String> {
    if any.type_url != ARRAY_TYPE_URL {
        return Err(format!(
            "field {key:?} holds an Any of type {:?}; only {ARRAY_TYPE_URL} is supported",
            any.type_url
        ));
    }
    let arr = schema::Array::decode(any.value.as_slice())
        .map_err(|e| format!("field {key:?}: invalid point.Array: {e}"))?;
    basics_to_values(key, arr.arr)
}

/// Converts `BasicTypes` elements, checking that they share one type.
pub(crate) fn basics_to_values(
    key: &str,
    items: Vec<schema::BasicTypes>,
) -> Result<Vec<Value>, String> {
    use schema::Basic;
    let mut out: Vec<Value> = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let v = match item.x {
            None => return Err(format!("field {key:?}: array element #{i} has no value")),
            Some(Basic::I(v)) => Value::I(v),
            Some(Basic::U(v)) => Value::U(v),
            Some(Basic::F(v)) => Value::F(v),
            Some(Basic::B(v)) => Value::B(v),
            Some(Basic::D(v)) => Value::D(v),
            Some(Basic::S(v)) => Value::S(v),
        };
        if let Some(first) = out.first()
            && std::mem::discriminant(first) != std::mem::discriminant(&v)
        {
            return Err(format!(
                "field {key:?}: mixed array ({} after {}); elements must share one type",
                v.type_name(),
                first.type_name()
            ));
        }
        out.push(v);
    }
    Ok(out)
}

/// Converts a model value to a schema `BasicTypes` (arrays are not basic).
pub(crate) fn value_to_basic(v: &Value) -> Option<schema::Basic> {
    use schema::Basic;
    Some(match v {
        Value::I(i) => Basic::I(*i),
        Value::U(u) => Basic::U(*u),
        Value::F(f) => Basic::F(*f),
        Value::B(b) => Basic::B(*b),
        Value::D(d) => Basic::D(d.clone()),
        Value::S(s) => Basic::S(s.clone()),
        Value::A(_) => return None,
    })
}

/// Builds the schema message of a point (tags first), as [`encode`] writes it.
pub fn to_schema(p: &Point) -> schema::PbPoint {
    use schema::{Field, Val};
    let mut fields = Vec::with_capacity(p.tags.len() + p.fields.len());
    for (k, v) in &p.tags {
        fields.push(Field {
            key: k.clone(),
            val: Some(Val::S(v.clone())),
            is_tag: true,
            ..Field::default()
        });
    }
    for (k, v) in &p.fields {
        if !pb_encodable(v) {
            continue;
        }
        let val = match v {
            Value::I(i) => Val::I(*i),
            Value::U(u) => Val::U(*u),
            Value::F(f) => Val::F(*f),
            Value::B(b) => Val::B(*b),
            Value::D(d) => Val::D(d.clone()),
            Value::S(s) => Val::S(s.clone()),
            Value::A(items) => {
                let arr = schema::Array {
                    arr: items
                        .iter()
                        .filter_map(value_to_basic)
                        .map(|x| schema::BasicTypes { x: Some(x) })
                        .collect(),
                };
                Val::A(schema::Any {
                    type_url: ARRAY_TYPE_URL.to_string(),
                    value: arr.encode_to_vec(),
                })
            }
        };
        fields.push(Field {
            key: k.clone(),
            val: Some(val),
            ..Field::default()
        });
    }
    schema::PbPoint {
        name: p.name.clone(),
        fields,
        time: p.time,
        warns: Vec::new(),
        debugs: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Point {
        Point::new("cpu", 1_700_000_000_000_000_001)
            .tag("host", "h1")
            .tag("", "empty-key")
            .field("usage", Value::F(12.5))
            .field("neg", Value::I(-3))
            .field("big", Value::U(u64::MAX))
            .field("ok", Value::B(false))
            .field("raw", Value::D(vec![0, 1, 255]))
            .field("msg", Value::S("héllo".into()))
            .field("empty", Value::S(String::new()))
            .field("ints", Value::A(vec![Value::I(1), Value::I(-1)]))
            .field("none", Value::A(vec![]))
            .field(
                "strs",
                Value::A(vec![Value::S("a".into()), Value::S(String::new())]),
            )
    }

    /// [`sample`], a point with nothing set, and one with a negative time.
    fn edge_points() -> Vec<Point> {
        vec![
            sample(),
            Point::new("", 0),
            Point::new("x", -5).field("f", Value::F(0.0)),
        ]
    }

    #[test]
    fn hand_encoder_matches_the_prost_derived_encoder() {
        let points = edge_points();
        let derived = schema::PbPoints {
            arr: points.iter().map(to_schema).collect(),
        }
        .encode_to_vec();
        assert_eq!(encode(&points), derived);
    }

    #[test]
    fn an_encoded_message_holds_no_spare_capacity() {
        let log = |i: usize| {
            Point::new("socket", i as i64 + 1)
                .tag("host", "h1")
                .tag("service", "app")
                .field("message", Value::S("x".repeat(100 + i % 50)))
                .field("status", Value::S("info".into()))
        };
        for points in [edge_points(), (0..1000).map(log).collect()] {
            let out = encode(&points);
            assert_eq!(out.capacity(), out.len(), "{} points", points.len());
        }
    }

    #[test]
    fn round_trips_every_value_type() {
        let points = vec![sample(), Point::new("x", -5).field("f", Value::F(-0.25))];
        assert_eq!(decode(&encode(&points)).expect("decodes"), points);
    }

    #[test]
    fn decodes_a_message_built_like_datakit_does() {
        use schema::{Field, Val};
        let arr = schema::Array {
            arr: vec![
                schema::BasicTypes {
                    x: Some(schema::Basic::F(1.5)),
                },
                schema::BasicTypes {
                    x: Some(schema::Basic::F(2.0)),
                },
            ],
        };
        let msg = schema::PbPoints {
            arr: vec![schema::PbPoint {
                name: "mem".into(),
                fields: vec![
                    Field {
                        key: "used".into(),
                        val: Some(Val::I(7)),
                        r#type: 3,
                        unit: "B".into(),
                        ..Field::default()
                    },
                    Field {
                        key: "host".into(),
                        val: Some(Val::S("h".into())),
                        is_tag: true,
                        ..Field::default()
                    },
                    Field {
                        key: "nil".into(),
                        val: None,
                        ..Field::default()
                    },
                    Field {
                        key: "a".into(),
                        val: Some(Val::A(schema::Any {
                            type_url: ARRAY_TYPE_URL.into(),
                            value: arr.encode_to_vec(),
                        })),
                        ..Field::default()
                    },
                ],
                time: 42,
                warns: vec![schema::Warn {
                    r#type: "dot_in_key".into(),
                    msg: "x".into(),
                }],
                debugs: vec![schema::Debug { info: "d".into() }],
            }],
        }
        .encode_to_vec();
        let pts = decode(&msg).expect("decodes");
        assert_eq!(
            pts,
            vec![
                Point::new("mem", 42)
                    .tag("host", "h")
                    .field("used", Value::I(7))
                    .field("a", Value::A(vec![Value::F(1.5), Value::F(2.0)]))
            ]
        );
    }

    #[test]
    fn decode_each_borrows_the_points_decode_returns() {
        let points = vec![sample(), Point::new("x", -5).field("f", Value::F(-0.25))];
        let body = encode(&points);
        let mut seen = Vec::new();
        let n = decode_each(&body, |view| {
            seen.push(view.to_point());
        })
        .expect("decodes");
        assert_eq!(n, 2);
        assert_eq!(seen, points);
        let mut first = None;
        decode_each(&body, |view| {
            first.get_or_insert_with(|| (view.name, view.tags.clone(), view.fields[0].clone()));
        })
        .expect("decodes");
        let (name, tags, field) = first.expect("one point");
        assert_eq!(name, "cpu");
        assert_eq!(tags, vec![("host", "h1"), ("", "empty-key")]);
        assert_eq!(field, ("usage", ValueRef::F(12.5)));
    }

    #[test]
    fn decode_each_reports_the_points_before_an_error() {
        let mut body = encode(&[Point::new("a", 1).field("f", Value::I(1))]);
        body.extend_from_slice(b"\x0a\x05abc");
        let mut calls = 0;
        let e = decode_each(&body, |_| calls += 1).expect_err("truncated second point");
        assert_eq!(calls, 1);
        assert!(e.0.starts_with("point #1: "), "{e}");
    }

    #[test]
    fn entries_are_the_points_as_they_sit_on_the_wire() {
        let points = edge_points();
        let body = encode(&points);
        let entries: Vec<&[u8]> = super::entries(&body)
            .collect::<Result<_, _>>()
            .expect("valid");
        assert_eq!(entries.len(), points.len());
        for (entry, p) in entries.iter().zip(&points) {
            assert_eq!(*entry, encode(std::slice::from_ref(p)));
        }
        // Any run of entries is the message of those points; unknown top-level fields are
        // skipped as decode skips them.
        let mut odd = b"\x10\x07".to_vec();
        odd.extend_from_slice(entries[2]);
        odd.extend_from_slice(entries[0]);
        let picked: Vec<&[u8]> = super::entries(&odd)
            .collect::<Result<_, _>>()
            .expect("valid");
        assert_eq!(picked, vec![entries[2], entries[0]]);
        assert_eq!(
            decode(&picked.concat()).expect("decodes"),
            vec![points[2].clone(), points[0].clone()]
        );
        let mut seen = Vec::new();
        let n = decode_each_entry(&body, |entry, view| seen.push((entry, view.to_point())))
            .expect("decodes");
        assert_eq!(n, 3);
        assert_eq!(seen, entries.into_iter().zip(points).collect::<Vec<_>>());
    }

    #[test]
    fn entries_stop_at_the_first_broken_entry() {
        let mut body = encode(&[Point::new("a", 1).field("f", Value::I(1))]);
        body.extend_from_slice(b"\x0a\x05abc");
        let got: Vec<Result<&[u8], PbError>> = entries(&body).collect();
        assert_eq!(got.len(), 2);
        assert!(got[0].is_ok());
        let e = got[1].clone().expect_err("truncated");
        assert!(e.0.starts_with("point #1: "), "{e}");
    }

    #[test]
    fn rejects_garbage_with_an_error() {
        for body in [
            &b"\x0a"[..],
            b"\x0a\x05abc",
            b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
            b"\x08",
            b"\x0b\x0c",
            b"\x0a\x02\x0a\x80",
            b"\x0a\x03\x0a\x01\xff",
            b"\x00",
        ] {
            let e = decode(body).expect_err("garbage");
            assert!(e.0.starts_with("point #0: "), "{body:?}: {e}");
        }
        assert_eq!(decode(b"").expect("empty is no points"), vec![]);
    }

    #[test]
    fn rejects_values_outside_the_model() {
        use schema::{Field, Val};
        let with = |f: Field| {
            schema::PbPoints {
                arr: vec![schema::PbPoint {
                    name: "m".into(),
                    fields: vec![f],
                    ..schema::PbPoint::default()
                }],
            }
            .encode_to_vec()
        };
        let e = decode(&with(Field {
            key: "t".into(),
            val: Some(Val::I(1)),
            is_tag: true,
            ..Field::default()
        }))
        .expect_err("int tag");
        assert!(e.0.contains("tags must be strings"), "{e}");
        let e = decode(&with(Field {
            key: "a".into(),
            val: Some(Val::A(schema::Any {
                type_url: "type.googleapis.com/point.Map".into(),
                value: vec![],
            })),
            ..Field::default()
        }))
        .expect_err("map");
        assert!(e.0.contains("only type.googleapis.com/point.Array"), "{e}");
        let mixed = schema::Array {
            arr: vec![
                schema::BasicTypes {
                    x: Some(schema::Basic::I(1)),
                },
                schema::BasicTypes {
                    x: Some(schema::Basic::S("x".into())),
                },
            ],
        };
        let e = decode(&with(Field {
            key: "a".into(),
            val: Some(Val::A(schema::Any {
                type_url: ARRAY_TYPE_URL.into(),
                value: mixed.encode_to_vec(),
            })),
            ..Field::default()
        }))
        .expect_err("mixed");
        assert!(e.0.contains("mixed array"), "{e}");
    }

    #[test]
    fn decode_with_applies_now_and_precision() {
        let body = encode(&[
            Point::new("a", 0).field("f", Value::I(1)),
            Point::new("b", 1_700_000_000).field("f", Value::I(1)),
        ]);
        let pts = decode_with(
            &body,
            &DecodeOptions::new(crate::lineproto::Precision::Auto, 99),
        )
        .expect("decodes");
        assert_eq!(pts[0].time, 99);
        assert_eq!(pts[1].time, 1_700_000_000_000_000_000);
    }

    #[test]
    fn empty_point_messages_cost_no_more_than_a_point_each() {
        // 100k empty PBPoint entries: 2 bytes each on the wire.
        let body: Vec<u8> = std::iter::repeat_n([0x0a, 0x00], 100_000)
            .flatten()
            .collect();
        let pts = decode(&body).expect("decodes");
        assert_eq!(pts.len(), 100_000);
        // 100k empty Field entries inside one point are dropped as nil fields.
        let mut inner = Vec::new();
        for _ in 0..100_000 {
            inner.extend_from_slice(&[0x12, 0x00]);
        }
        let mut body = vec![0x0a];
        put_varint(inner.len() as u64, &mut body);
        body.extend_from_slice(&inner);
        let pts = decode(&body).expect("decodes");
        assert!(pts[0].fields.is_empty());
    }
}
