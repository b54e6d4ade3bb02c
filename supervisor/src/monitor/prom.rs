//! The Prometheus text format as `/metrics` serves it, read into samples (pure).

/// One sample line: `name{labels} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The series name as written (`_total`, `_sum`, `_count`, `_bucket` suffixes kept).
    pub name: String,
    /// The labels in the order written.
    pub labels: Vec<(String, String)>,
    /// The value (`NaN`, `+Inf` and `-Inf` read as such).
    pub value: f64,
}

impl Sample {
    /// The value of label `key`, empty when absent.
    pub fn label(&self, key: &str) -> &str {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// Why a line could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParseError {
    /// A sample line without a value, with an unclosed label set, or a value that is no number.
    #[error("line {line}: {what}: {text:?} (is this a Prometheus /metrics page?)")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        what: &'static str,
        /// The line (cut to 120 bytes).
        text: String,
    },
}

/// Reads every sample of a Prometheus text page; comments (`# HELP`, `# TYPE`, `# EOF`) and
/// blank lines are skipped, a timestamp after the value is ignored.
///
/// # Errors
/// The first line that is not a sample.
pub fn parse(text: &str) -> Result<Vec<Sample>, ParseError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |what| ParseError::Line {
            line: i + 1,
            what,
            text: line.chars().take(120).collect(),
        };
        let name_end = line
            .find(|c: char| c == '{' || c.is_whitespace())
            .ok_or_else(|| bad("no value"))?;
        let name = &line[..name_end];
        if name.is_empty() {
            return Err(bad("no metric name"));
        }
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(after) = rest.strip_prefix('{') {
            let (parsed, tail) = parse_labels(after).ok_or_else(|| bad("bad label set"))?;
            labels = parsed;
            rest = tail;
        }
        let value = rest
            .split_whitespace()
            .next()
            .ok_or_else(|| bad("no value"))?;
        let value = parse_value(value).ok_or_else(|| bad("value is not a number"))?;
        out.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    Ok(out)
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// Labels after the `{`: the pairs and the text after the closing `}`.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Some((labels, rest));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_string();
        s = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        };
        labels.push((key, value));
        s = s[end + 1..].trim_start();
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_keep_names_labels_and_values_and_skip_comments() {
        let text = "# HELP x a counter\n# TYPE x counter\nx_total{a=\"1\",b=\"two words\"} 42\n\nup 1 1700000000000\nlat_bucket{le=\"+Inf\"} 3\nnan NaN\n# EOF\n";
        let s = parse(text).unwrap();
        assert_eq!(s.len(), 4);
        assert_eq!(s[0].name, "x_total");
        assert_eq!(s[0].label("a"), "1");
        assert_eq!(s[0].label("b"), "two words");
        assert_eq!(s[0].label("missing"), "");
        assert_eq!(s[0].value, 42.0);
        assert_eq!(s[1].name, "up");
        assert_eq!(s[1].value, 1.0, "the timestamp is not the value");
        assert_eq!(s[2].label("le"), "+Inf");
        assert!(s[3].value.is_nan());
    }

    #[test]
    fn escaped_quotes_commas_and_braces_stay_inside_label_values() {
        let s = parse(
            "datakit_last_err{input=\"a\",error=\"bad \\\"x\\\", {y}\\nz \\\\ w\",} 1796318161\n",
        )
        .unwrap();
        assert_eq!(s[0].label("error"), "bad \"x\", {y}\nz \\ w");
        assert_eq!(s[0].value, 1_796_318_161.0);
    }

    #[test]
    fn a_page_that_is_not_prometheus_text_names_the_line() {
        let err = parse("ok 1\n<html>hello</html>\n").unwrap_err();
        assert!(matches!(err, ParseError::Line { line: 2, .. }), "{err:?}");
        assert!(parse("x{a=\"1\" 2\n").is_err(), "unclosed label set");
        assert!(parse("x abc\n").is_err(), "value is no number");
    }
}
