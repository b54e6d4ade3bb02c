//! [`GoDuration`]: a duration written as a Go string (`"10s"`) in TOML.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration read from a Go duration string (`"1m30s"`) or, as Datakit's TOML decoder also
/// accepts, an integer number of nanoseconds; written back as a Go string.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoDuration(pub Duration);

impl GoDuration {
    /// `n` seconds.
    pub const fn secs(n: u64) -> Self {
        GoDuration(Duration::from_secs(n))
    }

    /// The duration.
    pub const fn get(self) -> Duration {
        self.0
    }
}

impl From<Duration> for GoDuration {
    fn from(d: Duration) -> Self {
        GoDuration(d)
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&dk_proto::duration::format(self.0))
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&dk_proto::duration::format(self.0))
    }
}

struct GoDurationVisitor;

impl Visitor<'_> for GoDurationVisitor {
    type Value = GoDuration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"10s\", \"1m30s\" or \"500ms\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<GoDuration, E> {
        dk_proto::duration::parse(v)
            .map(GoDuration)
            .map_err(|e| E::custom(e.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<GoDuration, E> {
        u64::try_from(v)
            .map(|n| GoDuration(Duration::from_nanos(n)))
            .map_err(|_| E::custom(format!("negative duration {v}: write e.g. \"10s\"")))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<GoDuration, E> {
        Ok(GoDuration(Duration::from_nanos(v)))
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(GoDurationVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Serialize)]
    struct T {
        d: GoDuration,
    }

    #[test]
    fn reads_strings_and_nanosecond_integers() {
        let t: T = toml::from_str("d = \"1m30s\"").expect("parses");
        assert_eq!(t.d, GoDuration::secs(90));
        let t: T = toml::from_str("d = 1000000000").expect("parses");
        assert_eq!(t.d, GoDuration::secs(1));
        let err = toml::from_str::<T>("d = \"10\"").err().expect("an error");
        assert!(err.message().contains("invalid duration"), "{err}");
        assert_eq!(
            toml::to_string(&T {
                d: GoDuration::secs(90)
            })
            .ok()
            .as_deref(),
            Some("d = \"1m30s\"\n")
        );
    }
}
