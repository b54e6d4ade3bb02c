//! One `/ingest` upload, validated and turned into one profiling point: what Datakit's
//! pyroscope input does in its upload workers, done before the client is answered.
//!
//! The point (measurement `pyroscope`, category profiling) carries the profile's tags, the
//! `event.json` Datakit sends to Dataway as the string field [`EVENT_FIELD`], and every
//! attachment as a binary field named after its file, in upload order. The Dataway sink turns
//! it back into Datakit's multipart upload (see ADR 0009).

use std::collections::BTreeMap;

use dk_proto::{Point, Value};
use serde::Serialize;

use dk_proto::profile::{self as multipart, MultipartError};

use crate::query::{self, IngestQuery, Language, QueryError};
pub use dk_proto::profile::EVENT_FIELD;

/// Measurement of the profiling points.
pub const MEASUREMENT: &str = "pyroscope";
/// The largest body accepted: one profile travels as one point through the worker RPC
/// (4 MiB per point) and the durable queue, with room for its tags and `event.json`.
pub const MAX_BODY_BYTES: usize = 3 << 20;
/// Sample labels of a pprof are not read for tags (see docs/compat.md); the tag count is
/// bounded instead.
pub const MAX_TAGS: usize = 256;

/// Why an upload is refused (answered 400 and counted under [`IngestError::reason`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// A bad query.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// No body.
    #[error("the body is empty; send the profile as the body or as the multipart part \"profile\"")]
    Empty,
    /// Over the size limit.
    #[error(
        "the body has {size} bytes, over the limit of {limit} bytes; send smaller profiles (shorter upload interval)"
    )]
    TooLarge {
        /// Bytes sent.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Neither multipart nor octet-stream.
    #[error("unsupported Content-Type {0:?}; send multipart/form-data or binary/octet-stream")]
    ContentType(String),
    /// A malformed multipart body.
    #[error("malformed multipart body: {0}")]
    Multipart(#[from] MultipartError),
    /// A multipart body without the profile.
    #[error("the multipart body has no \"profile\" part")]
    NoProfile,
    /// Too many tags.
    #[error("the upload has {0} tags, over {MAX_TAGS}")]
    TooManyTags(usize),
}

impl IngestError {
    /// The counter label of this refusal.
    pub fn reason(&self) -> &'static str {
        match self {
            IngestError::Query(QueryError::NoName) => "no_name",
            IngestError::Query(QueryError::BadTime { .. } | QueryError::BadSpan { .. }) => {
                "bad_time"
            }
            IngestError::Empty => "empty_body",
            IngestError::TooLarge { .. } => "too_large",
            IngestError::ContentType(_) => "content_type",
            IngestError::Multipart(_) => "bad_multipart",
            IngestError::NoProfile => "no_profile",
            IngestError::TooManyTags(_) => "too_many_tags",
        }
    }
}

/// Every refusal label, to pre-register the counters.
pub const REASONS: &[&str] = &[
    "no_name",
    "bad_time",
    "empty_body",
    "too_large",
    "content_type",
    "bad_multipart",
    "no_profile",
    "too_many_tags",
];

/// `event.json`, as Datakit writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// `pprof` or `jfr`.
    pub format: &'static str,
    /// Always `pyroscope`.
    pub profiler: &'static str,
    /// The profile's file name.
    pub attachments: Vec<String>,
    /// The language name.
    pub language: &'static str,
    /// `k:v,k:v` of every tag, sorted by key.
    pub tags_profiler: String,
    /// The `sub_custom_tags` tag, when present.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sub_custom_tags: String,
    /// Start, RFC 3339 with nanoseconds.
    pub start: String,
    /// End, RFC 3339 with nanoseconds.
    pub end: String,
}

/// One accepted upload.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// The tags (query, `name` labels, config tags, `language`).
    pub tags: BTreeMap<String, String>,
    /// The metadata.
    pub event: Event,
    /// `(file name, bytes)` of every attachment, the profile first.
    pub attachments: Vec<(String, Vec<u8>)>,
    /// End of the profile, unix ns (the point's time).
    pub until_ns: i64,
}

impl Profile {
    /// The profiling point: tags, [`EVENT_FIELD`], then each attachment as binary.
    pub fn into_point(self) -> Point {
        let mut p = Point::new(MEASUREMENT, self.until_ns);
        for (k, v) in self.tags {
            p = p.tag(k, v);
        }
        let json = serde_json::to_string(&self.event).unwrap_or_default();
        p = p.field(EVENT_FIELD, Value::S(json));
        for (name, data) in self.attachments {
            p = p.field(name, Value::D(data));
        }
        p
    }
}

/// The attachment name of a profile, as Datakit names it: `jfr` or `pprof` by `format`, else Java → JFR.
pub fn attachment_name(format: &str, language: Language) -> (&'static str, &'static str) {
    match format {
        "jfr" => ("auto.jfr", "jfr"),
        "pprof" => ("auto.pprof", "pprof"),
        _ if language == Language::Java => ("auto.jfr", "jfr"),
        _ => ("auto.pprof", "pprof"),
    }
}

/// The file name of a Go profile from its `sample_type_config` part (which profile type
/// Pyroscope's Go client sent): goroutines, heap, mutex or block, else CPU.
pub fn go_file_name(sample_type_config: Option<&[u8]>) -> &'static str {
    let Some(raw) = sample_type_config else {
        return "cpu.pprof";
    };
    let Ok(cfg) = serde_json::from_slice::<BTreeMap<String, serde_json::Value>>(raw) else {
        return "cpu.pprof";
    };
    let has = |k: &str| cfg.contains_key(k);
    if has("goroutine") {
        return "goroutines.pprof";
    }
    if [
        "alloc_objects",
        "alloc_space",
        "inuse_objects",
        "inuse_space",
    ]
    .iter()
    .any(|k| has(k))
    {
        return "delta-heap.pprof";
    }
    for key in ["contentions", "delay"] {
        let display = cfg
            .get(key)
            .and_then(|v| v.get("display-name"))
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        if display.contains("mutex") {
            return "delta-mutex.pprof";
        }
        if display.contains("block") {
            return "delta-block.pprof";
        }
    }
    "cpu.pprof"
}

/// `k:v,k:v` of the tags (sorted by key), as `tags_profiler`.
pub fn join_tags(tags: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (k, v) in tags {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(k);
        out.push(':');
        out.push_str(v);
    }
    out
}

/// Unix ns as RFC 3339 in UTC with the fraction trimmed, as Go's `time.RFC3339Nano`.
pub fn rfc3339_nano(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let frac = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut s = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
    if frac != 0 {
        let f = format!("{frac:09}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// What an upload request brings (the route hook's request, or the 4040 listener's).
#[derive(Debug, Clone, Copy)]
pub struct Upload<'a> {
    /// The raw query string.
    pub query: &'a str,
    /// `Content-Type`, empty when absent.
    pub content_type: &'a str,
    /// The body.
    pub body: &'a [u8],
}

/// Validates one upload and makes its profile: the query (name, times), the size, the
/// Content-Type and, for multipart, the `profile` part. `extra_tags` (the input's `[tags]`)
/// override the upload's; `limit` is the body cap in bytes.
///
/// # Errors
/// [`IngestError`] saying what to fix.
pub fn accept(
    upload: Upload<'_>,
    extra_tags: &BTreeMap<String, String>,
    limit: usize,
) -> Result<Profile, IngestError> {
    let IngestQuery {
        mut tags,
        from_ns,
        until_ns,
        format,
        language,
    } = query::parse(upload.query)?;
    if upload.body.is_empty() {
        return Err(IngestError::Empty);
    }
    if upload.body.len() > limit {
        return Err(IngestError::TooLarge {
            size: upload.body.len(),
            limit,
        });
    }
    tags.insert("language".into(), language.as_str().into());
    for (k, v) in extra_tags {
        tags.insert(k.clone(), v.clone());
    }
    if tags.len() > MAX_TAGS {
        return Err(IngestError::TooManyTags(tags.len()));
    }
    let (mut filename, event_format) = attachment_name(&format, language);
    let ct = upload.content_type.to_ascii_lowercase();
    let attachments = if ct.contains("multipart/form-data") {
        let boundary = multipart::boundary_of(upload.content_type)?;
        let parts = multipart::parse(upload.body, &boundary)?;
        let is_event = |p: &multipart::Part<'_>| {
            p.name == "event" || p.name == EVENT_FIELD || p.filename.as_deref() == Some(EVENT_FIELD)
        };
        let files = parts.iter().filter(|p| !is_event(p)).count();
        let profile_at = parts
            .iter()
            // Go, Python and Ruby clients name it "profile"; Java's agent sends "jfr".
            .position(|p| p.name == "profile" || p.name == "jfr")
            .or_else(|| {
                (files == 1)
                    .then(|| parts.iter().position(|p| !is_event(p)))
                    .flatten()
            })
            .ok_or(IngestError::NoProfile)?;
        if parts[profile_at].data.is_empty() {
            return Err(IngestError::Empty);
        }
        if language == Language::Golang {
            let stc = parts
                .iter()
                .find(|p| p.name == "sample_type_config")
                .map(|p| p.data);
            filename = go_file_name(stc);
        }
        let mut out = vec![(filename.to_string(), parts[profile_at].data.to_vec())];
        out.extend(
            parts
                .iter()
                .enumerate()
                .filter(|(i, p)| *i != profile_at && !is_event(p))
                .map(|(_, p)| (p.name.clone(), p.data.to_vec())),
        );
        out
    } else if ct.contains("octet-stream") {
        vec![(filename.to_string(), upload.body.to_vec())]
    } else {
        return Err(IngestError::ContentType(
            upload.content_type.chars().take(100).collect(),
        ));
    };
    let event = Event {
        format: event_format,
        profiler: "pyroscope",
        attachments: vec![filename.to_string()],
        language: language.as_str(),
        tags_profiler: join_tags(&tags),
        sub_custom_tags: tags.get("sub_custom_tags").cloned().unwrap_or_default(),
        start: rfc3339_nano(from_ns),
        end: rfc3339_nano(until_ns),
    };
    Ok(Profile {
        tags,
        event,
        attachments,
        until_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: &str =
        "name=app%7Benv%3Dprod%7D&from=1700000000&until=1700000010&spyName=pyspy&sampleRate=100";

    fn up<'a>(query: &'a str, ct: &'a str, body: &'a [u8]) -> Upload<'a> {
        Upload {
            query,
            content_type: ct,
            body,
        }
    }

    #[test]
    fn an_octet_stream_pprof_becomes_one_point_with_event_json_and_the_bytes() {
        let body = b"\x1f\x8b\x08\x00raw-pprof";
        let mut extra = BTreeMap::new();
        extra.insert("team".to_string(), "core".to_string());
        let p = accept(up(Q, "binary/octet-stream", body), &extra, MAX_BODY_BYTES).unwrap();
        assert_eq!(p.event.language, "python");
        assert_eq!(p.event.format, "pprof");
        assert_eq!(p.event.attachments, vec!["auto.pprof"]);
        assert_eq!(p.event.start, "2023-11-14T22:13:20Z");
        assert_eq!(p.event.end, "2023-11-14T22:13:30Z");
        assert!(p.event.tags_profiler.contains("env:prod"));
        assert!(p.event.tags_profiler.contains("service:app"));
        assert!(p.event.tags_profiler.contains("team:core"));
        let point = p.into_point();
        assert_eq!(point.name, MEASUREMENT);
        assert_eq!(point.time, 1_700_000_010_000_000_000);
        assert_eq!(point.get_tag("service"), Some("app"));
        assert_eq!(point.get_tag("language"), Some("python"));
        assert_eq!(point.fields[0].0, EVENT_FIELD);
        let Value::S(json) = &point.fields[0].1 else {
            panic!("{point:?}")
        };
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["profiler"], "pyroscope");
        assert_eq!(v["language"], "python");
        assert!(v.get("sub_custom_tags").is_none());
        assert_eq!(
            point.fields[1],
            ("auto.pprof".into(), Value::D(body.to_vec()))
        );
    }

    #[test]
    fn a_go_multipart_is_named_by_its_sample_type_config_and_keeps_its_other_parts() {
        let body = b"--xx\r\nContent-Disposition: form-data; name=\"profile\"; filename=\"profile.pprof\"\r\n\r\nPROF\r\n--xx\r\nContent-Disposition: form-data; name=\"sample_type_config\"; filename=\"sample_type_config.json\"\r\n\r\n{\"alloc_space\":{\"units\":\"bytes\"}}\r\n--xx--\r\n";
        let q = "name=go-app&from=1700000000000&until=1700000010000&spyName=gospy";
        let p = accept(
            up(q, "multipart/form-data; boundary=xx", body),
            &BTreeMap::new(),
            MAX_BODY_BYTES,
        )
        .unwrap();
        assert_eq!(p.event.language, "golang");
        assert_eq!(p.event.attachments, vec!["delta-heap.pprof"]);
        assert_eq!(
            p.attachments[0],
            ("delta-heap.pprof".into(), b"PROF".to_vec())
        );
        assert_eq!(p.attachments[1].0, "sample_type_config");
        assert_eq!(
            go_file_name(Some(b"{\"goroutine\":{}}")),
            "goroutines.pprof"
        );
        assert_eq!(
            go_file_name(Some(
                b"{\"contentions\":{\"display-name\":\"mutex_count\"}}"
            )),
            "delta-mutex.pprof"
        );
        assert_eq!(
            go_file_name(Some(b"{\"delay\":{\"display-name\":\"block_duration\"}}")),
            "delta-block.pprof"
        );
        assert_eq!(go_file_name(None), "cpu.pprof");
        assert_eq!(go_file_name(Some(b"not json")), "cpu.pprof");
    }

    #[test]
    fn java_without_format_is_jfr_and_format_wins_otherwise() {
        assert_eq!(attachment_name("", Language::Java), ("auto.jfr", "jfr"));
        assert_eq!(
            attachment_name("pprof", Language::Java),
            ("auto.pprof", "pprof")
        );
        assert_eq!(
            attachment_name("jfr", Language::Golang),
            ("auto.jfr", "jfr")
        );
        assert_eq!(
            attachment_name("", Language::Python),
            ("auto.pprof", "pprof")
        );
    }

    #[test]
    fn every_kind_of_bad_upload_is_refused_with_its_reason() {
        let none = BTreeMap::new();
        let cases: Vec<(Upload<'_>, &str)> = vec![
            (up("from=1&until=2", "binary/octet-stream", b"x"), "no_name"),
            (up("name=a&from=x&until=2", "binary/octet-stream", b"x"), "bad_time"),
            (up(Q, "binary/octet-stream", b""), "empty_body"),
            (up(Q, "binary/octet-stream", &[0; 201]), "too_large"),
            (up(Q, "application/json", b"{}"), "content_type"),
            (up(Q, "", b"x"), "content_type"),
            (up(Q, "multipart/form-data", b"x"), "bad_multipart"),
            (up(Q, "multipart/form-data; boundary=b", b"junk"), "bad_multipart"),
            (
                up(
                    Q,
                    "multipart/form-data; boundary=b",
                    b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--b\r\nContent-Disposition: form-data; name=\"c\"\r\n\r\n2\r\n--b--",
                ),
                "no_profile",
            ),
        ];
        for (u, reason) in cases {
            let e = accept(u, &none, 200).unwrap_err();
            assert_eq!(e.reason(), reason, "{e}");
            assert!(REASONS.contains(&reason));
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn rfc3339_matches_go_including_fractions_and_leap_years() {
        assert_eq!(rfc3339_nano(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_nano(1_709_164_800_500_000_000),
            "2024-02-29T00:00:00.5Z"
        );
        assert_eq!(
            rfc3339_nano(951_782_400_000_000_001),
            "2000-02-29T00:00:00.000000001Z"
        );
        assert_eq!(
            rfc3339_nano(4_102_444_799_000_000_000),
            "2099-12-31T23:59:59Z"
        );
    }
}
