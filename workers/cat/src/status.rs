//! The CAT heartbeat: the `<status>` XML document a client sends every minute in the data of
//! an `H` record, read by a small bounded XML reader (elements, attributes, text, comments,
//! CDATA, the prolog; no DTD, no namespaces) into the sections Datakit turns into `cat`
//! metrics.

use dk_proto::{Point, Value};

/// Most elements read from one document.
pub const MAX_ELEMENTS: usize = 10_000;
/// Deepest nesting read.
pub const MAX_DEPTH: usize = 64;

/// Why a heartbeat document was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    /// Not well-formed enough to read.
    #[error("the heartbeat XML is malformed at byte {0}")]
    Malformed(usize),
    /// The document element is not `<status>`.
    #[error("the heartbeat XML is not a <status> document")]
    NotStatus,
    /// Over [`MAX_ELEMENTS`] or [`MAX_DEPTH`].
    #[error("the heartbeat XML has too many or too deeply nested elements")]
    TooBig,
    /// An attribute that should be a number is not.
    #[error("the heartbeat attribute {0} is not a number: {1:?}")]
    NotANumber(String, String),
}

/// The attributes of one element, as read.
pub type Attrs = Vec<(String, String)>;

/// The sections of a `<status>` document that become metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    /// The `timestamp` attribute (`YYYY-MM-DD hh:mm:ss.mmm`, the client's local time).
    pub timestamp: String,
    /// `<runtime>` attributes, with its `<user-dir>` text.
    pub runtime: Option<(Attrs, String)>,
    /// `<os>` attributes.
    pub os: Option<Attrs>,
    /// Each `<disk><disk-volume>`.
    pub disk_volumes: Vec<Attrs>,
    /// `<memory>` attributes and each of its `<gc>`.
    pub memory: Option<(Attrs, Vec<Attrs>)>,
    /// `<thread>` attributes.
    pub thread: Option<Attrs>,
}

/// One piece of an XML document.
#[derive(Debug, PartialEq)]
enum Token<'a> {
    Start {
        name: &'a str,
        attrs: Attrs,
        empty: bool,
    },
    End,
    Text(String),
}

/// Reads the tokens of a document.
struct Tokenizer<'a> {
    s: &'a str,
    at: usize,
}

fn unescape(raw: &str) -> String {
    if !raw.contains('&') {
        return raw.to_string();
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';').filter(|&e| e <= 12) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..end];
        let c = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

impl<'a> Tokenizer<'a> {
    fn malformed(&self) -> StatusError {
        StatusError::Malformed(self.at)
    }

    /// Skips past `end`, from the current position.
    fn skip_past(&mut self, end: &str) -> Result<(), StatusError> {
        match self.s[self.at..].find(end) {
            Some(i) => {
                self.at += i + end.len();
                Ok(())
            }
            None => Err(self.malformed()),
        }
    }

    fn next(&mut self) -> Result<Option<Token<'a>>, StatusError> {
        loop {
            let rest = &self.s[self.at..];
            if rest.is_empty() {
                return Ok(None);
            }
            if !rest.starts_with('<') {
                let end = rest.find('<').unwrap_or(rest.len());
                self.at += end;
                return Ok(Some(Token::Text(unescape(&rest[..end]))));
            }
            if rest.starts_with("<?") {
                self.skip_past("?>")?;
                continue;
            }
            if rest.starts_with("<!--") {
                self.skip_past("-->")?;
                continue;
            }
            if let Some(cdata) = rest.strip_prefix("<![CDATA[") {
                let end = cdata.find("]]>").ok_or_else(|| self.malformed())?;
                self.at += 9 + end + 3;
                return Ok(Some(Token::Text(cdata[..end].to_string())));
            }
            if rest.starts_with("<!") {
                self.skip_past(">")?;
                continue;
            }
            if rest.starts_with("</") {
                self.skip_past(">")?;
                return Ok(Some(Token::End));
            }
            return self.start().map(Some);
        }
    }

    /// A start tag at `<`.
    fn start(&mut self) -> Result<Token<'a>, StatusError> {
        let s = self.s;
        let bytes = s.as_bytes();
        let mut i = self.at + 1;
        let name_end = s[i..]
            .find(|c: char| c.is_ascii_whitespace() || c == '/' || c == '>')
            .map_or(s.len(), |n| i + n);
        let name = &s[i..name_end];
        if name.is_empty() {
            return Err(self.malformed());
        }
        i = name_end;
        let mut attrs = Attrs::new();
        loop {
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            match bytes.get(i) {
                None => return Err(StatusError::Malformed(i)),
                Some(b'>') => {
                    self.at = i + 1;
                    return Ok(Token::Start {
                        name,
                        attrs,
                        empty: false,
                    });
                }
                Some(b'/') => {
                    if bytes.get(i + 1) != Some(&b'>') {
                        return Err(StatusError::Malformed(i));
                    }
                    self.at = i + 2;
                    return Ok(Token::Start {
                        name,
                        attrs,
                        empty: true,
                    });
                }
                Some(_) => {
                    let eq = s[i..].find('=').map(|n| i + n);
                    let Some(eq) = eq else {
                        return Err(StatusError::Malformed(i));
                    };
                    let key = s[i..eq].trim();
                    if key.is_empty() || key.contains(['<', '>', '/']) {
                        return Err(StatusError::Malformed(i));
                    }
                    let mut j = eq + 1;
                    while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                        j += 1;
                    }
                    let quote = match bytes.get(j) {
                        Some(&q @ (b'"' | b'\'')) => q as char,
                        _ => return Err(StatusError::Malformed(j)),
                    };
                    let close = s[j + 1..]
                        .find(quote)
                        .map(|n| j + 1 + n)
                        .ok_or(StatusError::Malformed(j))?;
                    attrs.push((key.to_string(), unescape(&s[j + 1..close])));
                    i = close + 1;
                }
            }
        }
    }
}

/// Reads a `<status>` document.
///
/// # Errors
/// Malformed, not `<status>`, or over the caps.
pub fn parse(xml: &[u8]) -> Result<Status, StatusError> {
    let text = String::from_utf8_lossy(xml);
    let mut t = Tokenizer { s: &text, at: 0 };
    let mut status = Status::default();
    // The element names from the document element down.
    let mut path: Vec<&str> = Vec::new();
    let mut elements = 0usize;
    let mut seen_root = false;
    while let Some(token) = t.next()? {
        match token {
            Token::Text(s) => {
                if path.as_slice() == ["status", "runtime", "user-dir"]
                    && let Some((_, dir)) = status.runtime.as_mut()
                {
                    dir.push_str(&s);
                }
            }
            Token::End => {
                if path.pop().is_none() {
                    return Err(t.malformed());
                }
                if path.is_empty() {
                    break;
                }
            }
            Token::Start { name, attrs, empty } => {
                elements += 1;
                if elements > MAX_ELEMENTS || path.len() >= MAX_DEPTH {
                    return Err(StatusError::TooBig);
                }
                if path.is_empty() {
                    if seen_root || name != "status" {
                        return Err(StatusError::NotStatus);
                    }
                    seen_root = true;
                    status.timestamp = attr(&attrs, "timestamp").unwrap_or_default().to_string();
                } else {
                    take(&mut status, &path, name, attrs);
                }
                if !empty {
                    path.push(name);
                } else if path.is_empty() {
                    break;
                }
            }
        }
    }
    if !seen_root {
        return Err(StatusError::NotStatus);
    }
    Ok(status)
}

/// Keeps the element `name` under `path` if it is a section of [`Status`]. A repeated
/// single section keeps its last occurrence (as Go's decoder does).
fn take(status: &mut Status, path: &[&str], name: &str, attrs: Attrs) {
    match (path, name) {
        (["status"], "runtime") => status.runtime = Some((attrs, String::new())),
        (["status"], "os") => status.os = Some(attrs),
        (["status"], "memory") => status.memory = Some((attrs, Vec::new())),
        (["status"], "thread") => status.thread = Some(attrs),
        (["status", "disk"], "disk-volume") => status.disk_volumes.push(attrs),
        (["status", "memory"], "gc") => {
            if let Some((_, gcs)) = status.memory.as_mut() {
                gcs.push(attrs);
            }
        }
        _ => {}
    }
}

fn attr<'a>(attrs: &'a Attrs, key: &str) -> Option<&'a str> {
    attrs
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// An integer attribute: absent or empty is 0 (as Go's decoder).
fn int(attrs: &Attrs, key: &str) -> Result<i64, StatusError> {
    match attr(attrs, key).map(str::trim) {
        None | Some("") => Ok(0),
        Some(v) => v
            .parse()
            .map_err(|_| StatusError::NotANumber(key.to_string(), v.to_string())),
    }
}

fn float(attrs: &Attrs, key: &str) -> Result<f64, StatusError> {
    match attr(attrs, key).map(str::trim) {
        None | Some("") => Ok(0.0),
        Some(v) => v
            .parse()
            .map_err(|_| StatusError::NotANumber(key.to_string(), v.to_string())),
    }
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD hh:mm:ss.mmm` read as UTC: Unix milliseconds, `None` when it is not that.
pub fn civil_ms(ts: &str) -> Option<i64> {
    let b = ts.as_bytes();
    if b.len() != 23
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b' '
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'.'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = ts.get(r)?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let max_day = *month_days.get(usize::try_from(mo - 1).ok()?)?;
    if d < 1 || d > max_day || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    Some(((days * 24 + h) * 60 + mi) * 60_000 + s * 1000 + ms)
}

/// The points of a heartbeat, measurement `cat`, tags `domain` and `hostName` on each. The
/// time is the document's `timestamp` read in the client's local time: `utc_offset_s` gives
/// the local UTC offset (seconds east) at a Unix time; an unreadable timestamp is `now_ns`.
///
/// # Errors
/// A number attribute that is not one (the whole heartbeat is dropped, as Datakit does).
pub fn points(
    status: &Status,
    domain: &str,
    host: &str,
    now_ns: i64,
    utc_offset_s: impl Fn(i64) -> i64,
) -> Result<Vec<Point>, StatusError> {
    let time = match civil_ms(&status.timestamp) {
        Some(ms) => {
            let offset = utc_offset_s(ms / 1000);
            (ms - offset * 1000).saturating_mul(1_000_000)
        }
        None => now_ns,
    };
    let base = || {
        Point::new("cat", time)
            .tag("domain", domain)
            .tag("hostName", host)
    };
    let s = |attrs: &Attrs, key: &str| attr(attrs, key).unwrap_or_default().to_string();
    let mut out = Vec::new();
    if let Some((a, dir)) = &status.runtime {
        out.push(
            base()
                .tag("runtime_java-version", s(a, "java-version"))
                .tag("runtime_user-name", s(a, "user-name"))
                .tag("runtime_user-dir", dir.trim())
                .field("runtime_up-time", Value::I(int(a, "up-time")?))
                .field("runtime_start-time", Value::I(int(a, "start-time")?)),
        );
    }
    if let Some(a) = &status.os {
        let mut p = base()
            .tag("os_name", s(a, "name"))
            .tag("os_arch", s(a, "arch"))
            .tag("os_version", s(a, "version"))
            .field(
                "os_available-processors",
                Value::I(int(a, "available-processors")?),
            )
            .field(
                "os_system-load-average",
                Value::F(float(a, "system-load-average")?),
            );
        for key in [
            "total-physical-memory",
            "free-physical-memory",
            "committed-virtual-memory",
            "total-swap-space",
            "free-swap-space",
        ] {
            p.set_field(format!("os_{key}"), Value::I(int(a, key)?));
        }
        out.push(p);
    }
    for a in &status.disk_volumes {
        out.push(
            base()
                .tag("os_name", s(a, "id"))
                .field("disk_total", Value::I(int(a, "total")?))
                .field("disk_free", Value::I(int(a, "free")?))
                .field("disk_usable", Value::I(int(a, "usable")?)),
        );
    }
    if let Some((a, gcs)) = &status.memory {
        let mut p = base();
        for key in ["max", "total", "free", "heap-usage", "non-heap-usage"] {
            p.set_field(format!("memory_{key}"), Value::I(int(a, key)?));
        }
        out.push(p);
        for g in gcs {
            out.push(
                base()
                    .tag("memory_gc_name", s(g, "name"))
                    .field("memory_gc_count", Value::I(int(g, "count")?))
                    .field("memory_gc_time", Value::I(int(g, "time")?)),
            );
        }
    }
    if let Some(a) = &status.thread {
        let mut p = base();
        for key in [
            "count",
            "daemon-count",
            "peek-count",
            "total-started-count",
            "cat-thread-count",
            "pigeon-thread-count",
            "http-thread-count",
        ] {
            p.set_field(
                format!("thread_{}", key.replace('-', "_")),
                Value::I(int(a, key)?),
            );
        }
        out.push(p);
    }
    Ok(out)
}

/// A full heartbeat as the CAT Java client sends it (from Datakit's test fixture's shape).
pub const SAMPLE: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<status timestamp="2023-05-31 14:38:23.706">
   <runtime start-time="1685514987499" up-time="116231" java-version="1.8.0_371" user-name="cat">
      <user-dir>/home/cat/demo</user-dir>
      <java-classpath>demo.jar,jaccess.jar</java-classpath>
   </runtime>
   <os name="Linux" arch="amd64" version="5.15.77" available-processors="16" system-load-average="0.46" process-time="9330000000" total-physical-memory="32759095296" free-physical-memory="5753192448" committed-virtual-memory="14933397504" total-swap-space="17179865088" free-swap-space="17179865088"/>
   <disk>
      <disk-volume id="/" total="52521566208" free="42877284352" usable="40176152576"/>
      <disk-volume id="/data" total="347594051584" free="283666124800" usable="265934340096"/>
   </disk>
   <memory max="7281311744" total="648019968" free="519999696" heap-usage="128020272" non-heap-usage="63735912">
      <gc name="PS Scavenge" count="6" time="51"/>
      <gc name="PS MarkSweep" count="2" time="39"/>
   </memory>
   <thread count="44" daemon-count="39" peek-count="44" total-started-count="68" cat-thread-count="0" pigeon-thread-count="0" http-thread-count="0">
   </thread>
   <message produced="0" overflowed="0" bytes="0"/>
   <extension id="System">
      <extensionDetail id="LoadAverage" value="0.46"/>
   </extension>
   <extension id="client-send-queue">
      <description><![CDATA[client-send-queue]]></description>
      <extensionDetail id="msg-queue" value="0.0"/>
   </extension>
</status>"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn field(p: &Point, k: &str) -> Value {
        p.get_field(k).cloned().unwrap_or(Value::S("absent".into()))
    }

    #[test]
    fn a_full_heartbeat_becomes_datakits_cat_points() {
        let st = parse(SAMPLE.as_bytes()).unwrap();
        let pts = points(&st, "shop", "web-1", 0, |_| 8 * 3600).unwrap();
        // runtime, os, 2 disks, memory, 2 gcs, thread.
        assert_eq!(pts.len(), 8);
        assert!(pts.iter().all(|p| p.name == "cat"
            && p.get_tag("domain") == Some("shop")
            && p.get_tag("hostName") == Some("web-1")));
        // 2023-05-31 14:38:23.706 at UTC+8.
        assert_eq!(pts[0].time, 1_685_515_103_706_000_000);
        let rt = &pts[0];
        assert_eq!(rt.get_tag("runtime_java-version"), Some("1.8.0_371"));
        assert_eq!(rt.get_tag("runtime_user-dir"), Some("/home/cat/demo"));
        assert_eq!(field(rt, "runtime_up-time"), Value::I(116_231));
        assert_eq!(field(rt, "runtime_start-time"), Value::I(1_685_514_987_499));
        let os = &pts[1];
        assert_eq!(os.get_tag("os_arch"), Some("amd64"));
        assert_eq!(field(os, "os_available-processors"), Value::I(16));
        assert_eq!(field(os, "os_system-load-average"), Value::F(0.46));
        assert_eq!(field(os, "os_free-swap-space"), Value::I(17_179_865_088));
        assert_eq!(os.fields.len(), 7);
        assert_eq!(pts[3].get_tag("os_name"), Some("/data"));
        assert_eq!(field(&pts[3], "disk_usable"), Value::I(265_934_340_096));
        assert_eq!(
            field(&pts[4], "memory_non-heap-usage"),
            Value::I(63_735_912)
        );
        assert_eq!(pts[6].get_tag("memory_gc_name"), Some("PS MarkSweep"));
        assert_eq!(field(&pts[6], "memory_gc_time"), Value::I(39));
        let th = &pts[7];
        assert_eq!(field(th, "thread_daemon_count"), Value::I(39));
        assert_eq!(field(th, "thread_http_thread_count"), Value::I(0));
        assert_eq!(th.fields.len(), 7);
    }

    #[test]
    fn an_unreadable_timestamp_is_now_and_a_bad_number_drops_the_heartbeat() {
        let st = parse(br#"<status timestamp="yesterday"><thread count="3"/></status>"#).unwrap();
        let pts = points(&st, "d", "h", 42, |_| 0).unwrap();
        assert_eq!((pts.len(), pts[0].time), (1, 42));
        assert_eq!(field(&pts[0], "thread_count"), Value::I(3));
        assert_eq!(
            field(&pts[0], "thread_peek_count"),
            Value::I(0),
            "absent is 0"
        );
        let st = parse(br#"<status><os available-processors="many"/></status>"#).unwrap();
        assert!(matches!(
            points(&st, "d", "h", 0, |_| 0),
            Err(StatusError::NotANumber(k, _)) if k == "available-processors"
        ));
    }

    #[test]
    fn malformed_or_foreign_documents_are_errors_not_panics() {
        assert_eq!(parse(b"<other/>"), Err(StatusError::NotStatus));
        assert_eq!(parse(b"just text"), Err(StatusError::NotStatus));
        assert!(matches!(
            parse(b"<status><os name=\"x"),
            Err(StatusError::Malformed(_))
        ));
        assert!(matches!(
            parse(b"<status><os name=x/>"),
            Err(StatusError::Malformed(_))
        ));
        let deep = "<status>".to_string() + &"<a>".repeat(MAX_DEPTH + 1);
        assert_eq!(parse(deep.as_bytes()), Err(StatusError::TooBig));
        let wide = "<status>".to_string() + &"<a/>".repeat(MAX_ELEMENTS + 1);
        assert_eq!(parse(wide.as_bytes()), Err(StatusError::TooBig));
        // Entities, single quotes and comments.
        let st = parse(
            b"<!-- x --><status timestamp='t'><runtime java-version=\"a&amp;b&#x41;\"><user-dir>&lt;d&gt;</user-dir></runtime></status>",
        )
        .unwrap();
        let (a, dir) = st.runtime.unwrap();
        assert_eq!(attr(&a, "java-version"), Some("a&bA"));
        assert_eq!(dir, "<d>");
    }

    #[test]
    fn civil_times_are_checked_and_converted() {
        assert_eq!(civil_ms("1970-01-01 00:00:00.000"), Some(0));
        assert_eq!(civil_ms("2000-02-29 23:59:59.999"), Some(951_868_799_999));
        assert_eq!(civil_ms("2001-02-29 00:00:00.000"), None);
        assert_eq!(civil_ms("2023-13-01 00:00:00.000"), None);
        assert_eq!(civil_ms("2023-05-31T14:38:23.706"), None);
        assert_eq!(civil_ms("2023-05-31 14:38:23"), None);
    }
}
