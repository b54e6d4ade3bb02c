//! Pure StatsD / DogStatsD datagram parser: bytes in, borrowed samples, events, service checks and errors out.
//!
//! Grammar (one item per `\n`-separated line, each line trimmed, empty lines skipped):
//!
//! ```text
//! metric   = bucket ":" values
//! bucket   = name *("," key "=" value)            ; Influx-style bucket tags
//! values   = bit *(":" bit)
//! bit      = value ["|" type *("|" option)]       ; a bit without "|type" takes the type
//!                                                 ; of the next typed bit (DogStatsD 1.1)
//! type     = "c" / "g" / "s" / "ms" / "h" / "d"
//! option   = "@" rate / "#" ddtags / "T" unix-seconds / "c:" container / "e:" data / ...
//! event    = "_e{" title-len "," text-len "}:" title "|" text *("|" meta)
//! check    = "_sc|" name "|" status *("|" meta) ["|m:" message]
//! ```
//!
//! Both multi-value forms are accepted: Datakit/Telegraf's `a:1|c:2|g` (every bit typed) and
//! DogStatsD's packed `a:1:2:3|ms` (values sharing one type). Nothing here allocates: every
//! item borrows from the datagram and DogStatsD tags are parsed lazily by [`DdTags`].

use std::fmt;

/// The StatsD metric types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricType {
    /// `c`: summed between flushes.
    Counter,
    /// `g`: last value, or a delta when signed.
    Gauge,
    /// `s`: distinct values counted.
    Set,
    /// `ms`: timing statistics.
    Timing,
    /// `h`: histogram statistics (same as timings).
    Histogram,
    /// `d`: DogStatsD distribution (statistics, like timings).
    Distribution,
}

impl MetricType {
    /// The type from its wire code (`c`, `g`, `s`, `ms`, `h`, `d`).
    pub fn from_code(code: &str) -> Option<MetricType> {
        Some(match code {
            "c" => MetricType::Counter,
            "g" => MetricType::Gauge,
            "s" => MetricType::Set,
            "ms" => MetricType::Timing,
            "h" => MetricType::Histogram,
            "d" => MetricType::Distribution,
            _ => return None,
        })
    }

    /// The value of Datakit's `metric_type` tag for this type.
    pub fn tag_value(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Set => "set",
            MetricType::Timing => "timing",
            MetricType::Histogram => "histogram",
            MetricType::Distribution => "distribution",
        }
    }
}

/// The value of one sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SampleValue<'a> {
    /// A finite number; `signed` is true when the text started with `+` or `-` (a gauge delta).
    Number {
        /// The value as written (not yet divided by the sample rate).
        value: f64,
        /// Written with a leading sign.
        signed: bool,
    },
    /// A set member, as written.
    Text(&'a str),
}

/// DogStatsD tags of a line (`|#k:v,k2`), parsed lazily so that nothing is allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DdTags<'a> {
    /// The `|`-separated segments that may hold `#` tag segments.
    segments: &'a str,
}

impl<'a> DdTags<'a> {
    /// No tags.
    pub const NONE: DdTags<'static> = DdTags { segments: "" };

    fn new(segments: &'a str) -> DdTags<'a> {
        DdTags { segments }
    }

    /// The tags in order of appearance: `key:value` (split at the first `:`); a bare `key` or
    /// an empty value gives `"true"`; items with an empty key are skipped. Later duplicates
    /// win when the caller inserts them in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.segments
            .split('|')
            .filter_map(|seg| seg.strip_prefix('#'))
            .flat_map(|seg| seg.split(','))
            .filter_map(|item| {
                let (k, v) = item.split_once(':').unwrap_or((item, ""));
                if k.is_empty() {
                    None
                } else if v.is_empty() {
                    Some((k, "true"))
                } else {
                    Some((k, v))
                }
            })
    }

    /// True when there is no tag at all.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

/// One metric sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample<'a> {
    /// The bucket name before any `,` (dotted; first whitespace-separated word, as Datakit).
    pub name: &'a str,
    /// The Influx-style tags after the name (`k1=v1,k2=v2`), raw; see [`bucket_tags`].
    pub bucket_tags: &'a str,
    /// The type.
    pub kind: MetricType,
    /// The value.
    pub value: SampleValue<'a>,
    /// The sample rate (`|@0.1`), when given and valid (finite and above 0).
    pub rate: Option<f64>,
    /// The DogStatsD timestamp (`|T<unix seconds>`), when given and valid.
    pub timestamp: Option<i64>,
    /// DogStatsD tags of the line (empty unless extensions are on).
    pub dd_tags: DdTags<'a>,
}

/// Iterates Influx-style bucket tags: entries with exactly one `=` and a non-empty key and
/// value; other entries are ignored (as Datakit ignores them).
pub fn bucket_tags(raw: &str) -> impl Iterator<Item = (&str, &str)> {
    raw.split(',').filter_map(|entry| {
        let (k, v) = entry.split_once('=')?;
        if k.is_empty() || v.is_empty() || v.contains('=') {
            None
        } else {
            Some((k, v))
        }
    })
}

/// DogStatsD event alert types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertType {
    /// `info` (the default).
    Info,
    /// `warning`.
    Warning,
    /// `error`.
    Error,
    /// `success`.
    Success,
}

impl AlertType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertType::Info => "info",
            AlertType::Warning => "warning",
            AlertType::Error => "error",
            AlertType::Success => "success",
        }
    }
}

/// A DogStatsD event (`_e{...}`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Event<'a> {
    /// Title (non-empty).
    pub title: &'a str,
    /// Text (non-empty; `\\n` escapes not yet expanded).
    pub text: &'a str,
    /// `d:` unix seconds.
    pub timestamp: Option<i64>,
    /// `h:` host name.
    pub hostname: Option<&'a str>,
    /// `k:` aggregation key.
    pub aggregation_key: Option<&'a str>,
    /// `p:` priority, `low` or `normal` (default normal).
    pub priority: &'a str,
    /// `s:` source type name.
    pub source_type: Option<&'a str>,
    /// `t:` alert type.
    pub alert_type: AlertType,
    /// `#` tags.
    pub tags: DdTags<'a>,
}

/// DogStatsD service check statuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckStatus {
    /// 0.
    Ok,
    /// 1.
    Warning,
    /// 2.
    Critical,
    /// 3.
    Unknown,
}

impl CheckStatus {
    /// The numeric status (0-3).
    pub fn code(self) -> i64 {
        match self {
            CheckStatus::Ok => 0,
            CheckStatus::Warning => 1,
            CheckStatus::Critical => 2,
            CheckStatus::Unknown => 3,
        }
    }

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Ok => "ok",
            CheckStatus::Warning => "warning",
            CheckStatus::Critical => "critical",
            CheckStatus::Unknown => "unknown",
        }
    }
}

/// A DogStatsD service check (`_sc|name|status|...`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ServiceCheck<'a> {
    /// Check name (non-empty).
    pub name: &'a str,
    /// Status.
    pub status: CheckStatus,
    /// `d:` unix seconds.
    pub timestamp: Option<i64>,
    /// `h:` host name.
    pub hostname: Option<&'a str>,
    /// `m:` message (the rest of the line).
    pub message: Option<&'a str>,
    /// `#` tags.
    pub tags: DdTags<'a>,
}

/// Why a line (or one value of it) was skipped or partly ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The line is not UTF-8.
    #[error("the line is not UTF-8")]
    NotUtf8,
    /// No `:` after the bucket name.
    #[error("no ':' after the metric name; expected name:value|type")]
    NoValue,
    /// The bucket name is empty.
    #[error("the metric name is empty")]
    EmptyName,
    /// A value without `|type`.
    #[error("a value has no '|type'; expected name:value|type")]
    NoType,
    /// The type is not one of c, g, s, ms, h, d.
    #[error("unknown metric type; expected c, g, s, ms, h or d")]
    UnknownType,
    /// The value is not a finite number.
    #[error("the value is not a finite number")]
    BadValue,
    /// `+`/`-` on a type other than gauge or counter.
    #[error("a signed value is only allowed for gauges and counters")]
    SignNotAllowed,
    /// `@rate` is not a number above 0 (the sample is kept with rate 1).
    #[error("the sample rate is not a number above 0; the sample is kept without it")]
    BadSampleRate,
    /// `T<ts>` is not an integer (the sample is kept without it).
    #[error("the timestamp is not an integer; the sample is kept without it")]
    BadTimestamp,
    /// A malformed `_e{...}` event.
    #[error("malformed DogStatsD event: {0}")]
    BadEvent(&'static str),
    /// A malformed `_sc|...` service check.
    #[error("malformed DogStatsD service check: {0}")]
    BadServiceCheck(&'static str),
}

impl ParseError {
    /// A short, stable label for counters (`reason="..."`).
    pub fn reason(self) -> &'static str {
        match self {
            ParseError::NotUtf8 => "not_utf8",
            ParseError::NoValue => "no_value",
            ParseError::EmptyName => "empty_name",
            ParseError::NoType => "no_type",
            ParseError::UnknownType => "unknown_type",
            ParseError::BadValue => "bad_value",
            ParseError::SignNotAllowed => "sign_not_allowed",
            ParseError::BadSampleRate => "bad_sample_rate",
            ParseError::BadTimestamp => "bad_timestamp",
            ParseError::BadEvent(_) => "bad_event",
            ParseError::BadServiceCheck(_) => "bad_service_check",
        }
    }

    /// Every reason label, for pre-registering counters.
    pub const REASONS: [&'static str; 11] = [
        "not_utf8",
        "no_value",
        "empty_name",
        "no_type",
        "unknown_type",
        "bad_value",
        "sign_not_allowed",
        "bad_sample_rate",
        "bad_timestamp",
        "bad_event",
        "bad_service_check",
    ];

    /// True when the sample was still used (only an option of it was ignored).
    pub fn is_soft(self) -> bool {
        matches!(self, ParseError::BadSampleRate | ParseError::BadTimestamp)
    }
}

/// What the parser found, one at a time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Item<'a> {
    /// A metric sample.
    Sample(Sample<'a>),
    /// A DogStatsD event.
    Event(Event<'a>),
    /// A DogStatsD service check.
    ServiceCheck(ServiceCheck<'a>),
    /// A problem, with the (trimmed) line it was found in, lossily decoded if not UTF-8.
    Error(ParseError, LineRef<'a>),
}

/// The line an error was found in (for rate-limited logging).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct LineRef<'a>(pub &'a [u8]);

impl fmt::Debug for LineRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.0))
    }
}

impl fmt::Display for LineRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.0))
    }
}

/// Parser switches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseOptions {
    /// `datadog_extensions`: `|#tags`, `_e{}` events and `_sc|` service checks.
    pub datadog_extensions: bool,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            datadog_extensions: true,
        }
    }
}

/// Parses one datagram, calling `out` for every item in order. Malformed lines or values
/// produce an [`Item::Error`] and are skipped; the rest of the datagram is still parsed.
pub fn parse_datagram<'a>(data: &'a [u8], opts: ParseOptions, out: &mut impl FnMut(Item<'a>)) {
    for raw in data.split(|&b| b == b'\n') {
        let line = raw.trim_ascii();
        if line.is_empty() {
            continue;
        }
        match std::str::from_utf8(line) {
            // Go's TrimSpace also trims Unicode white space.
            Ok(text) => match text.trim() {
                "" => {}
                text => parse_line(text, opts, out),
            },
            Err(_) => out(Item::Error(ParseError::NotUtf8, LineRef(line))),
        }
    }
}

/// Parses one trimmed, non-empty line.
pub fn parse_line<'a>(line: &'a str, opts: ParseOptions, out: &mut impl FnMut(Item<'a>)) {
    let here = LineRef(line.as_bytes());
    if opts.datadog_extensions {
        if line.starts_with("_e{") {
            match parse_event(line) {
                Ok(e) => out(Item::Event(e)),
                Err(e) => out(Item::Error(e, here)),
            }
            return;
        }
        if let Some(rest) = line.strip_prefix("_sc|") {
            match parse_service_check(rest) {
                Ok(sc) => out(Item::ServiceCheck(sc)),
                Err(e) => out(Item::Error(e, here)),
            }
            return;
        }
    }
    let Some((bucket, values)) = line.split_once(':') else {
        out(Item::Error(ParseError::NoValue, here));
        return;
    };
    let (name_part, tags_part) = bucket.split_once(',').unwrap_or((bucket, ""));
    // Go's strings.Fields: the first word by Unicode white space.
    let name = name_part
        .split(char::is_whitespace)
        .find(|w| !w.is_empty())
        .unwrap_or("");
    if name.is_empty() {
        out(Item::Error(ParseError::EmptyName, here));
        return;
    }
    let dd_tags = if opts.datadog_extensions {
        DdTags::new(values)
    } else {
        DdTags::NONE
    };
    let base = Sample {
        name,
        bucket_tags: tags_part,
        kind: MetricType::Counter,
        value: SampleValue::Number {
            value: 0.0,
            signed: false,
        },
        rate: None,
        timestamp: None,
        dd_tags,
    };

    // Untyped bits (DogStatsD packed values) wait here for the next typed bit.
    let mut pending: Option<(usize, usize)> = None;
    let start_of = |bit: &str| bit.as_ptr() as usize - values.as_ptr() as usize;
    for bit in Bits::new(values) {
        let Some((value_text, options)) = bit.split_once('|') else {
            let s = start_of(bit);
            pending = Some(match pending {
                Some((first, _)) => (first, s + bit.len()),
                None => (s, s + bit.len()),
            });
            continue;
        };
        // Tag segments do not count as positions (Datakit removes them before splitting).
        let mut segs = options.split('|').filter(|seg| !seg.starts_with('#'));
        let code = segs.next().unwrap_or("");
        let Some(kind) = MetricType::from_code(code) else {
            out(Item::Error(ParseError::UnknownType, here));
            pending = None;
            continue;
        };
        let mut sample = Sample { kind, ..base };
        for seg in segs {
            if let Some(rate) = seg.strip_prefix('@') {
                match rate.parse::<f64>() {
                    Ok(r) if r.is_finite() && r > 0.0 => sample.rate = Some(r),
                    _ => out(Item::Error(ParseError::BadSampleRate, here)),
                }
            } else if let Some(ts) = seg.strip_prefix('T') {
                match ts.parse::<i64>() {
                    Ok(t) => sample.timestamp = Some(t),
                    Err(_) => out(Item::Error(ParseError::BadTimestamp, here)),
                }
            }
            // `#tags` are read through `dd_tags`; `c:`, `e:`, `card:` and unknown options
            // are ignored, as DogStatsD servers ignore what they do not use.
        }
        if let Some((from, to)) = pending.take() {
            for v in values[from..to].split(':') {
                emit_value(sample, v, here, out);
            }
        }
        emit_value(sample, value_text, here, out);
    }
    if pending.is_some() {
        out(Item::Error(ParseError::NoType, here));
    }
}

fn emit_value<'a>(
    mut sample: Sample<'a>,
    text: &'a str,
    here: LineRef<'a>,
    out: &mut impl FnMut(Item<'a>),
) {
    if sample.kind == MetricType::Set {
        sample.value = SampleValue::Text(text);
        out(Item::Sample(sample));
        return;
    }
    let signed = text.starts_with(['+', '-']);
    if signed && !matches!(sample.kind, MetricType::Gauge | MetricType::Counter) {
        out(Item::Error(ParseError::SignNotAllowed, here));
        return;
    }
    match parse_number(text) {
        Some(value) => {
            sample.value = SampleValue::Number { value, signed };
            out(Item::Sample(sample));
        }
        None => out(Item::Error(ParseError::BadValue, here)),
    }
}

/// A finite float; accepts what Go's `ParseFloat` accepts for decimal input.
fn parse_number(text: &str) -> Option<f64> {
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Splits the part after the bucket at `:`, except inside option segments whose text may
/// contain `:` (`#k:v` tags anywhere after the value, `c:`/`e:`/`card:` after the type).
struct Bits<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Bits<'a> {
    fn new(s: &'a str) -> Bits<'a> {
        Bits { s, pos: 0 }
    }
}

impl<'a> Iterator for Bits<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.pos > self.s.len() {
            return None;
        }
        let bytes = self.s.as_bytes();
        let start = self.pos;
        let mut seg_index = 0usize;
        let mut protected = false;
        let mut i = start;
        while i < bytes.len() {
            match bytes[i] {
                b'|' => {
                    seg_index += 1;
                    let next = &bytes[i + 1..];
                    protected = next.first() == Some(&b'#')
                        || (seg_index >= 2
                            && (next.starts_with(b"c:")
                                || next.starts_with(b"e:")
                                || next.starts_with(b"card:")));
                }
                b':' if !protected => {
                    self.pos = i + 1;
                    return Some(&self.s[start..i]);
                }
                _ => {}
            }
            i += 1;
        }
        self.pos = bytes.len() + 1;
        Some(&self.s[start..])
    }
}

fn parse_event(line: &str) -> Result<Event<'_>, ParseError> {
    let (header, body) = line
        .split_once(':')
        .ok_or(ParseError::BadEvent("no ':' after the _e{...} header"))?;
    let lens = header
        .strip_prefix("_e{")
        .and_then(|h| h.strip_suffix('}'))
        .ok_or(ParseError::BadEvent(
            "header is not _e{<title length>,<text length>}",
        ))?;
    let (tl, xl) = lens.split_once(',').ok_or(ParseError::BadEvent(
        "header is not _e{<title length>,<text length>}",
    ))?;
    let title_len: usize = tl
        .parse()
        .map_err(|_| ParseError::BadEvent("title length is not a number"))?;
    let text_len: usize = xl
        .parse()
        .map_err(|_| ParseError::BadEvent("text length is not a number"))?;
    let text_end = title_len
        .checked_add(1)
        .and_then(|n| n.checked_add(text_len))
        .filter(|&end| end <= body.len())
        .ok_or(ParseError::BadEvent(
            "title and text lengths exceed the message",
        ))?;
    let title = body
        .get(..title_len)
        .ok_or(ParseError::BadEvent("title length splits a character"))?;
    if body.as_bytes().get(title_len) != Some(&b'|') {
        return Err(ParseError::BadEvent("no '|' after the title"));
    }
    let text = body
        .get(title_len + 1..text_end)
        .ok_or(ParseError::BadEvent("text length splits a character"))?;
    if title.is_empty() || text.is_empty() {
        return Err(ParseError::BadEvent("empty title or text"));
    }
    let meta = &body[text_end..];
    if !meta.is_empty() && !meta.starts_with('|') {
        return Err(ParseError::BadEvent(
            "text is longer than its declared length",
        ));
    }
    let mut event = Event {
        title,
        text,
        timestamp: None,
        hostname: None,
        aggregation_key: None,
        priority: "normal",
        source_type: None,
        alert_type: AlertType::Info,
        tags: DdTags::new(meta),
    };
    for seg in meta.split('|').skip(1) {
        if let Some(v) = seg.strip_prefix("d:") {
            event.timestamp = v.parse().ok();
        } else if let Some(v) = seg.strip_prefix("h:") {
            event.hostname = Some(v).filter(|h| !h.is_empty());
        } else if let Some(v) = seg.strip_prefix("k:") {
            event.aggregation_key = Some(v).filter(|k| !k.is_empty());
        } else if let Some(v) = seg.strip_prefix("p:") {
            if v == "low" || v == "normal" {
                event.priority = v;
            }
        } else if let Some(v) = seg.strip_prefix("s:") {
            event.source_type = Some(v).filter(|s| !s.is_empty());
        } else if let Some(v) = seg.strip_prefix("t:") {
            event.alert_type = match v {
                "warning" => AlertType::Warning,
                "error" => AlertType::Error,
                "success" => AlertType::Success,
                "info" => AlertType::Info,
                _ => event.alert_type,
            };
        }
        // `#tags` via `tags`; other metadata (`c:` container id...) is ignored.
    }
    Ok(event)
}

fn parse_service_check(rest: &str) -> Result<ServiceCheck<'_>, ParseError> {
    // The message runs to the end of the line, so cut it off first.
    let (head, message) = match rest.find("|m:") {
        Some(i) => (&rest[..i], Some(&rest[i + 3..])),
        None => (rest, None),
    };
    let mut segs = head.split('|');
    let name = segs.next().unwrap_or("");
    if name.is_empty() {
        return Err(ParseError::BadServiceCheck("empty check name"));
    }
    let status = match segs.next() {
        Some("0") => CheckStatus::Ok,
        Some("1") => CheckStatus::Warning,
        Some("2") => CheckStatus::Critical,
        Some("3") => CheckStatus::Unknown,
        _ => return Err(ParseError::BadServiceCheck("status is not 0, 1, 2 or 3")),
    };
    let meta_start = name.len() + 1 + 1;
    let meta = head.get(meta_start..).unwrap_or("");
    let mut sc = ServiceCheck {
        name,
        status,
        timestamp: None,
        hostname: None,
        message: message.filter(|m| !m.is_empty()),
        tags: DdTags::new(meta),
    };
    for seg in segs {
        if let Some(v) = seg.strip_prefix("d:") {
            sc.timestamp = v.parse().ok();
        } else if let Some(v) = seg.strip_prefix("h:") {
            sc.hostname = Some(v).filter(|h| !h.is_empty());
        }
    }
    Ok(sc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Smp {
        name: String,
        kind: MetricType,
        value: String,
        rate: Option<f64>,
        ts: Option<i64>,
        tags: Vec<(String, String)>,
        bucket: String,
    }

    #[derive(Debug, PartialEq)]
    enum Got {
        S(Smp),
        E(String),
        Ev(String, String),
        Sc(String, i64),
    }

    fn parse(data: &str) -> Vec<Got> {
        parse_with(data, ParseOptions::default())
    }

    fn parse_with(data: &str, opts: ParseOptions) -> Vec<Got> {
        let mut got = Vec::new();
        parse_datagram(data.as_bytes(), opts, &mut |item| {
            got.push(match item {
                Item::Sample(s) => Got::S(Smp {
                    name: s.name.to_string(),
                    kind: s.kind,
                    value: match s.value {
                        SampleValue::Number { value, signed } => {
                            format!("{}{value}", if signed { "~" } else { "" })
                        }
                        SampleValue::Text(t) => format!("'{t}'"),
                    },
                    rate: s.rate,
                    ts: s.timestamp,
                    tags: s
                        .dd_tags
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    bucket: s.bucket_tags.to_string(),
                }),
                Item::Error(e, _) => Got::E(e.reason().to_string()),
                Item::Event(e) => Got::Ev(e.title.to_string(), e.text.to_string()),
                Item::ServiceCheck(sc) => Got::Sc(sc.name.to_string(), sc.status.code()),
            });
        });
        got
    }

    fn smp(name: &str, kind: MetricType, value: &str) -> Smp {
        Smp {
            name: name.into(),
            kind,
            value: value.into(),
            rate: None,
            ts: None,
            tags: vec![],
            bucket: String::new(),
        }
    }

    fn s(name: &str, kind: MetricType, value: &str) -> Got {
        Got::S(smp(name, kind, value))
    }

    fn e(reason: &str) -> Got {
        Got::E(reason.into())
    }

    #[test]
    fn parses_every_metric_type() {
        assert_eq!(
            parse("a.b:1|c\ng:2.5|g\nu:joe|s\nt:320|ms\nh:7|h\nd:0.5|d"),
            vec![
                s("a.b", MetricType::Counter, "1"),
                s("g", MetricType::Gauge, "2.5"),
                s("u", MetricType::Set, "'joe'"),
                s("t", MetricType::Timing, "320"),
                s("h", MetricType::Histogram, "7"),
                s("d", MetricType::Distribution, "0.5"),
            ]
        );
    }

    #[test]
    fn marks_signed_gauge_and_counter_values_as_deltas() {
        assert_eq!(
            parse("g:+4|g\ng:-3|g\nc:-2|c"),
            vec![
                s("g", MetricType::Gauge, "~4"),
                s("g", MetricType::Gauge, "~-3"),
                s("c", MetricType::Counter, "~-2"),
            ]
        );
    }

    #[test]
    fn refuses_signed_values_for_other_types() {
        assert_eq!(
            parse("t:+4|ms\nh:-1|h\nx:1|c"),
            vec![
                e("sign_not_allowed"),
                e("sign_not_allowed"),
                s("x", MetricType::Counter, "1")
            ]
        );
    }

    #[test]
    fn reads_sample_rate_timestamp_and_tags_in_any_order() {
        let got = parse("users.online:1|c|#country:china,env|T1658997712|@0.5");
        assert_eq!(
            got,
            vec![Got::S(Smp {
                name: "users.online".into(),
                kind: MetricType::Counter,
                value: "1".into(),
                rate: Some(0.5),
                ts: Some(1_658_997_712),
                tags: vec![
                    ("country".into(), "china".into()),
                    ("env".into(), "true".into())
                ],
                bucket: String::new(),
            })]
        );
    }

    #[test]
    fn keeps_the_sample_when_rate_or_timestamp_is_bad() {
        let got = parse("a:1|c|@x\nb:2|c|@0|Tsoon\nc:3|c|@-1");
        assert_eq!(
            got,
            vec![
                e("bad_sample_rate"),
                s("a", MetricType::Counter, "1"),
                e("bad_sample_rate"),
                e("bad_timestamp"),
                s("b", MetricType::Counter, "2"),
                e("bad_sample_rate"),
                s("c", MetricType::Counter, "3"),
            ]
        );
    }

    #[test]
    fn splits_datakit_multi_value_lines_with_a_type_per_value() {
        assert_eq!(
            parse("a:1|c:2|g:3|ms|@0.5"),
            vec![
                s("a", MetricType::Counter, "1"),
                s("a", MetricType::Gauge, "2"),
                Got::S(Smp {
                    rate: Some(0.5),
                    ..smp("a", MetricType::Timing, "3")
                }),
            ]
        );
    }

    #[test]
    fn splits_dogstatsd_packed_values_sharing_one_type() {
        let got = parse("lat:1:2.5:3|ms|@0.1|#svc:web");
        let one = |v: &str| {
            Got::S(Smp {
                rate: Some(0.1),
                tags: vec![("svc".into(), "web".into())],
                ..smp("lat", MetricType::Timing, v)
            })
        };
        assert_eq!(got, vec![one("1"), one("2.5"), one("3")]);
    }

    #[test]
    fn reports_values_without_a_type() {
        assert_eq!(parse("a:1:2"), vec![e("no_type")]);
        assert_eq!(parse("a:1"), vec![e("no_type")]);
    }

    #[test]
    fn dogstatsd_tags_with_colons_do_not_split_values() {
        let got = parse("page.views:1|c|#url:http://x:80/a,team:web:ops|c:abc:def");
        assert_eq!(
            got,
            vec![Got::S(Smp {
                tags: vec![
                    ("url".into(), "http://x:80/a".into()),
                    ("team".into(), "web:ops".into())
                ],
                ..smp("page.views", MetricType::Counter, "1")
            })]
        );
    }

    #[test]
    fn dogstatsd_tags_come_from_every_tag_segment() {
        let got = parse("a:1|g|#x:1|#y");
        let Got::S(Smp { tags, .. }) = &got[0] else {
            panic!("{got:?}");
        };
        assert_eq!(
            tags,
            &vec![("x".into(), "1".into()), ("y".into(), "true".into())]
        );
    }

    #[test]
    fn ignores_tags_without_extensions() {
        let got = parse_with(
            "a:1|c|#x:1",
            ParseOptions {
                datadog_extensions: false,
            },
        );
        assert_eq!(got, vec![s("a", MetricType::Counter, "1")]);
    }

    #[test]
    fn keeps_bucket_tags_raw_and_iterates_valid_ones() {
        let got = parse("cpu.load,host=a,bad,k=v=w,=x,e=:1|g");
        assert_eq!(
            got,
            vec![Got::S(Smp {
                bucket: "host=a,bad,k=v=w,=x,e=".into(),
                ..smp("cpu.load", MetricType::Gauge, "1")
            })]
        );
        let tags: Vec<_> = bucket_tags("host=a,bad,k=v=w,=x,e=").collect();
        assert_eq!(tags, vec![("host", "a")]);
    }

    #[test]
    fn name_is_cut_at_whitespace_like_datakit() {
        assert_eq!(
            parse("my metric:1|c"),
            vec![s("my", MetricType::Counter, "1")]
        );
    }

    #[test]
    fn skips_blank_lines_and_trims_crlf() {
        assert_eq!(
            parse("\n\r\n  a:1|c \r\n\n"),
            vec![s("a", MetricType::Counter, "1")]
        );
    }

    #[test]
    fn malformed_lines_are_reported_and_the_rest_is_kept() {
        let got = parse("nocolon\n:1|c\na:1|x\na:abc|g\na:NaN|g\na:inf|c\nok:1|c");
        assert_eq!(
            got,
            vec![
                e("no_value"),
                e("empty_name"),
                e("unknown_type"),
                e("bad_value"),
                e("bad_value"),
                e("bad_value"),
                s("ok", MetricType::Counter, "1"),
            ]
        );
    }

    #[test]
    fn invalid_utf8_skips_only_that_line() {
        let mut data = b"a:1|c\n".to_vec();
        data.extend_from_slice(b"b\xff:1|c\nc:2|c");
        let mut got = Vec::new();
        parse_datagram(&data, ParseOptions::default(), &mut |item| {
            got.push(match item {
                Item::Sample(s) => s.name.to_string(),
                Item::Error(e, _) => e.reason().to_string(),
                _ => String::new(),
            })
        });
        assert_eq!(got, vec!["a", "not_utf8", "c"]);
    }

    #[test]
    fn set_values_are_kept_as_written() {
        assert_eq!(parse("u:-x|s"), vec![s("u", MetricType::Set, "'-x'")]);
    }

    #[test]
    fn parses_a_full_event() {
        let line = "_e{5,10}:Build|done\\nwell|d:1700000000|h:web1|k:agg|p:low|s:jenkins|t:error|#env:prod,team";
        let mut got = None;
        parse_datagram(line.as_bytes(), ParseOptions::default(), &mut |item| {
            if let Item::Event(e) = item {
                got = Some((
                    e,
                    e.tags
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>(),
                ));
            }
        });
        let (e, tags) = got.expect("an event");
        assert_eq!(e.title, "Build");
        assert_eq!(e.text, "done\\nwell");
        assert_eq!(e.timestamp, Some(1_700_000_000));
        assert_eq!(e.hostname, Some("web1"));
        assert_eq!(e.aggregation_key, Some("agg"));
        assert_eq!(e.priority, "low");
        assert_eq!(e.source_type, Some("jenkins"));
        assert_eq!(e.alert_type, AlertType::Error);
        assert_eq!(tags, vec!["env=prod", "team=true"]);
    }

    #[test]
    fn event_text_may_contain_pipes_and_colons() {
        assert_eq!(
            parse("_e{2,5}:hi|a|b:c"),
            vec![Got::Ev("hi".into(), "a|b:c".into())]
        );
    }

    #[test]
    fn rejects_malformed_events() {
        for bad in [
            "_e{5,4}:abc|defg",
            "_e{x,4}:title|text",
            "_e{5}:title|text",
            "_e{0,4}:|text",
            "_e{5,4}:titleXtext",
            "_e{5,2}:title|text",
            "_e{5,4}",
            "_e{99999999999999999999,1}:a|b",
        ] {
            assert_eq!(parse(bad), vec![e("bad_event")], "{bad}");
        }
    }

    #[test]
    fn event_lengths_count_bytes() {
        assert_eq!(
            parse("_e{5,2}:été|ok"),
            vec![Got::Ev("été".into(), "ok".into())]
        );
        assert_eq!(parse("_e{1,2}:été|ok"), vec![e("bad_event")]);
    }

    #[test]
    fn parses_service_checks() {
        let line = "_sc|db.up|2|d:1700000000|h:db1|#env:prod|m:disk full | really";
        let mut got = None;
        parse_datagram(line.as_bytes(), ParseOptions::default(), &mut |item| {
            if let Item::ServiceCheck(sc) = item {
                got = Some((sc, sc.tags.iter().collect::<Vec<_>>().len()));
            }
        });
        let (sc, ntags) = got.expect("a service check");
        assert_eq!(sc.name, "db.up");
        assert_eq!(sc.status, CheckStatus::Critical);
        assert_eq!(sc.timestamp, Some(1_700_000_000));
        assert_eq!(sc.hostname, Some("db1"));
        assert_eq!(sc.message, Some("disk full | really"));
        assert_eq!(ntags, 1);
        assert_eq!(
            parse("_sc|x|0\n_sc|x|4\n_sc||1\n_sc|x"),
            vec![
                Got::Sc("x".into(), 0),
                e("bad_service_check"),
                e("bad_service_check"),
                e("bad_service_check"),
            ]
        );
    }

    #[test]
    fn events_and_checks_are_plain_lines_without_extensions() {
        let got = parse_with(
            "_e{1,1}:a|b\n_sc|x|0",
            ParseOptions {
                datadog_extensions: false,
            },
        );
        assert_eq!(got, vec![e("unknown_type"), e("no_value")]);
    }

    #[test]
    fn datakit_test_lines_parse() {
        // From Datakit's parser_test.go: `T...` where the type belongs (dropped) and a gauge
        // with bare tags.
        assert_eq!(
            parse("namespace.test_gauge:21|#globalTags,globalTags2,tag1,tag2|T1658997712"),
            vec![e("unknown_type")]
        );
        assert_eq!(
            parse("a:1|#t:v|g"),
            vec![Got::S(Smp {
                tags: vec![("t".into(), "v".into())],
                ..smp("a", MetricType::Gauge, "1")
            })]
        );
        let got = parse("namespace.test_gauge:21|g|#globalTags,globalTags2,tag1,tag2");
        let Got::S(Smp { tags, value, .. }) = &got[0] else {
            panic!("{got:?}");
        };
        assert_eq!(value, "21");
        assert_eq!(tags.len(), 4);
        assert!(tags.iter().all(|(_, v)| v == "true"));
    }
}
