//! Serde support for durations written as Go strings (`"10s"`) in TOML.
//!
//! Use with `#[serde(with = "godur")]` on a [`std::time::Duration`] field. Reading accepts a
//! Go duration string or, as Datakit's TOML decoder also does, an integer number of
//! nanoseconds; writing produces a Go string.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

/// Writes `d` as a Go duration string.
pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&dk_proto::duration::format(*d))
}

/// Reads a Go duration string or an integer of nanoseconds.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(GoDurationVisitor)
}

struct GoDurationVisitor;

impl Visitor<'_> for GoDurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"10s\", \"1m30s\" or \"500ms\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        dk_proto::duration::parse(v).map_err(|e| E::custom(e.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        u64::try_from(v)
            .map(Duration::from_nanos)
            .map_err(|_| E::custom(format!("negative duration {v}: write e.g. \"10s\"")))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Ok(Duration::from_nanos(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Deserialize, Serialize)]
    struct T {
        #[serde(with = "super")]
        d: Duration,
    }

    #[test]
    fn reads_strings_and_nanosecond_integers() {
        let t: T = toml::from_str("d = \"1m30s\"").expect("parses");
        assert_eq!(t.d, Duration::from_secs(90));
        let t: T = toml::from_str("d = 1000000000").expect("parses");
        assert_eq!(t.d, Duration::from_secs(1));
        let err = toml::from_str::<T>("d = \"10\"").err().expect("an error");
        assert!(err.message().contains("invalid duration"), "{err}");
        let err = toml::from_str::<T>("d = -5").err().expect("an error");
        assert!(err.message().contains("negative duration"), "{err}");
        let out = toml::to_string(&T {
            d: Duration::from_secs(90),
        })
        .ok();
        assert_eq!(out.as_deref(), Some("d = \"1m30s\"\n"));
    }
}
