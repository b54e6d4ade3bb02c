//! From one Beats event (its JSON text) to a logging point, as Datakit's `beats_output` maps
//! it: measurement = `source`, time = receive time, tags `host` (← `host.name`), `filepath`
//! (← `log.file.path`), `service`, the string members of `fields` and the input's tags;
//! fields `message`, `status = "info"` and the other members of `fields`. Events without a
//! `message` are skipped. Pure: no I/O.

use dk_proto::{Point, Value};
use serde_json::Value as Json;

/// What every event of one instance gets.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mapping {
    /// The measurement (`source`).
    pub source: String,
    /// The `service` tag.
    pub service: String,
    /// `[inputs.beats_output.tags]`.
    pub tags: Vec<(String, String)>,
}

/// Why an event gave no point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// No `message`, or an empty one (Datakit skips these).
    NoMessage,
}

fn at<'a>(v: &'a Json, path: &[&str]) -> Option<&'a Json> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

fn json_field(v: &Json) -> Option<Value> {
    match v {
        Json::Null => None,
        Json::Bool(b) => Some(Value::B(*b)),
        // Go's json.Unmarshal reads every number as float64.
        Json::Number(n) => n.as_f64().map(Value::F),
        Json::String(s) => Some(Value::S(s.clone())),
        other => Some(Value::S(other.to_string())),
    }
}

impl Mapping {
    /// The point of one event received at `now` (ns).
    ///
    /// An event that is not JSON (a client sending plain lines) is taken as its `message`.
    ///
    /// # Errors
    /// [`Skip`] when the event has no message.
    pub fn point(&self, event: &[u8], now: i64) -> Result<Point, Skip> {
        let parsed: Option<Json> = serde_json::from_slice(event).ok();
        let mut p = Point::new(self.source.as_str(), now);
        for (k, v) in &self.tags {
            p.set_tag(k.as_str(), v.as_str());
        }
        let message = match &parsed {
            Some(Json::Object(_)) => match parsed.as_ref().and_then(|v| v.get("message")) {
                Some(Json::String(s)) => s.clone(),
                Some(Json::Null) | None => String::new(),
                Some(other) => other.to_string(),
            },
            Some(Json::String(s)) => s.clone(),
            _ => String::from_utf8_lossy(event).into_owned(),
        };
        if message.is_empty() {
            return Err(Skip::NoMessage);
        }
        if let Some(v) = &parsed {
            if let Some(Json::String(h)) = at(v, &["host", "name"]) {
                p.set_tag("host", h.as_str());
            }
            if let Some(Json::String(f)) = at(v, &["log", "file", "path"]) {
                p.set_tag("filepath", f.as_str());
            }
        }
        if !self.service.is_empty() {
            p.set_tag("service", self.service.as_str());
        }
        if let Some(Json::Object(fields)) = parsed.as_ref().and_then(|v| v.get("fields")) {
            for (k, v) in fields {
                match v {
                    // Strings are tags (and only tags: a key both tag and field is refused).
                    Json::String(s) => p.set_tag(k.as_str(), s.as_str()),
                    other => {
                        if let Some(value) = json_field(other) {
                            p.set_field(k.as_str(), value);
                        }
                    }
                }
            }
        }
        p.set_field("message", Value::S(message));
        p.set_field("status", Value::S("info".to_string()));
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping() -> Mapping {
        Mapping {
            source: "nginx".into(),
            service: "web".into(),
            tags: vec![("env".into(), "prod".into()), ("host".into(), "cfg".into())],
        }
    }

    fn tag<'a>(p: &'a Point, k: &str) -> Option<&'a str> {
        p.tags.iter().find(|(t, _)| t == k).map(|(_, v)| v.as_str())
    }

    fn field<'a>(p: &'a Point, k: &str) -> Option<&'a Value> {
        p.fields.iter().find(|(f, _)| f == k).map(|(_, v)| v)
    }

    #[test]
    fn a_filebeat_event_becomes_a_logging_point_with_host_file_service_and_fields() {
        let event = br#"{"@timestamp":"2026-01-01T00:00:00.000Z","message":"GET / 200","host":{"name":"web-1"},"log":{"file":{"path":"/var/log/nginx/access.log"},"offset":10},"fields":{"team":"ops","n":3,"ok":true,"nested":{"a":1}}}"#;
        let p = mapping().point(event, 42).unwrap();
        assert_eq!(p.name, "nginx");
        assert_eq!(p.time, 42, "receive time, not @timestamp");
        assert_eq!(tag(&p, "host"), Some("web-1"), "the event's host wins");
        assert_eq!(tag(&p, "filepath"), Some("/var/log/nginx/access.log"));
        assert_eq!(tag(&p, "service"), Some("web"));
        assert_eq!(tag(&p, "env"), Some("prod"));
        assert_eq!(tag(&p, "team"), Some("ops"));
        assert_eq!(field(&p, "team"), None, "a string member is a tag only");
        assert_eq!(field(&p, "n"), Some(&Value::F(3.0)));
        assert_eq!(field(&p, "ok"), Some(&Value::B(true)));
        assert_eq!(field(&p, "nested"), Some(&Value::S(r#"{"a":1}"#.into())));
        assert_eq!(field(&p, "message"), Some(&Value::S("GET / 200".into())));
        assert_eq!(field(&p, "status"), Some(&Value::S("info".into())));
    }

    #[test]
    fn events_without_a_message_are_skipped_and_plain_text_is_the_message() {
        let m = mapping();
        assert_eq!(m.point(br#"{"fields":{"a":"b"}}"#, 0), Err(Skip::NoMessage));
        assert_eq!(m.point(br#"{"message":""}"#, 0), Err(Skip::NoMessage));
        assert_eq!(m.point(b"", 0), Err(Skip::NoMessage));
        let p = m.point(b"plain string event", 0).unwrap();
        assert_eq!(
            field(&p, "message"),
            Some(&Value::S("plain string event".into()))
        );
        assert_eq!(
            tag(&p, "host"),
            Some("cfg"),
            "the input's tag stays without host.name"
        );
    }
}
