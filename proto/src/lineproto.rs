//! Line protocol decoding and encoding with Datakit's rules (spec §2.3).
//!
//! STUB: signatures are the contract; the implementation is being written.

use crate::Point;

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
}

/// Options for [`decode`].
#[derive(Clone, Debug)]
pub struct DecodeOptions {
    /// Precision of timestamps in the body.
    pub precision: Precision,
    /// Time (ns) given to points without a timestamp.
    pub now_ns: i64,
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

/// Decodes a line-protocol body into points.
///
/// # Errors
/// [`LpError`] naming the first bad line and position.
pub fn decode(body: &[u8], opts: &DecodeOptions) -> Result<Vec<Point>, LpError> {
    let _ = (body, opts);
    Err(LpError {
        line: 0,
        column: 0,
        message: "not implemented yet".into(),
    })
}

/// Appends one point as a line (without the trailing newline) to `out`.
pub fn encode_point(point: &Point, out: &mut Vec<u8>) {
    let _ = (point, out);
}

/// Encodes points as `\n`-separated lines (no trailing newline).
pub fn encode(points: &[Point]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, p) in points.iter().enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        encode_point(p, &mut out);
    }
    out
}
