//! Protobuf `PBPoints` (Datakit's `point.proto`, package `point`) encoding and decoding.
//!
//! STUB: signatures are the contract; the implementation is being written.

use crate::Point;

/// A body that is not a valid `PBPoints` message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("protobuf decode error: {0}")]
pub struct PbError(pub String);

/// Encodes points as a `PBPoints` message.
pub fn encode(points: &[Point]) -> Vec<u8> {
    let _ = points;
    Vec::new()
}

/// Decodes a `PBPoints` message.
///
/// # Errors
/// [`PbError`] for malformed protobuf or values that do not fit the point model.
pub fn decode(body: &[u8]) -> Result<Vec<Point>, PbError> {
    let _ = body;
    Err(PbError("not implemented yet".into()))
}
