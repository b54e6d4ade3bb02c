//! A logfwd message to a logging point, as Datakit's logfwdserver maps it.
//!
//! logfwd sends one JSON object per log line:
//! `{"type":"1","source":…,"storage_index"?,"pipeline"?,"tags"?:{…},"fields"?:{…},"log":"<line>"}`
//! (`type` is not read). The point: measurement = `source`; tags = the message's tags, the
//! input's tags filling gaps (no host tags); fields = `message` = the line, `status` =
//! `info`, then the message's `fields` (which may override both); time = when received. It
//! is fed as `logfwd/<source>[/<storage_index>]`.

use std::collections::BTreeMap;

use dk_proto::{Point, Value};
use serde::Deserialize;

/// Why a message gave no point.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// Not the JSON object logfwd sends.
    #[error("not a logfwd JSON message: {0}")]
    Json(#[from] serde_json::Error),
    /// No `source`: the point would have no measurement.
    #[error("the message has no source")]
    NoSource,
}

impl MessageError {
    /// The counter reason.
    pub fn reason(&self) -> &'static str {
        match self {
            MessageError::Json(_) => "json",
            MessageError::NoSource => "no_source",
        }
    }
}

/// A logfwd message as sent.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Message {
    source: String,
    storage_index: String,
    pipeline: String,
    tags: BTreeMap<String, String>,
    fields: serde_json::Map<String, serde_json::Value>,
    log: String,
}

/// A field value from JSON: numbers as integers when they are, objects and arrays as their
/// JSON text; `null` is left out.
fn value(v: serde_json::Value) -> Option<Value> {
    use serde_json::Value as J;
    Some(match v {
        J::Null => return None,
        J::Bool(b) => Value::B(b),
        J::String(s) => Value::S(s),
        J::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::I(i),
            (None, Some(u), _) => Value::U(u),
            (None, None, Some(f)) => Value::F(f),
            _ => Value::S(n.to_string()),
        },
        other => Value::S(other.to_string()),
    })
}

/// A mapped message.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    /// The feed name: `logfwd/<source>[/<storage_index>]`.
    pub feed: String,
    /// The point.
    pub point: Point,
    /// The Pipeline script the sender named (not run by this agent).
    pub pipeline: String,
}

/// Maps one message received at `now_ns`; `input_tags` fill the tags the message lacks.
///
/// # Errors
/// The bytes are not a logfwd JSON object, or it has no `source`.
pub fn map(
    json: &[u8],
    input_tags: &[(String, String)],
    now_ns: i64,
) -> Result<Mapped, MessageError> {
    let m: Message = serde_json::from_slice(json)?;
    if m.source.is_empty() {
        return Err(MessageError::NoSource);
    }
    let mut p = Point::new(m.source.clone(), now_ns);
    for (k, v) in m.tags {
        p.set_tag(k, v);
    }
    for (k, v) in input_tags {
        p.add_tag_if_absent(k, v);
    }
    p.set_field("message", Value::S(m.log));
    p.set_field("status", Value::S("info".to_string()));
    for (k, v) in m.fields {
        if let Some(v) = value(v) {
            p.set_field(k, v);
        }
    }
    let feed = if m.storage_index.is_empty() {
        format!("logfwd/{}", m.source)
    } else {
        format!("logfwd/{}/{}", m.source, m.storage_index)
    };
    Ok(Mapped {
        feed,
        point: p,
        pipeline: m.pipeline,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datakits_fixture_becomes_a_logging_point_of_its_source() {
        let m = map(br#"{"type":"1","source":"source1","log":"log1"}"#, &[], 5).unwrap();
        assert_eq!(m.feed, "logfwd/source1");
        assert_eq!(m.point.name, "source1");
        assert_eq!(m.point.time, 5);
        assert!(m.point.tags.is_empty(), "no host tags here");
        assert_eq!(
            m.point.fields,
            vec![
                ("message".to_string(), Value::S("log1".into())),
                ("status".to_string(), Value::S("info".into())),
            ]
        );
    }

    #[test]
    fn message_tags_win_over_input_tags_and_fields_may_override_message_and_status() {
        let input = vec![
            ("env".to_string(), "prod".to_string()),
            ("filename".to_string(), "ignored".to_string()),
        ];
        let m = map(
            br#"{"source":"nginx","storage_index":"idx","pipeline":"nginx.p","tags":{"filename":"/var/log/a.log","pod_name":"web-0"},"fields":{"status":"error","bytes":512,"ratio":0.5,"ok":true,"big":18446744073709551615,"obj":{"a":1},"gone":null},"log":"GET /"}"#,
            &input,
            0,
        )
        .unwrap();
        assert_eq!(m.feed, "logfwd/nginx/idx");
        assert_eq!(m.pipeline, "nginx.p");
        let p = &m.point;
        assert_eq!(p.get_tag("filename"), Some("/var/log/a.log"));
        assert_eq!(p.get_tag("pod_name"), Some("web-0"));
        assert_eq!(p.get_tag("env"), Some("prod"));
        assert_eq!(p.get_field("message"), Some(&Value::S("GET /".into())));
        assert_eq!(p.get_field("status"), Some(&Value::S("error".into())));
        assert_eq!(p.get_field("bytes"), Some(&Value::I(512)));
        assert_eq!(p.get_field("ratio"), Some(&Value::F(0.5)));
        assert_eq!(p.get_field("ok"), Some(&Value::B(true)));
        assert_eq!(p.get_field("big"), Some(&Value::U(u64::MAX)));
        assert_eq!(p.get_field("obj"), Some(&Value::S(r#"{"a":1}"#.into())));
        assert_eq!(p.get_field("gone"), None);
    }

    #[test]
    fn bad_json_and_a_missing_source_are_errors_with_their_reason() {
        assert_eq!(map(b"{not json", &[], 0).unwrap_err().reason(), "json");
        assert_eq!(
            map(br#"{"tags":{"a":1},"source":"s"}"#, &[], 0)
                .unwrap_err()
                .reason(),
            "json"
        );
        assert_eq!(
            map(br#"{"log":"x"}"#, &[], 0).unwrap_err().reason(),
            "no_source"
        );
    }
}
