//! Pure parsers for the Linux `/proc`, `/sys` and `/run` files the host inputs read.
//!
//! Every function here takes text (or bytes) and returns typed values or a [`ParseError`];
//! none of them touches the file system, so they are tested on captured fixtures.

pub mod conntrack;
pub mod cpuinfo;
pub mod diskstats;
pub mod meminfo;
pub mod mountinfo;
pub mod netdev;
pub mod pid;
pub mod platform;
pub mod snmp;
pub mod stat;
pub mod udev;
pub mod util;
pub mod utmp;

/// A `/proc` or `/sys` file whose content does not have the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A required line or key is absent.
    #[error("{file}: {what} is missing; the kernel did not report it")]
    Missing {
        /// The file, as the kernel names it (`/proc/meminfo`).
        file: &'static str,
        /// What was expected.
        what: String,
    },
    /// A line does not have the expected layout.
    #[error("{file}: line {line}: {reason}")]
    BadLine {
        /// The file.
        file: &'static str,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A value that should be a number is not one.
    #[error("{file}: {key}: {value:?} is not a valid number")]
    BadNumber {
        /// The file.
        file: &'static str,
        /// The key or column the value belongs to.
        key: String,
        /// The offending text.
        value: String,
    },
}

/// Parses an unsigned decimal, naming `file` and `key` on failure.
pub(crate) fn u64_of(file: &'static str, key: &str, text: &str) -> Result<u64, ParseError> {
    text.parse::<u64>().map_err(|_| ParseError::BadNumber {
        file,
        key: key.to_string(),
        value: text.to_string(),
    })
}

/// Parses a signed decimal, naming `file` and `key` on failure.
pub(crate) fn i64_of(file: &'static str, key: &str, text: &str) -> Result<i64, ParseError> {
    text.parse::<i64>().map_err(|_| ParseError::BadNumber {
        file,
        key: key.to_string(),
        value: text.to_string(),
    })
}

/// Parses a float, naming `file` and `key` on failure.
pub(crate) fn f64_of(file: &'static str, key: &str, text: &str) -> Result<f64, ParseError> {
    text.parse::<f64>().map_err(|_| ParseError::BadNumber {
        file,
        key: key.to_string(),
        value: text.to_string(),
    })
}
