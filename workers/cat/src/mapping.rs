//! One decoded NT1 message to points, as Datakit maps it: the last transaction closed (the
//! root) decides. `Reboot` gives nothing; `Status` gives the heartbeat's `cat` metrics; any
//! other name gives exactly one span (a tracing point, measurement `cat`); children, events
//! and metrics of the tree are not kept.

use std::borrow::Cow;

use dk_proto::{Point, Value};

use crate::nt1::Message;
use crate::status::{self, StatusError};

/// The measurement of spans and heartbeat metrics.
pub const MEASUREMENT: &str = "cat";

/// What one message gives.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Nothing (no closed transaction, or `Reboot`).
    Nothing,
    /// One span.
    Span(Point),
    /// Heartbeat metrics, and the heartbeats that could not be read.
    Metrics(Vec<Point>, Vec<StatusError>),
}

fn text(b: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(b)
}

/// The points of `msg`. `tags` are the input's tags (added where the span has no such tag);
/// `now_ns` stamps heartbeats with an unreadable time; `utc_offset_s` is the local UTC
/// offset at a Unix time (heartbeat times are the client's local time).
pub fn output(
    msg: &Message<'_>,
    tags: &[(String, String)],
    now_ns: i64,
    utc_offset_s: impl Fn(i64) -> i64,
) -> Output {
    let Some(root) = &msg.root else {
        return Output::Nothing;
    };
    let h = &msg.header;
    match root.name {
        b"Reboot" => Output::Nothing,
        b"Status" => {
            let (domain, host) = (text(h.domain), text(h.hostname));
            let mut points = Vec::new();
            let mut errors = Vec::new();
            for data in &msg.heartbeats {
                match status::parse(data)
                    .and_then(|s| status::points(&s, &domain, &host, now_ns, &utc_offset_s))
                {
                    Ok(p) => points.extend(p),
                    Err(e) => errors.push(e),
                }
            }
            Output::Metrics(points, errors)
        }
        name => {
            let name = if root.kind == b"System" && name.starts_with(b"UploadMetric") {
                Cow::Borrowed("UploadMetric")
            } else {
                text(name)
            };
            let trace_id = if h.root_id.is_empty() {
                h.message_id
            } else {
                h.root_id
            };
            let (parent, span_type) = if h.parent_id.is_empty() {
                (Cow::Borrowed("0"), "entry")
            } else {
                (text(h.parent_id), "local")
            };
            let status = if root.status == b"0" { "ok" } else { "error" };
            let start_us = root.start_ms.saturating_mul(1000);
            let time = i64::try_from(start_us.saturating_mul(1000)).unwrap_or(i64::MAX);
            let mut p = Point::new(MEASUREMENT, time)
                .tag("service", text(h.domain))
                .tag("operation", name.as_ref())
                .tag("source", MEASUREMENT)
                .tag("source_type", text(root.kind))
                .tag("span_type", span_type)
                .tag("status", status)
                .tag("host", text(h.hostname))
                .tag("address", text(h.ip))
                .tag("thread_group_name", text(h.thread_group))
                .tag("thread_id", text(h.thread_id))
                .tag("thread_name", text(h.thread_name))
                .field("trace_id", Value::S(text(trace_id).into_owned()))
                .field("parent_id", Value::S(parent.into_owned()))
                .field("span_id", Value::S(text(h.message_id).into_owned()))
                .field("resource", Value::S(name.into_owned()))
                .field(
                    "start",
                    Value::I(i64::try_from(start_us).unwrap_or(i64::MAX)),
                )
                .field(
                    "duration",
                    Value::I(i64::try_from(root.duration_us).unwrap_or(i64::MAX)),
                );
            for (k, v) in tags {
                p.add_tag_if_absent(k, v);
            }
            Output::Span(p)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nt1::{self, encode};

    fn out(wire: &[u8], tags: &[(String, String)]) -> Output {
        let m = nt1::decode(&wire[4..]).unwrap();
        output(&m, tags, 99, |_| 0)
    }

    #[test]
    fn an_entry_transaction_becomes_one_span_with_datakits_tags_and_fields() {
        let tags = vec![
            ("env".to_string(), "prod".to_string()),
            ("host".to_string(), "ignored".to_string()),
        ];
        let Output::Span(p) = out(&encode::transaction_tree("shop-1", "", ""), &tags) else {
            panic!("expected a span")
        };
        assert_eq!(p.name, "cat");
        for (k, v) in [
            ("service", "shop"),
            ("operation", "/api/order"),
            ("source", "cat"),
            ("source_type", "URL"),
            ("span_type", "entry"),
            ("status", "ok"),
            ("host", "web-1"),
            ("address", "10.0.0.7"),
            ("thread_group_name", "main"),
            ("thread_id", "42"),
            ("thread_name", "http-nio-1"),
            ("env", "prod"),
        ] {
            assert_eq!(p.get_tag(k), Some(v), "tag {k}");
        }
        let s = |v: &str| Value::S(v.into());
        assert_eq!(p.get_field("trace_id"), Some(&s("shop-1")), "own id");
        assert_eq!(p.get_field("parent_id"), Some(&s("0")));
        assert_eq!(p.get_field("span_id"), Some(&s("shop-1")));
        assert_eq!(p.get_field("resource"), Some(&s("/api/order")));
        assert_eq!(p.get_field("start"), Some(&Value::I(1_700_000_000_000_000)));
        assert_eq!(p.get_field("duration"), Some(&Value::I(35_000)));
        assert_eq!(p.time, 1_700_000_000_000_000_000);
    }

    #[test]
    fn a_child_tree_is_a_local_span_of_its_root_and_a_non_zero_status_is_an_error() {
        let mut b = encode::header(["d", "h", "", "", "", "", "c-2", "c-1", "r-0", ""]);
        encode::start(&mut b, 5, "System", "UploadMetric.x");
        encode::end(&mut b, "timeout", "", 1);
        let Output::Span(p) = out(&encode::packet(&b), &[]) else {
            panic!("expected a span")
        };
        assert_eq!(p.get_tag("span_type"), Some("local"));
        assert_eq!(p.get_tag("status"), Some("error"));
        assert_eq!(p.get_field("trace_id"), Some(&Value::S("r-0".into())));
        assert_eq!(p.get_field("parent_id"), Some(&Value::S("c-1".into())));
        assert_eq!(
            p.get_field("resource"),
            Some(&Value::S("UploadMetric".into()))
        );
    }

    #[test]
    fn status_gives_heartbeat_metrics_reboot_and_open_trees_give_nothing() {
        match out(&encode::heartbeat(status::SAMPLE.as_bytes()), &[]) {
            Output::Metrics(p, e) => {
                assert_eq!((p.len(), e.len()), (8, 0));
                assert_eq!(p[0].get_tag("domain"), Some("shop"));
            }
            other => panic!("expected metrics, got {other:?}"),
        }
        match out(&encode::heartbeat(b"<nope"), &[]) {
            Output::Metrics(p, e) => assert_eq!((p.len(), e.len()), (0, 1)),
            other => panic!("expected metrics, got {other:?}"),
        }
        let mut b = encode::header(["d", "h", "", "", "", "", "i", "", "", ""]);
        encode::start(&mut b, 5, "System", "Reboot");
        encode::end(&mut b, "0", "", 1);
        assert_eq!(out(&encode::packet(&b), &[]), Output::Nothing);
        let mut b = encode::header(["d", "h", "", "", "", "", "i", "", "", ""]);
        encode::start(&mut b, 5, "URL", "/never-closed");
        assert_eq!(out(&encode::packet(&b), &[]), Output::Nothing);
    }
}
