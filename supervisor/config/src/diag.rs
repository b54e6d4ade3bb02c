//! Problems found in the configuration: one [`Diagnostic`] per problem, [`ConfigErrors`] for all of them.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem (or warning) in a config file: the file, the dotted key, and what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the problem is in (a pseudo path for built-in samples).
    pub file: PathBuf,
    /// Dotted key inside the file (`dataway.urls[0]`, `inputs.cpu.interval`), or empty.
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic for `key` of `file`.
    pub fn new(
        file: impl Into<PathBuf>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            file: file.into(),
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.message)
        }
    }
}

/// Every error found while loading; the config was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<Diagnostic>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Collects errors and warnings while loading.
#[derive(Debug, Default)]
pub(crate) struct Sink {
    pub(crate) errors: Vec<Diagnostic>,
    pub(crate) warnings: Vec<Diagnostic>,
}

impl Sink {
    pub(crate) fn error(
        &mut self,
        file: &Path,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.errors.push(Diagnostic::new(file, key, message));
    }

    pub(crate) fn warn(&mut self, file: &Path, key: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Diagnostic::new(file, key, message));
    }
}

/// Describes a TOML syntax error as "line L, column C: message".
pub(crate) fn toml_syntax_message(text: &str, err: &toml::de::Error) -> String {
    let msg = err.message().trim_end();
    match err.span() {
        Some(span) => {
            let (line, col) = line_col(text, span.start);
            format!("TOML syntax error at line {line}, column {col}: {msg}")
        }
        None => format!("TOML syntax error: {msg}"),
    }
}

/// 1-based line and column (in characters) of byte offset `at` in `text`.
pub(crate) fn line_col(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_file_key_and_message() {
        let d = Diagnostic::new("/a/b.conf", "inputs.cpu.interval", "bad");
        assert_eq!(d.to_string(), "/a/b.conf: inputs.cpu.interval: bad");
        let d = Diagnostic::new("/a/b.conf", "", "bad");
        assert_eq!(d.to_string(), "/a/b.conf: bad");
        let all = ConfigErrors(vec![
            Diagnostic::new("x", "k", "m1"),
            Diagnostic::new("y", "", "m2"),
        ]);
        assert_eq!(all.to_string(), "x: k: m1\ny: m2");
    }

    #[test]
    fn computes_one_based_line_and_column() {
        assert_eq!(line_col("ab\ncd\n", 0), (1, 1));
        assert_eq!(line_col("ab\ncd\n", 4), (2, 2));
        assert_eq!(line_col("ab", 99), (1, 3));
    }
}
