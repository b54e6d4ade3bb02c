//! Datakit's JSON point forms: the simple form `{"measurement","tags","fields","time"}` and
//! PB-JSON (proto3 JSON of `PBPoint`), plus the `echo=json` output.
//!
//! Decoding follows cliutils' `Point.UnmarshalJSON`: each element of the body array is tried
//! as PB-JSON first (strict: an unknown key makes it fail), then as the simple form (lenient:
//! unknown keys are ignored, every number is a float). Output is written the way Go's
//! `encoding/json` and gogo's `jsonpb` write it (struct field order, sorted map keys, HTML
//! characters escaped, Go float formatting), so echoes match Datakit byte for byte.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::Value as Json;

use crate::lineproto::{DecodeOptions, Precision, write_i64, write_u64};
use crate::normalize::Warn;
use crate::pb::{ARRAY_TYPE_URL, schema};
use crate::{Point, Value};

/// A body that is not valid point JSON.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("json decode error: {0}")]
pub struct JsonError(pub String);

/// Decodes a JSON array of points (each element tried as PB-JSON, then as simple JSON).
/// Times are nanoseconds; a missing or zero time becomes `now_ns`.
///
/// # Errors
/// [`JsonError`] naming the element that failed.
pub fn decode(body: &[u8], now_ns: i64) -> Result<Vec<Point>, JsonError> {
    decode_with(body, &DecodeOptions::new(Precision::Ns, now_ns))
}

/// As [`decode`], with times converted from `opts.precision` (Datakit applies the
/// `precision` query parameter to JSON bodies too).
///
/// # Errors
/// [`JsonError`] naming the element that failed.
pub fn decode_with(body: &[u8], opts: &DecodeOptions) -> Result<Vec<Point>, JsonError> {
    let items = parse_array(body)?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let point = match from_pbjson(&item) {
            Ok(p) => p,
            Err(pb_err) => from_simple(item).map_err(|e| {
                JsonError(format!(
                    "point #{i}: neither simple JSON ({e}) nor PB-JSON ({pb_err})"
                ))
            })?,
        };
        out.push(fix_time(point, i, opts)?);
    }
    Ok(out)
}

/// Decodes a PB-JSON array of points (`application/pbjson; proto=com.guance.Point`).
/// Times are kept as sent (0 stays 0); see [`decode_pbjson_with`].
///
/// # Errors
/// [`JsonError`] naming the element that failed.
pub fn decode_pbjson(body: &[u8]) -> Result<Vec<Point>, JsonError> {
    parse_array(body)?
        .iter()
        .enumerate()
        .map(|(i, item)| from_pbjson(item).map_err(|e| JsonError(format!("point #{i}: {e}"))))
        .collect()
}

/// As [`decode_pbjson`], with zero times set to `opts.now_ns` and others converted from
/// `opts.precision`.
///
/// # Errors
/// [`JsonError`] naming the element that failed.
pub fn decode_pbjson_with(body: &[u8], opts: &DecodeOptions) -> Result<Vec<Point>, JsonError> {
    decode_pbjson(body)?
        .into_iter()
        .enumerate()
        .map(|(i, p)| fix_time(p, i, opts))
        .collect()
}

fn fix_time(mut p: Point, i: usize, opts: &DecodeOptions) -> Result<Point, JsonError> {
    p.time = opts.point_time(Some(p.time)).ok_or_else(|| {
        JsonError(format!(
            "point #{i}: time {} overflows nanoseconds with precision {:?}",
            p.time, opts.precision
        ))
    })?;
    Ok(p)
}

fn parse_array(body: &[u8]) -> Result<Vec<Json>, JsonError> {
    match serde_json::from_slice::<Json>(body) {
        Ok(Json::Array(items)) => Ok(items),
        Ok(other) => Err(JsonError(format!(
            "the body must be a JSON array of points, got {}",
            kind(&other)
        ))),
        Err(e) => Err(JsonError(format!("invalid JSON: {e}"))),
    }
}

fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

// ---------------------------------------------------------------------------------------
// Simple JSON

fn from_simple(item: Json) -> Result<Point, String> {
    let Json::Object(obj) = item else {
        return Err(format!("expected an object, got {}", kind(&item)));
    };
    let mut point = Point::default();
    for (k, v) in obj {
        match (k.as_str(), v) {
            (_, Json::Null) => {}
            ("measurement", Json::String(s)) => point.name = s,
            ("measurement", v) => {
                return Err(format!(
                    "\"measurement\" must be a string, got {}",
                    kind(&v)
                ));
            }
            ("tags", Json::Object(tags)) => {
                for (tk, tv) in tags {
                    match tv {
                        Json::String(s) => point.tags.push((tk, s)),
                        Json::Null => point.tags.push((tk, String::new())),
                        other => {
                            return Err(format!(
                                "tag {tk:?} must be a string, got {}",
                                kind(&other)
                            ));
                        }
                    }
                }
            }
            ("tags", v) => return Err(format!("\"tags\" must be an object, got {}", kind(&v))),
            ("fields", Json::Object(fields)) => {
                for (fk, fv) in fields {
                    if let Some(v) = simple_value(fv) {
                        point.fields.push((fk, v));
                    }
                }
            }
            ("fields", v) => {
                return Err(format!("\"fields\" must be an object, got {}", kind(&v)));
            }
            ("time", Json::Number(n)) => {
                point.time = n
                    .as_i64()
                    .ok_or_else(|| format!("\"time\" must be an integer (ns), got {n}"))?;
            }
            ("time", v) => {
                return Err(format!(
                    "\"time\" must be an integer (ns), got {}",
                    kind(&v)
                ));
            }
            _ => {} // Unknown keys are ignored, as by Go's encoding/json.
        }
    }
    // A tag replaces a field of the same key (Datakit's `SetTag`).
    if !point.tags.is_empty() {
        let tags = &point.tags;
        point
            .fields
            .retain(|(k, _)| !tags.iter().any(|(t, _)| t == k));
    }
    Ok(point)
}

/// A simple-JSON field value; `None` for what Datakit ignores (null, objects, mixed or
/// nested arrays).
fn simple_value(v: Json) -> Option<Value> {
    match v {
        Json::Number(n) => n.as_f64().map(Value::F),
        Json::Bool(b) => Some(Value::B(b)),
        Json::String(s) => Some(Value::S(s)),
        Json::Array(items) => {
            let mut out: Vec<Value> = Vec::with_capacity(items.len());
            for item in items {
                let v = match item {
                    Json::Number(n) => Value::F(n.as_f64()?),
                    Json::Bool(b) => Value::B(b),
                    Json::String(s) => Value::S(s),
                    _ => return None,
                };
                if let Some(first) = out.first()
                    && std::mem::discriminant(first) != std::mem::discriminant(&v)
                {
                    return None;
                }
                out.push(v);
            }
            Some(Value::A(out))
        }
        Json::Null | Json::Object(_) => None,
    }
}

// ---------------------------------------------------------------------------------------
// PB-JSON

fn from_pbjson(item: &Json) -> Result<Point, String> {
    let Json::Object(obj) = item else {
        return Err(format!("expected an object, got {}", kind(item)));
    };
    if let Some(k) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "name" | "fields" | "time" | "warns" | "debugs"))
    {
        return Err(format!("unknown PBPoint key {k:?}"));
    }
    let mut point = Point::default();
    for (k, v) in obj {
        if v.is_null() {
            continue;
        }
        match k.as_str() {
            "name" => point.name = string(v, "name")?,
            "fields" => {
                let Json::Array(fields) = v else {
                    return Err(format!("\"fields\" must be an array, got {}", kind(v)));
                };
                for (i, f) in fields.iter().enumerate() {
                    pb_field(&mut point, f).map_err(|e| format!("fields[{i}]: {e}"))?;
                }
            }
            "time" => point.time = int64(v, "time")?,
            "warns" | "debugs" => {
                if !v.is_array() {
                    return Err(format!("{k:?} must be an array, got {}", kind(v)));
                }
            }
            other => return Err(format!("unknown PBPoint key {other:?}")),
        }
    }
    Ok(point)
}

fn pb_field(point: &mut Point, f: &Json) -> Result<(), String> {
    let Json::Object(obj) = f else {
        return Err(format!("expected an object, got {}", kind(f)));
    };
    let mut key = String::new();
    let mut is_tag = false;
    let mut val: Option<Value> = None;
    for (k, v) in obj {
        if v.is_null() {
            continue;
        }
        let parsed = match k.as_str() {
            "key" => {
                key = string(v, "key")?;
                None
            }
            "is_tag" | "isTag" => {
                is_tag = v.as_bool().ok_or("\"is_tag\" must be a boolean")?;
                None
            }
            "type" => {
                if !(v.is_string() || v.is_number()) {
                    return Err("\"type\" must be a MetricType name or number".into());
                }
                None
            }
            "unit" | "description" => {
                string(v, k)?;
                None
            }
            "i" => Some(Value::I(int64(v, "i")?)),
            "u" => Some(Value::U(uint64(v, "u")?)),
            "f" => Some(Value::F(double(v, "f")?)),
            "b" => Some(Value::B(v.as_bool().ok_or("\"b\" must be a boolean")?)),
            "d" => Some(Value::D(bytes(v, "d")?)),
            "s" => Some(Value::S(string(v, "s")?)),
            "a" => Some(Value::A(any_array(v)?)),
            other => return Err(format!("unknown Field key {other:?}")),
        };
        if let Some(p) = parsed {
            if val.is_some() {
                return Err(format!("more than one value in the oneof (at {k:?})"));
            }
            val = Some(p);
        }
    }
    if is_tag {
        match val {
            Some(Value::S(s)) => point.tags.push((key, s)),
            None => point.tags.push((key, String::new())),
            Some(other) => {
                return Err(format!(
                    "tag {key:?} has a {} value; tags must be strings",
                    other.type_name()
                ));
            }
        }
    } else if let Some(v) = val {
        point.fields.push((key, v));
    }
    Ok(())
}

fn any_array(v: &Json) -> Result<Vec<Value>, String> {
    let Json::Object(obj) = v else {
        return Err(format!("\"a\" must be an object, got {}", kind(v)));
    };
    match obj.get("@type").and_then(Json::as_str) {
        Some(ARRAY_TYPE_URL) => {}
        Some(other) => {
            return Err(format!(
                "\"a\" has @type {other:?}; only {ARRAY_TYPE_URL} is supported"
            ));
        }
        None => return Err("\"a\" has no \"@type\"".into()),
    }
    let mut items = Vec::new();
    for (k, v) in obj {
        match (k.as_str(), v) {
            ("@type", _) | (_, Json::Null) => {}
            ("arr", Json::Array(arr)) => {
                for (i, el) in arr.iter().enumerate() {
                    items.push(basic(el).map_err(|e| format!("\"a\".arr[{i}]: {e}"))?);
                }
            }
            ("arr", other) => return Err(format!("\"arr\" must be an array, got {}", kind(other))),
            (other, _) => return Err(format!("unknown point.Array key {other:?}")),
        }
    }
    crate::pb::basics_to_values("a", items)
}

fn basic(v: &Json) -> Result<schema::BasicTypes, String> {
    use schema::Basic;
    let Json::Object(obj) = v else {
        return Err(format!("expected an object, got {}", kind(v)));
    };
    let mut x = None;
    for (k, v) in obj {
        if v.is_null() {
            continue;
        }
        let b = match k.as_str() {
            "i" => Basic::I(int64(v, "i")?),
            "u" => Basic::U(uint64(v, "u")?),
            "f" => Basic::F(double(v, "f")?),
            "b" => Basic::B(v.as_bool().ok_or("\"b\" must be a boolean")?),
            "d" => Basic::D(bytes(v, "d")?),
            "s" => Basic::S(string(v, "s")?),
            other => return Err(format!("unknown BasicTypes key {other:?}")),
        };
        if x.is_some() {
            return Err("more than one value in the oneof".into());
        }
        x = Some(b);
    }
    Ok(schema::BasicTypes { x })
}

fn string(v: &Json, what: &str) -> Result<String, String> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("{what:?} must be a string, got {}", kind(v)))
}

fn int64(v: &Json, what: &str) -> Result<i64, String> {
    let parsed = match v {
        Json::String(s) => s.trim().parse::<i64>().ok(),
        Json::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| {
                    f.fract() == 0.0
                        && *f >= -9.223_372_036_854_776e18
                        && *f < 9.223_372_036_854_776e18
                })
                .map(|f| f as i64)
        }),
        _ => None,
    };
    parsed.ok_or_else(|| format!("{what:?} must be an int64 (string or number), got {v}"))
}

fn uint64(v: &Json, what: &str) -> Result<u64, String> {
    let parsed = match v {
        Json::String(s) => s.trim().parse::<u64>().ok(),
        Json::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1.844_674_407_370_955_2e19)
                .map(|f| f as u64)
        }),
        _ => None,
    };
    parsed.ok_or_else(|| format!("{what:?} must be a uint64 (string or number), got {v}"))
}

fn double(v: &Json, what: &str) -> Result<f64, String> {
    match v {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            s => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        },
        _ => None,
    }
    .ok_or_else(|| format!("{what:?} must be a double, got {v}"))
}

fn bytes(v: &Json, what: &str) -> Result<Vec<u8>, String> {
    let s = v
        .as_str()
        .ok_or_else(|| format!("{what:?} must be a base64 string, got {}", kind(v)))?;
    STANDARD
        .decode(s)
        .or_else(|_| URL_SAFE.decode(s))
        .or_else(|_| STANDARD_NO_PAD.decode(s))
        .or_else(|_| URL_SAFE_NO_PAD.decode(s))
        .map_err(|e| format!("{what:?} is not valid base64: {e}"))
}

// ---------------------------------------------------------------------------------------
// Output

/// Encodes points as Datakit's `echo=json` response body:
/// `[{"measurement":..,"tags":{..},"fields":{..},"time":..}]`, with tag and field keys
/// sorted, `tags` left out when empty and `time` left out when 0 (Go's `omitempty`).
/// A non-finite float, which Go cannot marshal, is written as `null`.
pub fn encode(points: &[Point]) -> Vec<u8> {
    let mut out = Vec::with_capacity(points.iter().map(|p| p.approx_size() + 48).sum());
    out.push(b'[');
    for (i, p) in points.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"measurement\":");
        write_str(&p.name, &mut out);
        if !p.tags.is_empty() {
            out.extend_from_slice(b",\"tags\":{");
            let tags: BTreeMap<&str, &str> = p
                .tags
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            for (j, (k, v)) in tags.into_iter().enumerate() {
                if j > 0 {
                    out.push(b',');
                }
                write_str(k, &mut out);
                out.push(b':');
                write_str(v, &mut out);
            }
            out.push(b'}');
        }
        out.extend_from_slice(b",\"fields\":{");
        let fields: BTreeMap<&str, &Value> =
            p.fields.iter().map(|(k, v)| (k.as_str(), v)).collect();
        for (j, (k, v)) in fields.into_iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            write_str(k, &mut out);
            out.push(b':');
            write_plain_value(v, &mut out);
        }
        out.push(b'}');
        if p.time != 0 {
            out.extend_from_slice(b",\"time\":");
            write_i64(p.time, &mut out);
        }
        out.push(b'}');
    }
    out.push(b']');
    out
}

fn write_plain_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::I(i) => write_i64(*i, out),
        Value::U(u) => write_u64(*u, out),
        Value::F(f) => write_go_float(*f, out),
        Value::B(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::S(s) => write_str(s, out),
        Value::D(d) => write_base64(d, out),
        Value::A(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_plain_value(item, out);
            }
            out.push(b']');
        }
    }
}

/// Encodes points as PB-JSON (`echo=pbjson`), as gogo `jsonpb` writes a `PBPoint`: proto
/// field order, 64-bit integers as strings, bytes in base64, zero values left out.
/// `warns[i]`, when present, is attached to `points[i]`.
pub fn encode_pbjson(points: &[Point], warns: &[Vec<Warn>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(points.iter().map(|p| p.approx_size() * 2 + 48).sum());
    out.push(b'[');
    for (i, p) in points.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_pbjson_point(p, warns.get(i).map_or(&[][..], Vec::as_slice), &mut out);
    }
    out.push(b']');
    out
}

fn write_pbjson_point(p: &Point, warns: &[Warn], out: &mut Vec<u8>) {
    out.push(b'{');
    let mut sep = false;
    let mut key = |name: &str, out: &mut Vec<u8>| {
        if sep {
            out.push(b',');
        }
        sep = true;
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
    };
    if !p.name.is_empty() {
        key("name", out);
        write_str(&p.name, out);
    }
    if !p.tags.is_empty() || !p.fields.is_empty() {
        key("fields", out);
        out.push(b'[');
        let mut first = true;
        for (k, v) in &p.tags {
            if !first {
                out.push(b',');
            }
            first = false;
            out.push(b'{');
            if !k.is_empty() {
                out.extend_from_slice(b"\"key\":");
                write_str(k, out);
                out.push(b',');
            }
            out.extend_from_slice(b"\"s\":");
            write_str(v, out);
            out.extend_from_slice(b",\"is_tag\":true}");
        }
        for (k, v) in &p.fields {
            if matches!(v, Value::A(items) if items.iter().any(|i| matches!(i, Value::A(_)))) {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            out.push(b'{');
            if !k.is_empty() {
                out.extend_from_slice(b"\"key\":");
                write_str(k, out);
                out.push(b',');
            }
            write_pbjson_oneof(v, true, out);
            out.push(b'}');
        }
        out.push(b']');
    }
    if p.time != 0 {
        key("time", out);
        out.push(b'"');
        write_i64(p.time, out);
        out.push(b'"');
    }
    if !warns.is_empty() {
        key("warns", out);
        out.push(b'[');
        for (i, w) in warns.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'{');
            let mut inner = false;
            if !w.kind.is_empty() {
                out.extend_from_slice(b"\"type\":");
                write_str(w.kind, out);
                inner = true;
            }
            if !w.message.is_empty() {
                if inner {
                    out.push(b',');
                }
                out.extend_from_slice(b"\"message\":");
                write_str(&w.message, out);
            }
            out.push(b'}');
        }
        out.push(b']');
    }
    out.push(b'}');
}

/// Writes `"x":value` for the oneof member of `v` (`Field.val` or, in arrays, `BasicTypes.x`).
fn write_pbjson_oneof(v: &Value, top: bool, out: &mut Vec<u8>) {
    match v {
        Value::I(i) => {
            out.extend_from_slice(b"\"i\":\"");
            write_i64(*i, out);
            out.push(b'"');
        }
        Value::U(u) => {
            out.extend_from_slice(b"\"u\":\"");
            write_u64(*u, out);
            out.push(b'"');
        }
        Value::F(f) => {
            out.extend_from_slice(b"\"f\":");
            if f.is_nan() {
                out.extend_from_slice(b"\"NaN\"");
            } else if f.is_infinite() {
                out.extend_from_slice(if *f > 0.0 {
                    b"\"Infinity\""
                } else {
                    b"\"-Infinity\""
                });
            } else {
                write_go_float(*f, out);
            }
        }
        Value::B(b) => {
            out.extend_from_slice(if *b { b"\"b\":true" } else { b"\"b\":false" });
        }
        Value::D(d) => {
            out.extend_from_slice(b"\"d\":");
            write_base64(d, out);
        }
        Value::S(s) => {
            out.extend_from_slice(b"\"s\":");
            write_str(s, out);
        }
        Value::A(items) if top => {
            out.extend_from_slice(b"\"a\":{\"@type\":\"");
            out.extend_from_slice(ARRAY_TYPE_URL.as_bytes());
            out.push(b'"');
            if !items.is_empty() {
                out.extend_from_slice(b",\"arr\":[");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.push(b'{');
                    write_pbjson_oneof(item, false, out);
                    out.push(b'}');
                }
                out.push(b']');
            }
            out.push(b'}');
        }
        Value::A(_) => {}
    }
}

fn write_base64(d: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    let start = out.len();
    out.resize(start + base64::encoded_len(d.len(), true).unwrap_or(0), 0);
    let n = STANDARD.encode_slice(d, &mut out[start..]).unwrap_or(0);
    out.truncate(start + n);
    out.push(b'"');
}

/// Writes a float as Go's `encoding/json` does: shortest round-trip digits, plain notation
/// for 1e-6 <= |f| < 1e21, else `1e+21` / `1e-7` style; non-finite floats as `null`.
pub(crate) fn write_go_float(f: f64, out: &mut Vec<u8>) {
    use std::io::Write as _;
    if !f.is_finite() {
        out.extend_from_slice(b"null");
        return;
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let start = out.len();
        let _ = write!(out, "{f:e}");
        // Rust writes `1e21` / `1.5e-7`; Go writes `1e+21` / `1.5e-7`.
        if let Some(e) = out[start..].iter().position(|&b| b == b'e')
            && out.get(start + e + 1) != Some(&b'-')
        {
            out.insert(start + e + 1, b'+');
        }
    } else {
        let _ = write!(out, "{f}");
    }
}

/// Writes a JSON string as Go's `encoding/json` does (HTML-safe: `<`, `>`, `&`, U+2028 and
/// U+2029 as `\u` escapes).
pub(crate) fn write_str(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let esc: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0..=0x1f | b'<' | b'>' | b'&' => Some(b""),
            0xe2 if bytes.get(i + 1) == Some(&0x80)
                && matches!(bytes.get(i + 2), Some(0xa8 | 0xa9)) =>
            {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(if bytes[i + 2] == 0xa8 {
                    b"\\u2028"
                } else {
                    b"\\u2029"
                });
                i += 3;
                start = i;
                continue;
            }
            _ => None,
        };
        if let Some(e) = esc {
            out.extend_from_slice(&bytes[start..i]);
            if e.is_empty() {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            } else {
                out.extend_from_slice(e);
            }
            start = i + 1;
        }
        i += 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000_000_000;

    #[test]
    fn decodes_simple_json_with_numbers_as_floats() {
        let body = br#"[{"measurement":"cpu","tags":{"host":"h1"},"fields":{"usage":12,"ok":true,"msg":"hi","arr":[1,2],"nil":null,"obj":{"x":1},"mixed":[1,"a"]},"time":123,"extra":"ignored"}]"#;
        let pts = decode(body, NOW).expect("decodes");
        assert_eq!(
            pts,
            vec![
                Point::new("cpu", 123)
                    .tag("host", "h1")
                    .field("arr", Value::A(vec![Value::F(1.0), Value::F(2.0)]))
                    .field("msg", Value::S("hi".into()))
                    .field("ok", Value::B(true))
                    .field("usage", Value::F(12.0))
            ]
        );
    }

    #[test]
    fn simple_json_without_time_gets_now_and_tag_replaces_field() {
        let pts = decode(
            br#"[{"measurement":"m","tags":{"a":"x"},"fields":{"a":1,"b":2}}]"#,
            NOW,
        )
        .expect("decodes");
        assert_eq!(pts[0].time, NOW);
        assert_eq!(pts[0].tags, vec![("a".to_string(), "x".to_string())]);
        assert_eq!(pts[0].fields, vec![("b".to_string(), Value::F(2.0))]);
    }

    #[test]
    fn decodes_pbjson_elements_in_the_mixed_decoder() {
        let body = br#"[{"name":"mem","fields":[{"key":"host","s":"h","is_tag":true},{"key":"used","i":"42"},{"key":"free","u":7},{"key":"pct","f":1.5},{"key":"d","d":"aGk="},{"key":"arr","a":{"@type":"type.googleapis.com/point.Array","arr":[{"i":"1"},{"i":"2"}]}},{"key":"nil"}],"time":"99","warns":[{"type":"x","message":"y"}]}]"#;
        let want = vec![
            Point::new("mem", 99)
                .tag("host", "h")
                .field("used", Value::I(42))
                .field("free", Value::U(7))
                .field("pct", Value::F(1.5))
                .field("d", Value::D(b"hi".to_vec()))
                .field("arr", Value::A(vec![Value::I(1), Value::I(2)])),
        ];
        assert_eq!(decode(body, NOW).expect("decodes"), want);
        assert_eq!(decode_pbjson(body).expect("decodes"), want);
    }

    #[test]
    fn pbjson_only_decoder_rejects_simple_json_and_keeps_zero_time() {
        let e = decode_pbjson(br#"[{"measurement":"m","fields":{"a":1}}]"#).expect_err("simple");
        assert!(
            e.0.contains("point #0") && e.0.contains("measurement"),
            "{e}"
        );
        let pts = decode_pbjson(br#"[{"name":"m","fields":[{"key":"a","b":true}]}]"#).expect("ok");
        assert_eq!(pts[0].time, 0);
        let pts = decode_pbjson_with(
            br#"[{"name":"m","fields":[{"key":"a","b":true}]}]"#,
            &DecodeOptions::new(Precision::Ns, NOW),
        )
        .expect("ok");
        assert_eq!(pts[0].time, NOW);
    }

    #[test]
    fn reports_the_failing_element() {
        for (body, what) in [
            (&br#"{"measurement":"m"}"#[..], "must be a JSON array"),
            (br#"[{"measurement":"m","fields":{"a":1}}, 5]"#, "point #1"),
            (
                br#"[{"measurement":"m","tags":{"a":1},"fields":{"a":1}}]"#,
                "tag \"a\" must be a string",
            ),
            (
                br#"[{"measurement":"m","fields":{"a":1},"time":1.5}]"#,
                "\"time\" must be an integer",
            ),
            (br#"[{"measurement":"m""#, "invalid JSON"),
            (b"\xff", "invalid JSON"),
        ] {
            let e = decode(body, NOW).expect_err("invalid");
            assert!(e.0.contains(what), "{e}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let body = format!("[{}{}]", "[".repeat(10_000), "]".repeat(10_000));
        assert!(decode(body.as_bytes(), NOW).is_err());
    }

    #[test]
    fn decode_with_applies_precision() {
        let pts = decode_with(
            br#"[{"measurement":"m","fields":{"a":1},"time":1700000000}]"#,
            &DecodeOptions::new(Precision::Auto, NOW),
        )
        .expect("ok");
        assert_eq!(pts[0].time, 1_700_000_000_000_000_000);
    }

    #[test]
    fn encodes_echo_json_like_go() {
        let p = Point::new("cpu", 5)
            .tag("z", "1")
            .tag("a", "<&>")
            .field("s", Value::S("x\"\n\u{2028}".into()))
            .field("f", Value::F(3.0))
            .field("big", Value::F(1e21))
            .field("small", Value::F(1.5e-7))
            .field("i", Value::I(-1))
            .field("u", Value::U(u64::MAX))
            .field("d", Value::D(b"hi".to_vec()))
            .field("arr", Value::A(vec![Value::I(1), Value::I(2)]));
        let got = String::from_utf8(encode(&[
            p,
            Point::new("bare", 0).field("b", Value::B(false)),
        ]))
        .expect("utf8");
        assert_eq!(
            got,
            r#"[{"measurement":"cpu","tags":{"a":"\u003c\u0026\u003e","z":"1"},"fields":{"arr":[1,2],"big":1e+21,"d":"aGk=","f":3,"i":-1,"s":"x\"\n\u2028","small":1.5e-7,"u":18446744073709551615},"time":5},{"measurement":"bare","fields":{"b":false}}]"#
        );
        assert_eq!(encode(&[]), b"[]");
    }

    #[test]
    fn encodes_pbjson_like_jsonpb_and_decodes_it_back() {
        let p = Point::new("cpu", 5)
            .tag("host", "h")
            .field("i", Value::I(-1))
            .field("u", Value::U(2))
            .field("f", Value::F(0.5))
            .field("b", Value::B(true))
            .field("d", Value::D(b"hi".to_vec()))
            .field("s", Value::S("x".into()))
            .field("a", Value::A(vec![Value::S("p".into())]));
        let warns = vec![vec![Warn {
            kind: "dot_in_key",
            message: "m".into(),
        }]];
        let got = String::from_utf8(encode_pbjson(std::slice::from_ref(&p), &warns)).expect("utf8");
        assert_eq!(
            got,
            r#"[{"name":"cpu","fields":[{"key":"host","s":"h","is_tag":true},{"key":"i","i":"-1"},{"key":"u","u":"2"},{"key":"f","f":0.5},{"key":"b","b":true},{"key":"d","d":"aGk="},{"key":"s","s":"x"},{"key":"a","a":{"@type":"type.googleapis.com/point.Array","arr":[{"s":"p"}]}}],"time":"5","warns":[{"type":"dot_in_key","message":"m"}]}]"#
        );
        assert_eq!(decode_pbjson(got.as_bytes()).expect("decodes"), vec![p]);
    }

    #[test]
    fn go_float_formatting_matches_encoding_json() {
        let cases = [
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (0.1, "0.1"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (1.5e300, "1.5e+300"),
            (1e-6, "0.000001"),
            (1e-7, "1e-7"),
            (1.25e-10, "1.25e-10"),
            (f64::NAN, "null"),
        ];
        for (f, want) in cases {
            let mut out = Vec::new();
            write_go_float(f, &mut out);
            assert_eq!(String::from_utf8(out).expect("utf8"), want, "{f}");
        }
    }
}
