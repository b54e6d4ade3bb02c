//! Helpers for per-input config structs: decoding one instance and naming problems.

use serde::de::DeserializeOwned;

/// One problem in an input's config: the key and what to do about it.
/// The supervisor adds the file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key inside the instance (`dest_url[1]`, `interval`), or empty for the whole table.
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl ConfigProblem {
    /// A problem with a key.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigProblem {
            key: key.into(),
            message: message.into(),
        }
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

/// Decodes one `[[inputs.NAME]]` table (given as TOML text) into the input's config struct.
///
/// Config structs use `#[serde(deny_unknown_fields)]` only where Datakit also rejects unknown
/// keys; otherwise unknown keys are ignored as Datakit ignores them.
///
/// # Errors
/// A [`ConfigProblem`] naming the key TOML reported and the expected type.
pub fn parse_instance<T: DeserializeOwned>(toml_text: &str) -> Result<T, ConfigProblem> {
    toml::from_str::<T>(toml_text).map_err(|e| {
        let key = e
            .span()
            .and_then(|span| toml_text.get(..span.start))
            .and_then(|before| before.lines().last())
            .map(|line| line.split('=').next().unwrap_or("").trim().to_string())
            .unwrap_or_default();
        ConfigProblem::new(key, e.message().to_string())
    })
}

/// Parses a Go duration value of key `key`, naming the key in the problem.
///
/// # Errors
/// A [`ConfigProblem`] for `key` when the text is not a duration.
pub fn duration(key: &str, text: &str) -> Result<std::time::Duration, ConfigProblem> {
    dk_proto::duration::parse(text).map_err(|e| ConfigProblem::new(key, e.to_string()))
}
