//! Datakit's point checks and normalisation (spec §2.4): limits, key rules, per-category rules.
//!
//! STUB: signatures are the contract; the implementation is being written.

use crate::{Category, Point};

/// One fix applied to a point, with Datakit's warn type (`exceed_max_tags`, `dot_in_key`...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warn {
    /// Datakit's warn type.
    pub kind: &'static str,
    /// Human-readable detail.
    pub message: String,
}

/// The limits of spec §2.4.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Max measurement name length in bytes.
    pub max_measurement_len: usize,
    /// Max tags per point.
    pub max_tags: usize,
    /// Max fields per point.
    pub max_fields: usize,
    /// Max tag or field key length in bytes.
    pub max_key_len: usize,
    /// Max tag value length in bytes.
    pub max_tag_value_len: usize,
    /// Max total size of all tag keys and values in bytes.
    pub max_tags_total: usize,
    /// Max string or bytes field length.
    pub max_field_value_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_measurement_len: 1024,
            max_tags: 256,
            max_fields: 1024,
            max_key_len: 256,
            max_tag_value_len: 1024,
            max_tags_total: 64 * 1024,
            max_field_value_len: 32 * 1024 * 1024,
        }
    }
}

/// Normalises a point in place for its category and returns the fixes made.
/// Returns `Err` with the warnings when the point must be dropped (e.g. no fields left).
///
/// # Errors
/// The warnings that made the point unusable.
pub fn normalize(
    point: &mut Point,
    category: Category,
    limits: &Limits,
) -> Result<Vec<Warn>, Vec<Warn>> {
    let _ = (point, category, limits);
    Ok(Vec::new())
}
