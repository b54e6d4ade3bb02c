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
    /// 1-based line of the key in the file, when it could be located.
    pub line: Option<usize>,
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
            line: None,
        }
    }

    /// Adds the line of the key when the file can be read and has it.
    #[must_use]
    pub fn locate(mut self) -> Self {
        if let Ok(bytes) = std::fs::read(&self.file) {
            let text = String::from_utf8_lossy(&bytes);
            let file = self.file.clone();
            add_lines(std::slice::from_mut(&mut self), &file, &text);
        }
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.key, self.message)
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

/// One step of a dotted key: a table key or an array index.
#[derive(Debug, PartialEq)]
enum Step<'k> {
    Key(&'k str),
    Index(usize),
}

/// Splits `inputs.cpu[1].interval` into `inputs`, `cpu`, `[1]`, `interval`; `None` when the key
/// has a form this locator does not read (quoted segments).
fn steps(key: &str) -> Option<Vec<Step<'_>>> {
    let mut out = Vec::new();
    for part in key.split('.') {
        let (name, mut rest) = part.split_once('[').map_or((part, ""), |(n, r)| (n, r));
        if name.contains('"') || name.contains('\'') {
            return None;
        }
        if !name.is_empty() {
            out.push(Step::Key(name));
        }
        while !rest.is_empty() {
            let (idx, after) = rest.split_once(']')?;
            out.push(Step::Index(idx.parse().ok()?));
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    Some(out)
}

/// Byte offset where `key` (as diagnostics spell it) is written in the TOML `text`: the
/// deepest part of the key that could be found (a table header when the key itself is a
/// default that is not written). `None` when nothing of it is in the text.
pub(crate) fn locate_key(text: &str, key: &str) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    let steps = steps(key)?;
    let (table, _errors) = DeTable::parse_recoverable(text);
    let mut table: &DeTable<'_> = table.get_ref();
    let mut array: Option<&toml::de::DeArray<'_>> = None;
    let mut found = None;
    for step in steps {
        let value = match (step, array) {
            (Step::Key(k), None) => {
                let Some((name, value)) = table.get_key_value(k) else {
                    break;
                };
                found = Some(name.span().start);
                value
            }
            (Step::Index(i), Some(items)) => {
                let Some(value) = items.get(i) else {
                    break;
                };
                found = Some(value.span().start);
                value
            }
            _ => break,
        };
        array = None;
        match value.get_ref() {
            DeValue::Table(t) => table = t,
            DeValue::Array(a) => array = Some(a),
            _ => break,
        }
    }
    found
}

/// Adds the line of its key to every diagnostic of `file` whose key is written in `text`.
pub(crate) fn add_lines(diags: &mut [Diagnostic], file: &Path, text: &str) {
    for d in diags
        .iter_mut()
        .filter(|d| d.file == file && d.line.is_none())
    {
        if let Some(at) = (!d.key.is_empty())
            .then(|| locate_key(text, &d.key))
            .flatten()
        {
            d.line = Some(line_col(text, at).0);
        }
    }
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
        let mut d = Diagnostic::new("/a/b.conf", "inputs.cpu.interval", "bad");
        d.line = Some(7);
        assert_eq!(d.to_string(), "/a/b.conf:7: inputs.cpu.interval: bad");
    }

    #[test]
    fn locates_dotted_keys_array_items_and_array_tables_by_line() {
        let text = "a = 1\n[io]\n  flush_interval = \"soon\"\n[dataway]\n  urls = [\n    \"x\",\n    \"y\",\n  ]\n[[inputs.cpu]]\n  interval = \"1s\"\n[[inputs.cpu]]\n  interval = \"bad\"\n";
        let line = |key: &str| locate_key(text, key).map(|at| line_col(text, at).0);
        assert_eq!(line("a"), Some(1));
        assert_eq!(line("io.flush_interval"), Some(3));
        assert_eq!(line("dataway.urls[1]"), Some(7));
        assert_eq!(line("inputs.cpu[1].interval"), Some(12));
        assert_eq!(line("inputs.cpu[0].interval"), Some(10));
        // A default not written in the file points at its table.
        assert_eq!(line("io.max_cache_count"), Some(2));
        assert_eq!(line("nothing.here"), None);
    }

    #[test]
    fn adds_lines_only_to_diagnostics_of_that_file() {
        let mut diags = vec![
            Diagnostic::new("f.conf", "b", "m"),
            Diagnostic::new("g.conf", "b", "m"),
            Diagnostic::new("f.conf", "", "m"),
        ];
        add_lines(&mut diags, Path::new("f.conf"), "a = 1\nb = 2\n");
        assert_eq!(
            diags.iter().map(|d| d.line).collect::<Vec<_>>(),
            [Some(2), None, None]
        );
        assert_eq!(diags[0].to_string(), "f.conf:2: b: m");
    }

    #[test]
    fn computes_one_based_line_and_column() {
        assert_eq!(line_col("ab\ncd\n", 0), (1, 1));
        assert_eq!(line_col("ab\ncd\n", 4), (2, 2));
        assert_eq!(line_col("ab", 99), (1, 3));
    }
}
