//! Building the `logging` point of one message: measurement, tags and fields as Datakit's
//! socket logger makes them.

use dk_proto::{Point, Value};

use crate::config::LoggingConfig;
use crate::status::DEFAULT_STATUS;

/// The parts of a socket-log point that are the same for every message of an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTemplate {
    /// Measurement: the `source`.
    pub measurement: String,
    /// Tags: `service`, then `[tags]` (which may override it), then `log_source = "socket"`
    /// unless `[tags]` sets `log_source`. Global host tags are attached by the supervisor
    /// (input tags win).
    pub tags: Vec<(String, String)>,
}

impl LogTemplate {
    /// The template of an instance.
    pub fn new(cfg: &LoggingConfig) -> LogTemplate {
        let mut tags: Vec<(String, String)> = vec![("service".to_string(), cfg.service.clone())];
        for (k, v) in &cfg.tags {
            match tags.iter_mut().find(|(key, _)| key == k) {
                Some(slot) => slot.1 = v.clone(),
                None => tags.push((k.clone(), v.clone())),
            }
        }
        if !tags.iter().any(|(k, _)| k == "log_source") {
            tags.push(("log_source".to_string(), "socket".to_string()));
        }
        LogTemplate {
            measurement: cfg.source.clone(),
            tags,
        }
    }

    /// The point of one message received at `time` (Unix ns): fields `message`,
    /// `status = "info"` and `message_length` (bytes of the message).
    pub fn point(&self, message: String, time: i64) -> Point {
        let length = i64::try_from(message.len()).unwrap_or(i64::MAX);
        Point {
            name: self.measurement.clone(),
            tags: self.tags.clone(),
            fields: vec![
                ("message".to_string(), Value::S(message)),
                ("status".to_string(), Value::S(DEFAULT_STATUS.to_string())),
                ("message_length".to_string(), Value::I(length)),
            ],
            time,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    #[test]
    fn builds_the_point_datakit_builds() {
        let cfg = config::parse("source = \"app\"\n[tags]\nenv = \"prod\"").unwrap();
        let p = LogTemplate::new(&cfg).point("hello wörld".to_string(), 42);
        assert_eq!(p.name, "app");
        assert_eq!(
            p.tags,
            vec![
                ("service".to_string(), "app".to_string()),
                ("env".to_string(), "prod".to_string()),
                ("log_source".to_string(), "socket".to_string()),
            ]
        );
        assert_eq!(
            p.get_field("message"),
            Some(&Value::S("hello wörld".into()))
        );
        assert_eq!(p.get_field("status"), Some(&Value::S("info".into())));
        assert_eq!(p.get_field("message_length"), Some(&Value::I(12)));
        assert_eq!(p.time, 42);
    }

    #[test]
    fn input_tags_override_service_and_log_source() {
        let cfg = config::parse("service = \"s\"\n[tags]\nservice = \"t\"\nlog_source = \"mine\"")
            .unwrap();
        let t = LogTemplate::new(&cfg);
        assert_eq!(t.measurement, "default");
        assert_eq!(
            t.tags,
            vec![
                ("service".to_string(), "t".to_string()),
                ("log_source".to_string(), "mine".to_string()),
            ]
        );
    }
}
