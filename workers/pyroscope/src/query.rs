//! The query string of Pyroscope's push API (`/ingest?name=app{k=v}&from=..&until=..`): tags,
//! the profile's time span and its language, as Datakit reads them.

use std::collections::BTreeMap;

/// Profiles longer than this are refused (a client sending `until` far past `from` is confused
/// about units).
const MAX_SPAN_NS: i64 = 24 * 3600 * 1_000_000_000;

/// Why a query is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// No `name` (or an empty one).
    #[error("the query has no name parameter; send name=<application>[{{k=v,...}}]")]
    NoName,
    /// `from` or `until` is missing or not an integer.
    #[error("the query parameter {key}={value:?} is not a unix time in s, ms, us or ns")]
    BadTime {
        /// `from` or `until`.
        key: &'static str,
        /// What was sent.
        value: String,
    },
    /// `until` before `from`, or a span over a day.
    #[error("the profile span from={from} until={until} is negative or longer than a day")]
    BadSpan {
        /// `from`, in ns.
        from: i64,
        /// `until`, in ns.
        until: i64,
    },
}

/// A profiling language as Datakit names it in `event.json` and the `language` tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// `java`.
    Java,
    /// `python`.
    Python,
    /// `golang`.
    Golang,
    /// `ruby`.
    Ruby,
    /// `nodejs`.
    NodeJs,
    /// `php`.
    Php,
    /// `dotnet`.
    DotNet,
    /// `rust`.
    Rust,
    /// `unknown`.
    Unknown,
}

impl Language {
    /// The name Datakit writes.
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Java => "java",
            Language::Python => "python",
            Language::Golang => "golang",
            Language::Ruby => "ruby",
            Language::NodeJs => "nodejs",
            Language::Php => "php",
            Language::DotNet => "dotnet",
            Language::Rust => "rust",
            Language::Unknown => "unknown",
        }
    }

    /// The language of a `spyName`: without its trailing `spy`, looked up exactly, then as a
    /// substring (longest names first, so the answer does not depend on map order).
    /// Unlike Datakit, `pyspy` is Python, `rbspy` Ruby and `pyroscope-rs` Rust.
    pub fn of_spy(spy_name: &str) -> Language {
        let lower = spy_name.to_ascii_lowercase();
        let runtime = lower.strip_suffix("spy").unwrap_or(&lower);
        if let Some((_, lang)) = EXACT.iter().find(|(k, _)| *k == runtime) {
            return *lang;
        }
        SUBSTRINGS
            .iter()
            .find(|(k, _)| runtime.contains(k))
            .map_or(Language::Unknown, |(_, lang)| *lang)
    }
}

/// Exact runtime names (the `spyName` without `spy`).
const EXACT: &[(&str, Language)] = &[
    ("java", Language::Java),
    ("jvm", Language::Java),
    ("py", Language::Python),
    ("python", Language::Python),
    ("rb", Language::Ruby),
    ("ruby", Language::Ruby),
    ("node", Language::NodeJs),
    ("nodejs", Language::NodeJs),
    ("node.js", Language::NodeJs),
    ("php", Language::Php),
    (".net", Language::DotNet),
    ("dotnet", Language::DotNet),
    ("c#", Language::DotNet),
    ("csharp", Language::DotNet),
    ("golang", Language::Golang),
    ("go", Language::Golang),
    ("pyroscope-rs", Language::Rust),
    ("rust", Language::Rust),
    ("ebpf", Language::Unknown),
];

/// Substrings tried in order when no exact name matches (longest first; `go` and `py` last as
/// they hide in other words).
const SUBSTRINGS: &[(&str, Language)] = &[
    ("node.js", Language::NodeJs),
    ("python", Language::Python),
    ("csharp", Language::DotNet),
    ("golang", Language::Golang),
    ("dotnet", Language::DotNet),
    ("nodejs", Language::NodeJs),
    ("ruby", Language::Ruby),
    ("java", Language::Java),
    ("node", Language::NodeJs),
    ("rust", Language::Rust),
    (".net", Language::DotNet),
    ("jvm", Language::Java),
    ("php", Language::Php),
    ("c#", Language::DotNet),
    ("go", Language::Golang),
    ("py", Language::Python),
];

/// What the query of one upload says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestQuery {
    /// Every query parameter (values of a repeated key joined by `,`), the labels of `name`,
    /// `service` (from `name` when absent), `runtime-id` mirrored from `runtime_id`.
    pub tags: BTreeMap<String, String>,
    /// Start of the profile, unix ns.
    pub from_ns: i64,
    /// End of the profile, unix ns.
    pub until_ns: i64,
    /// `format`, lower case (empty when absent).
    pub format: String,
    /// From `spyName`.
    pub language: Language,
}

/// Decodes `%XX` and `+` of one query component; invalid escapes are kept as they are.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The pairs of a raw query string, decoded, in order (empty keys skipped).
pub fn pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let k = percent_decode(k);
            (!k.is_empty()).then(|| (k, percent_decode(v)))
        })
        .collect()
}

/// A unix time in s, ms, µs or ns (told apart by magnitude) as ns.
pub fn unix_to_ns(v: i64) -> i64 {
    let a = v.unsigned_abs();
    if a < 100_000_000_000 {
        v.saturating_mul(1_000_000_000)
    } else if a < 100_000_000_000_000 {
        v.saturating_mul(1_000_000)
    } else if a < 100_000_000_000_000_000 {
        v.saturating_mul(1_000)
    } else {
        v
    }
}

fn time_of(tags: &BTreeMap<String, String>, key: &'static str) -> Result<i64, QueryError> {
    let raw = tags.get(key).map(String::as_str).unwrap_or_default();
    raw.trim()
        .parse::<i64>()
        .ok()
        .filter(|v| *v >= 0)
        .map(unix_to_ns)
        .ok_or_else(|| QueryError::BadTime {
            key,
            value: raw.chars().take(64).collect(),
        })
}

/// Reads the query of one `/ingest` request.
///
/// # Errors
/// [`QueryError`] for a missing name or unusable times.
pub fn parse(query: &str) -> Result<IngestQuery, QueryError> {
    let mut tags: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in pairs(query) {
        tags.entry(k)
            .and_modify(|old| {
                old.push(',');
                old.push_str(&v);
            })
            .or_insert(v);
    }
    let name = tags.get("name").cloned().unwrap_or_default();
    if name.trim().is_empty() {
        return Err(QueryError::NoName);
    }
    // name=app{k=v,k2=v2}: the labels become tags unless already present.
    if let Some(idx) = name.find('{')
        && idx > 0
        && name.ends_with('}')
        && idx < name.len() - 1
    {
        tags.insert("name".into(), name[..idx].to_string());
        for kv in name[idx + 1..name.len() - 1].split(',') {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let k = k.trim();
            if !k.is_empty() && !tags.contains_key(k) {
                tags.insert(k.to_string(), v.trim().to_string());
            }
        }
    }
    if tags.get("service").is_none_or(String::is_empty)
        && let Some(n) = tags.remove("name").filter(|n| !n.is_empty())
    {
        tags.insert("service".into(), n);
    }
    if !tags.contains_key("runtime-id")
        && let Some(id) = tags.get("runtime_id").filter(|v| !v.is_empty()).cloned()
    {
        tags.insert("runtime-id".into(), id);
    }
    let from_ns = time_of(&tags, "from")?;
    let until_ns = time_of(&tags, "until")?;
    if until_ns < from_ns || until_ns - from_ns > MAX_SPAN_NS {
        return Err(QueryError::BadSpan {
            from: from_ns,
            until: until_ns,
        });
    }
    let format = tags
        .get("format")
        .map(|f| f.to_ascii_lowercase())
        .unwrap_or_default();
    let language = Language::of_spy(tags.get("spyName").map(String::as_str).unwrap_or_default());
    Ok(IngestQuery {
        tags,
        from_ns,
        until_ns,
        format,
        language,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_labels_become_tags_and_the_name_becomes_the_service() {
        let q = parse(
            "name=go-demo%7B__session_id__%3D718f,env%3Ddemo,host%3Dbox%7D&from=1700000000&until=1700000010&spyName=gospy&sampleRate=100&format=pprof",
        )
        .unwrap();
        assert_eq!(q.tags.get("service").map(String::as_str), Some("go-demo"));
        assert!(!q.tags.contains_key("name"));
        assert_eq!(q.tags["env"], "demo");
        assert_eq!(q.tags["host"], "box");
        assert_eq!(q.tags["__session_id__"], "718f");
        assert_eq!(q.tags["sampleRate"], "100");
        assert_eq!(q.from_ns, 1_700_000_000_000_000_000);
        assert_eq!(q.until_ns, 1_700_000_010_000_000_000);
        assert_eq!(q.language, Language::Golang);
        assert_eq!(q.format, "pprof");
    }

    #[test]
    fn a_query_label_does_not_override_an_explicit_parameter_and_service_stays() {
        let q = parse("name=app%7Benv%3Dlabel,service%3Dsvc%7D&env=query&from=1&until=2").unwrap();
        assert_eq!(q.tags["env"], "query");
        assert_eq!(q.tags["service"], "svc");
        assert_eq!(q.tags["name"], "app");
        let q = parse("name=a&name=b&from=1&until=2&runtime_id=r1").unwrap();
        assert_eq!(q.tags["service"], "a,b");
        assert_eq!(q.tags["runtime-id"], "r1");
    }

    #[test]
    fn times_in_s_ms_us_and_ns_are_told_apart_by_magnitude() {
        for (v, ns) in [
            (1_700_000_000i64, 1_700_000_000_000_000_000i64),
            (1_700_000_000_123, 1_700_000_000_123_000_000),
            (1_700_000_000_123_456, 1_700_000_000_123_456_000),
            (1_700_000_000_123_456_789, 1_700_000_000_123_456_789),
        ] {
            assert_eq!(unix_to_ns(v), ns, "{v}");
        }
    }

    #[test]
    fn missing_name_and_unusable_times_are_refused_with_what_to_send() {
        assert_eq!(parse("from=1&until=2"), Err(QueryError::NoName));
        assert_eq!(parse("name=&from=1&until=2"), Err(QueryError::NoName));
        let e = parse("name=a&from=yesterday&until=2").unwrap_err();
        assert!(matches!(e, QueryError::BadTime { key: "from", .. }), "{e}");
        assert!(e.to_string().contains("\"yesterday\""), "{e}");
        assert!(matches!(
            parse("name=a&from=1"),
            Err(QueryError::BadTime { key: "until", .. })
        ));
        assert!(matches!(
            parse("name=a&from=20&until=10"),
            Err(QueryError::BadSpan { .. })
        ));
        assert!(matches!(
            parse("name=a&from=-5&until=10"),
            Err(QueryError::BadTime { key: "from", .. })
        ));
    }

    #[test]
    fn spy_names_map_to_languages_including_the_ones_datakit_misses() {
        for (spy, lang) in [
            ("gospy", Language::Golang),
            ("javaspy", Language::Java),
            ("pyspy", Language::Python),
            ("rbspy", Language::Ruby),
            ("pyroscope-rs", Language::Rust),
            ("nodespy", Language::NodeJs),
            ("dotnetspy", Language::DotNet),
            ("phpspy", Language::Php),
            ("", Language::Unknown),
            ("ebpfspy", Language::Unknown),
            ("my-golang-agent", Language::Golang),
        ] {
            assert_eq!(Language::of_spy(spy), lang, "{spy}");
        }
    }

    #[test]
    fn percent_decoding_keeps_bad_escapes_and_decodes_plus() {
        assert_eq!(percent_decode("a+b%20c%zz%4"), "a b c%zz%4");
        assert_eq!(percent_decode("%7B%7d"), "{}");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
    }
}
