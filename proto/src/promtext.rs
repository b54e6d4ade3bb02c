//! A parser of the Prometheus text exposition format (0.0.4) and of OpenMetrics text (1.0), as
//! served on `/metrics`: metric families with their type and samples. Pure: bytes in, values
//! out; a malformed line fails the whole text, naming its line, as Prometheus's own parser does.

use thiserror::Error;

/// The type of a metric family (`# TYPE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    /// `counter`.
    Counter,
    /// `gauge`.
    Gauge,
    /// `histogram`.
    Histogram,
    /// `gaugehistogram`.
    GaugeHistogram,
    /// `summary`.
    Summary,
    /// `info`.
    Info,
    /// `stateset`.
    StateSet,
    /// `untyped`, `unknown`, or no `# TYPE` line.
    Untyped,
}

impl MetricType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "gaugehistogram" => MetricType::GaugeHistogram,
            "summary" => MetricType::Summary,
            "info" => MetricType::Info,
            "stateset" => MetricType::StateSet,
            "untyped" | "unknown" => MetricType::Untyped,
            _ => return None,
        })
    }

    /// The lower-case name, as in a `# TYPE` line (`untyped` for both spellings).
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Untyped => "untyped",
        }
    }

    /// The sample-name suffixes a family of this type may use.
    fn suffixes(self) -> &'static [&'static str] {
        match self {
            MetricType::Counter => &["_total", "_created"],
            MetricType::Histogram => &["_bucket", "_count", "_sum", "_created"],
            MetricType::GaugeHistogram => &["_bucket", "_gcount", "_gsum"],
            MetricType::Summary => &["_count", "_sum", "_created"],
            MetricType::Info => &["_info"],
            _ => &[],
        }
    }
}

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The sample name (`x_total`, `x_bucket`...).
    pub name: String,
    /// Labels in the order written, values unescaped.
    pub labels: Labels,
    /// The value (`NaN` and infinities included).
    pub value: f64,
    /// The timestamp when one was written: milliseconds (Prometheus text) or seconds
    /// (OpenMetrics), as written.
    pub timestamp: Option<f64>,
}

impl Sample {
    /// The value of label `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One metric family: its name, type and samples, in the order of the text.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricFamily {
    /// The family name (without `_total` for an OpenMetrics counter).
    pub name: String,
    /// Its type.
    pub kind: MetricType,
    /// Its samples.
    pub samples: Vec<Sample>,
}

/// Why a text is not a valid exposition.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// The 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

fn err(line: usize, message: impl Into<String>) -> ParseError {
    ParseError {
        line,
        message: message.into(),
    }
}

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b':'
}

/// Length of the metric or label name at the start of `s` (0 when there is none).
fn name_len(s: &[u8]) -> usize {
    match s.first() {
        Some(&c) if is_name_start(c) => 1 + s[1..].iter().take_while(|&&c| is_name_char(c)).count(),
        _ => 0,
    }
}

/// Parses a value as Prometheus does: floats, `NaN`, `+Inf`, `-Inf`.
pub fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        _ if s
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE_xXabcdefABCDEF".contains(&b)) =>
        {
            s.parse::<f64>().ok()
        }
        _ => None,
    }
}

/// Label names and unescaped values, in the order written.
pub type Labels = Vec<(String, String)>;

/// Parses the `{a="b",c="d"}` part; returns the labels and the rest after `}`.
fn parse_labels(s: &str, line: usize) -> Result<(Labels, &str), ParseError> {
    let mut labels = Vec::new();
    let mut rest = s.trim_start();
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let n = name_len(rest.as_bytes());
        if n == 0 {
            return Err(err(line, "expected a label name or '}'"));
        }
        let name = &rest[..n];
        rest = rest[n..].trim_start();
        rest = rest
            .strip_prefix('=')
            .ok_or_else(|| err(line, format!("expected '=' after label {name:?}")))?
            .trim_start();
        rest = rest
            .strip_prefix('"')
            .ok_or_else(|| err(line, format!("label {name:?}: expected a quoted value")))?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(err(line, format!("label {name:?}: unterminated value"))),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, c)) => {
                        value.push('\\');
                        value.push(c);
                    }
                    None => return Err(err(line, format!("label {name:?}: unterminated value"))),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.push((name.to_string(), value));
        rest = rest[end + 1..].trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
        } else if !rest.starts_with('}') {
            return Err(err(line, "expected ',' or '}' after a label"));
        }
    }
}

fn parse_sample(text: &str, line: usize) -> Result<Sample, ParseError> {
    let n = name_len(text.as_bytes());
    if n == 0 {
        return Err(err(line, "expected a metric name"));
    }
    let name = text[..n].to_string();
    let mut rest = &text[n..];
    let mut labels = Vec::new();
    if let Some(r) = rest.trim_start().strip_prefix('{') {
        let (l, r) = parse_labels(r, line)?;
        labels = l;
        rest = r;
    }
    if !rest.starts_with([' ', '\t']) {
        return Err(err(
            line,
            format!("{name}: expected a space before the value"),
        ));
    }
    // An OpenMetrics exemplar follows " # ".
    let rest = rest.split_once(" # ").map_or(rest, |(a, _)| a);
    let mut words = rest.split_ascii_whitespace();
    let value_text = words
        .next()
        .ok_or_else(|| err(line, format!("{name}: missing value")))?;
    let value = parse_value(value_text)
        .ok_or_else(|| err(line, format!("{name}: {value_text:?} is not a number")))?;
    let timestamp = match words.next() {
        None => None,
        Some(t) => Some(
            parse_value(t)
                .filter(|t| t.is_finite())
                .ok_or_else(|| err(line, format!("{name}: {t:?} is not a timestamp")))?,
        ),
    };
    if words.next().is_some() {
        return Err(err(
            line,
            format!("{name}: unexpected text after the timestamp"),
        ));
    }
    Ok(Sample {
        name,
        labels,
        value,
        timestamp,
    })
}

/// Whether sample `name` belongs to family `family` of type `kind`.
fn belongs(name: &str, family: &str, kind: MetricType) -> bool {
    name == family
        || name
            .strip_prefix(family)
            .is_some_and(|suffix| kind.suffixes().contains(&suffix))
}

/// Parses a whole exposition text into its families, in order. Samples before any `# TYPE`
/// (or of another name than the current family) form untyped families of their own name.
///
/// # Errors
/// The first malformed line: a bad `# TYPE`, a sample without a value, an unterminated label.
pub fn parse(text: &str) -> Result<Vec<MetricFamily>, ParseError> {
    let mut families: Vec<MetricFamily> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim_matches(|c| c == ' ' || c == '\t' || c == '\r');
        if l.is_empty() {
            continue;
        }
        if let Some(comment) = l.strip_prefix('#') {
            let mut words = comment.split_ascii_whitespace();
            match words.next() {
                Some("TYPE") => {
                    let name = words
                        .next()
                        .filter(|n| name_len(n.as_bytes()) == n.len())
                        .ok_or_else(|| err(line, "# TYPE without a valid metric name"))?;
                    let kind_text = words.next().unwrap_or("");
                    let kind = MetricType::parse(kind_text).ok_or_else(|| {
                        err(line, format!("{name}: unknown metric type {kind_text:?}"))
                    })?;
                    match families.last_mut() {
                        Some(f) if f.name == name && f.samples.is_empty() => f.kind = kind,
                        _ => families.push(MetricFamily {
                            name: name.to_string(),
                            kind,
                            samples: Vec::new(),
                        }),
                    }
                }
                Some("EOF") => break,
                _ => {} // HELP, UNIT and plain comments
            }
            continue;
        }
        let sample = parse_sample(l, line)?;
        match families.last_mut() {
            Some(f) if belongs(&sample.name, &f.name, f.kind) => f.samples.push(sample),
            _ => families.push(MetricFamily {
                name: sample.name.clone(),
                kind: MetricType::Untyped,
                samples: vec![sample],
            }),
        }
    }
    Ok(families)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_counters_gauges_and_histograms_parse_into_their_families() {
        let text = "# HELP datakit_worker_restarts Worker restarts.\n\
# TYPE datakit_worker_restarts counter\n\
datakit_worker_restarts_total{family=\"host\",cause=\"signal\"} 2\n\
# TYPE datakit_process_pid gauge\n\
datakit_process_pid{family=\"supervisor\"} 4242\n\
datakit_process_pid{family=\"host\"} 4250\n\
# TYPE lat histogram\n\
lat_sum 1.5\n\
lat_count 3\n\
lat_bucket{le=\"0.5\"} 1\n\
lat_bucket{le=\"+Inf\"} 3\n\
# EOF\n\
ignored 1\n";
        let f = parse(text).unwrap();
        let names: Vec<(&str, MetricType, usize)> = f
            .iter()
            .map(|f| (f.name.as_str(), f.kind, f.samples.len()))
            .collect();
        assert_eq!(
            names,
            [
                ("datakit_worker_restarts", MetricType::Counter, 1),
                ("datakit_process_pid", MetricType::Gauge, 2),
                ("lat", MetricType::Histogram, 4),
            ]
        );
        assert_eq!(f[0].samples[0].name, "datakit_worker_restarts_total");
        assert_eq!(f[0].samples[0].label("cause"), Some("signal"));
        assert_eq!(f[0].samples[0].value, 2.0);
        assert_eq!(f[1].samples[1].value, 4250.0);
        assert_eq!(f[2].samples[3].label("le"), Some("+Inf"));
    }

    #[test]
    fn escaped_label_values_special_values_and_timestamps_are_read() {
        let text = "x{a=\"q\\\"uote\\\\back\\nnl\",b=\"}\",} NaN 1700000000000\ny +Inf\nz -1.5e3\n";
        let f = parse(text).unwrap();
        let s = &f[0].samples[0];
        assert_eq!(s.label("a"), Some("q\"uote\\back\nnl"));
        assert_eq!(s.label("b"), Some("}"));
        assert!(s.value.is_nan());
        assert_eq!(s.timestamp, Some(1.7e12));
        assert_eq!(f[1].samples[0].value, f64::INFINITY);
        assert_eq!(f[2].samples[0].value, -1500.0);
        assert_eq!(f[2].kind, MetricType::Untyped);
    }

    #[test]
    fn samples_of_another_name_start_an_untyped_family() {
        let f = parse("# TYPE a gauge\na 1\nb_total 2\n").unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(
            (f[1].name.as_str(), f[1].kind),
            ("b_total", MetricType::Untyped)
        );
    }

    #[test]
    fn an_exemplar_after_the_value_is_ignored() {
        let f =
            parse("# TYPE h histogram\nh_bucket{le=\"1\"} 4 # {trace_id=\"x\"} 0.5 123\n").unwrap();
        assert_eq!(f[0].samples[0].value, 4.0);
        assert_eq!(f[0].samples[0].timestamp, None);
    }

    #[test]
    fn malformed_lines_are_errors_naming_the_line() {
        for (text, line, what) in [
            ("a 1\nb{x=\"1\" 2\n", 2, "expected ',' or '}'"),
            ("a\n", 1, "expected a space"),
            ("a abc\n", 1, "not a number"),
            ("# TYPE a histo\n", 1, "unknown metric type"),
            ("a{x=\"1} 2\n", 1, "unterminated"),
            ("{x=\"1\"} 2\n", 1, "expected a metric name"),
            ("a 1 2 3\n", 1, "unexpected text"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.message.contains(what), "{text:?}: {e}");
        }
    }
}
