//! Config reading, the part of the contract both the supervisor and the workers use: ONE
//! collector that decodes a TOML table into a serde-derived struct and reports every problem at
//! once, and one duration reader.
//!
//! [`decode`] finds, in one call: every key of the wrong type (each dropped and the decoding
//! retried, so one bad key does not hide the next), every bare-number duration (a warning that
//! says what Datakit reads it as, see [`go`] and [`seconds`]), and every unknown key (a warning
//! naming the closest known key, found by asking the derived struct itself).

mod collect;
mod duration;
mod probe;

pub use collect::{Decoded, Problems, decode, decode_table, join};
pub use duration::{go, seconds};
pub use probe::{closest, edit_distance};

/// Whether a problem stops the config or only warns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Severity {
    /// The instance is refused.
    #[default]
    Error,
    /// Reported (log, `datakit check`), the instance still runs.
    Warning,
}

/// One problem in an input's config: the key and what to do about it.
/// The supervisor adds the file name and the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key inside the instance (`dest_url[1]`, `interval`), or empty for the whole table.
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
    /// Error or warning.
    pub severity: Severity,
}

impl ConfigProblem {
    /// An error with a key.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigProblem {
            key: key.into(),
            message: message.into(),
            severity: Severity::Error,
        }
    }

    /// A warning with a key.
    pub fn warning(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigProblem {
            severity: Severity::Warning,
            ..ConfigProblem::new(key, message)
        }
    }

    /// Whether this only warns.
    pub fn is_warning(&self) -> bool {
        self.severity == Severity::Warning
    }
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}
