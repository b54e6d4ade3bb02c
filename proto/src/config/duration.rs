//! The one duration reader of every config: Go duration strings (`"10s"`, `"1m30s"`, `"1.5s"`,
//! `"500ms"`, `"1h"`) and bare numbers read as Datakit reads them for the field's Go type.
//!
//! Datakit has two kinds of duration fields, and a bare number means a different thing in each:
//! * `time.Duration` ([`go`]): an integer counts nanoseconds (`interval = 10` is 10 ns); a float
//!   does not load.
//! * `datakit.Duration` ([`seconds`]): an integer counts seconds; a float counts seconds with the
//!   fraction dropped (`1.5` is 1 s).
//!
//! Both take the number as Datakit does, and the collector ([`super::decode`]) turns every
//! non-zero bare number into a warning that says what it means and how to write it.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

/// Starts the message of the error a bare number raises; the collector turns it into a warning.
pub(crate) const BARE_MARK: &str = "\u{1}bare-duration\u{1}";

/// How a bare number of one kind of field is read.
pub(crate) trait Unit {
    /// `(value, Go string that means the same, words for the reading)` of an integer.
    fn integer(n: u64) -> (Duration, String, &'static str);
    /// The same for a float; `Err` with the fix when the kind does not take floats.
    fn float(f: f64) -> Result<(Duration, String, &'static str), &'static str>;
}

/// `time.Duration` fields.
pub(crate) struct Nanos;
/// `datakit.Duration` fields.
pub(crate) struct Seconds;

impl Unit for Nanos {
    fn integer(n: u64) -> (Duration, String, &'static str) {
        let d = Duration::from_nanos(n);
        (d, format!("{n}ns"), "a bare number is nanoseconds here")
    }

    fn float(_: f64) -> Result<(Duration, String, &'static str), &'static str> {
        Err("a duration needs a unit (Datakit does not load a bare float here)")
    }
}

impl Unit for Seconds {
    fn integer(n: u64) -> (Duration, String, &'static str) {
        (
            Duration::from_secs(n),
            format!("{n}s"),
            "a bare number is seconds here",
        )
    }

    fn float(f: f64) -> Result<(Duration, String, &'static str), &'static str> {
        let whole = f.trunc() as u64;
        Ok((
            Duration::from_secs(whole),
            format!("{whole}s"),
            "a bare number is whole seconds here, the fraction is dropped",
        ))
    }
}

/// The error of a bare number: the collector reads it back with [`parse_bare`].
fn bare<E: de::Error>(written: &str, replacement: &str, reading: &str) -> E {
    E::custom(format!(
        "{BARE_MARK}{written}\u{1}{replacement}\u{1}{reading}"
    ))
}

/// `(as written, Go string it means, the words for the reading)` of a bare-number error.
pub(crate) fn parse_bare(message: &str) -> Option<(&str, &str, &str)> {
    let rest = message.strip_prefix(BARE_MARK)?;
    let mut parts = rest.splitn(3, '\u{1}');
    Some((parts.next()?, parts.next()?, parts.next()?))
}

/// Reads one duration of unit `U`.
struct DurationVisitor<U>(PhantomData<U>);

impl<U: Unit> Visitor<'_> for DurationVisitor<U> {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"10s\", \"1m30s\" or \"500ms\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        crate::duration::parse(v).map_err(|e| E::custom(e.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        match u64::try_from(v) {
            Ok(n) => self.visit_u64(n),
            Err(_) => Err(E::custom(format!(
                "negative duration {v}: write a positive one with a unit, e.g. \"10s\""
            ))),
        }
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        if v == 0 {
            return Ok(Duration::ZERO);
        }
        let (_, replacement, reading) = U::integer(v);
        Err(bare(&v.to_string(), &replacement, reading))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        if !v.is_finite() || v < 0.0 {
            return Err(E::custom(format!(
                "{v} is not a duration: write one with a unit, e.g. \"10s\""
            )));
        }
        if v == 0.0 {
            return Ok(Duration::ZERO);
        }
        match U::float(v) {
            Ok((_, replacement, reading)) => Err(bare(&v.to_string(), &replacement, reading)),
            Err(fix) => Err(E::custom(format!(
                "{v}: {fix}; write it with a unit, e.g. \"{}s\"",
                trim_float(v / 1e9)
            ))),
        }
    }
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.9}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn read<'de, U: Unit, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(DurationVisitor::<U>(PhantomData))
}

fn write<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::duration::format(*d))
}

/// `#[serde(with = "dk_worker::config::go")]` on a [`Duration`] that Datakit declares as
/// `time.Duration`: a bare integer counts nanoseconds.
pub mod go {
    use super::{Duration, Nanos};
    use serde::{Deserializer, Serializer};

    /// Reads a Go duration string or a bare number as Go's TOML decoder does.
    ///
    /// # Errors
    /// A string that is not a duration, a negative number, a float, or a bare number (which
    /// the collector turns into a warning).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        super::read::<Nanos, D>(d)
    }

    /// Writes a Go duration string.
    ///
    /// # Errors
    /// The serializer's.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        super::write(d, s)
    }
}

/// `#[serde(with = "dk_worker::config::seconds")]` on a [`Duration`] that Datakit declares as
/// `datakit.Duration`: a bare number counts (whole) seconds.
pub mod seconds {
    use super::{Duration, Seconds};
    use serde::{Deserializer, Serializer};

    /// Reads a Go duration string or a bare number of seconds as Datakit does.
    ///
    /// # Errors
    /// A string that is not a duration, a negative number, or a bare number (which the
    /// collector turns into a warning).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        super::read::<Seconds, D>(d)
    }

    /// Writes a Go duration string.
    ///
    /// # Errors
    /// The serializer's.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        super::write(d, s)
    }
}
