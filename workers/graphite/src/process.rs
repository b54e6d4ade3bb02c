//! From Graphite lines to Datakit points: parse, map, sanitise and build the `graphite` point
//! (pure; the I/O shell in `input.rs` feeds it bytes and a receive time).
//!
//! A line `name;k=v value ts` becomes one metric point:
//! - measurement: the matching rule's `measurement_name`, else `graphite`;
//! - tags: the path's tags, overridden by the rule's labels, plus `[inputs.graphite.tags]` for
//!   keys the line does not set;
//! - fields: `<name>` = value (float) and `timestamp` = the client's time in ns (int), where
//!   `<name>` is the rule's name (or the raw name) with every character outside
//!   `[A-Za-z0-9_:]` replaced by `_`;
//! - time: the client's timestamp (or the receive time when the line has none, `-1` or `N`).

use std::borrow::Cow;

use dk_proto::{Point, Value};

use crate::line::{self, LineError, Tag};
use crate::mapper::{Action, DEFAULT_MEASUREMENT, Mapper};

/// What happened to the lines handed to a [`Processor`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Non-blank lines seen (including malformed ones).
    pub lines: u64,
    /// Lines that are not Graphite samples (and over-long lines, counted by the shell).
    pub parse_errors: u64,
    /// `;`-items of paths that are not `key=value` (skipped; the line is kept).
    pub tag_errors: u64,
    /// Lines whose name matched no mapping rule.
    pub unmapped: u64,
    /// Lines dropped by an `action_type = "drop"` rule or by `strict_match`.
    pub dropped: u64,
    /// Points built.
    pub points: u64,
}

impl Counts {
    /// Adds another tally to this one.
    pub fn add(&mut self, other: &Counts) {
        self.lines += other.lines;
        self.parse_errors += other.parse_errors;
        self.tag_errors += other.tag_errors;
        self.unmapped += other.unmapped;
        self.dropped += other.dropped;
        self.points += other.points;
    }
}

/// Turns lines into points with one instance's mapping rules and settings.
#[derive(Debug, Default)]
pub struct Processor {
    mapper: Mapper,
    strict_match: bool,
    tags: Vec<(String, String)>,
}

impl Processor {
    /// A processor with compiled rules, `strict_match` (drop unmapped names) and the
    /// instance's `[tags]`.
    pub fn new(mapper: Mapper, strict_match: bool, tags: Vec<(String, String)>) -> Processor {
        Processor {
            mapper,
            strict_match,
            tags,
        }
    }

    /// Processes one line (without its newline), appending at most one point to `out`.
    /// `now_ns` is the receive time, used when the line has no timestamp.
    ///
    /// # Errors
    /// The [`LineError`] of a malformed line (already counted in `counts`).
    pub fn line(
        &self,
        line: &[u8],
        now_ns: i64,
        out: &mut Vec<Point>,
        counts: &mut Counts,
    ) -> Result<(), LineError> {
        let sample = match line::parse_line(line) {
            Ok(None) => return Ok(()),
            Ok(Some(s)) => s,
            Err(e) => {
                counts.lines += 1;
                counts.parse_errors += 1;
                return Err(e);
            }
        };
        counts.lines += 1;
        let name = String::from_utf8_lossy(sample.name);
        let mapped = self.mapper.map(&name);
        let (measurement, field) = match &mapped {
            None => {
                counts.unmapped += 1;
                if self.strict_match {
                    counts.dropped += 1;
                    return Ok(());
                }
                (DEFAULT_MEASUREMENT, field_name(sample.name))
            }
            Some(m) if m.action == Action::Drop => {
                counts.dropped += 1;
                return Ok(());
            }
            Some(m) => (m.measurement, field_name(m.name.as_bytes())),
        };
        let time = sample.time_ns.unwrap_or(now_ns);
        let mut point = Point::new(measurement, time);
        for tag in sample.tags() {
            match tag {
                Tag::Pair(k, v) => point.set_tag(lossy(k), lossy(v)),
                Tag::Invalid(_) => counts.tag_errors += 1,
            }
        }
        if let Some(m) = mapped {
            for (k, v) in m.labels {
                point.set_tag(k, v);
            }
        }
        for (k, v) in &self.tags {
            point.add_tag_if_absent(k, v);
        }
        point.fields.push((field, Value::F(sample.value)));
        // As in Datakit, a metric named `timestamp` is overwritten by the timestamp field.
        point.set_field("timestamp", Value::I(time));
        out.push(point);
        counts.points += 1;
        Ok(())
    }

    /// Processes every line of a datagram (or any complete buffer). Returns the last
    /// malformed line's error, for rate-limited logging.
    pub fn datagram(
        &self,
        data: &[u8],
        now_ns: i64,
        out: &mut Vec<Point>,
        counts: &mut Counts,
    ) -> Option<LineError> {
        let mut last = None;
        for l in line::split_lines(data) {
            if l.len() > line::MAX_LINE {
                counts.lines += 1;
                counts.parse_errors += 1;
                last = Some(LineError::TooLong);
                continue;
            }
            if let Err(e) = self.line(l, now_ns, out, counts) {
                last = Some(e);
            }
        }
        last
    }
}

fn lossy(b: &[u8]) -> String {
    match String::from_utf8_lossy(b) {
        Cow::Borrowed(s) => s.to_string(),
        Cow::Owned(s) => s,
    }
}

/// A metric name as a field name: every character outside `[A-Za-z0-9_:]` becomes `_` (one
/// per character, and one per byte of invalid UTF-8, as Go's regexp replacement does).
pub fn field_name(name: &[u8]) -> String {
    let mut out = String::with_capacity(name.len());
    for chunk in name.utf8_chunks() {
        for c in chunk.valid().chars() {
            out.push(if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            });
        }
        for _ in chunk.invalid() {
            out.push('_');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapper::RuleConfig;

    const NOW: i64 = 1_800_000_000_000_000_000;

    fn rules() -> Vec<RuleConfig> {
        let labels = |p: &[(&str, &str)]| {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        vec![
            RuleConfig {
                match_text: "test.dispatcher.*.*.*".into(),
                name: "dispatcher_events_total".into(),
                measurement_name: Some("dispatcher_test".into()),
                labels: labels(&[
                    ("action", "$2"),
                    ("job", "test_dispatcher"),
                    ("outcome", "$3"),
                    ("processor", "$1"),
                ]),
                ..RuleConfig::default()
            },
            RuleConfig {
                match_text:
                    r"servers\.(.*)\.networking\.subnetworks\.transmissions\.([a-z0-9-]+)\.(.*)"
                        .into(),
                match_type: Some("regex".into()),
                name: "servers_networking_transmissions_${3}".into(),
                measurement_name: Some("servers_networking".into()),
                labels: labels(&[("hostname", "${1}"), ("device", "${2}")]),
                ..RuleConfig::default()
            },
            RuleConfig {
                match_text: "noisy.*".into(),
                name: "unused".into(),
                action_type: Some("drop".into()),
                ..RuleConfig::default()
            },
        ]
    }

    fn processor(strict: bool, tags: &[(&str, &str)]) -> Processor {
        Processor::new(
            Mapper::new(&rules()).unwrap(),
            strict,
            tags.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn one(p: &Processor, line: &str) -> (Point, Counts) {
        let mut out = Vec::new();
        let mut counts = Counts::default();
        p.line(line.as_bytes(), NOW, &mut out, &mut counts)
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(out.len(), 1, "{line}");
        (out.remove(0), counts)
    }

    fn sorted_tags(p: &Point) -> Vec<(&str, &str)> {
        let mut t: Vec<(&str, &str)> = p
            .tags
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        t.sort();
        t
    }

    #[test]
    fn an_unmapped_name_becomes_a_sanitised_field_of_graphite() {
        let (p, counts) = one(
            &processor(false, &[]),
            "test.web-server.foo.bar 12.5 1700000000",
        );
        assert_eq!(p.name, "graphite");
        assert_eq!(
            p.fields,
            vec![
                ("test_web_server_foo_bar".to_string(), Value::F(12.5)),
                ("timestamp".to_string(), Value::I(1_700_000_000_000_000_000)),
            ]
        );
        assert!(p.tags.is_empty());
        assert_eq!(p.time, 1_700_000_000_000_000_000);
        assert_eq!(
            counts,
            Counts {
                lines: 1,
                unmapped: 1,
                points: 1,
                ..Counts::default()
            }
        );
    }

    #[test]
    fn a_glob_mapped_line_gets_the_rule_measurement_field_and_labels() {
        let (p, counts) = one(
            &processor(false, &[]),
            "test.dispatcher.FooProcessor.send.success 3 1700000000",
        );
        assert_eq!(p.name, "dispatcher_test");
        assert_eq!(
            p.fields[0],
            ("dispatcher_events_total".into(), Value::F(3.0))
        );
        assert_eq!(
            sorted_tags(&p),
            vec![
                ("action", "send"),
                ("job", "test_dispatcher"),
                ("outcome", "success"),
                ("processor", "FooProcessor")
            ]
        );
        assert_eq!(counts.unmapped, 0);
    }

    #[test]
    fn a_regex_mapped_line_has_its_expanded_name_sanitised() {
        let (p, _) = one(
            &processor(false, &[]),
            "servers.rack-003-server-c4de.networking.subnetworks.transmissions.eth0.failure.mean_rate 0.25 1700000000",
        );
        assert_eq!(p.name, "servers_networking");
        assert_eq!(
            p.fields[0],
            (
                "servers_networking_transmissions_failure_mean_rate".into(),
                Value::F(0.25)
            )
        );
        assert_eq!(
            sorted_tags(&p),
            vec![("device", "eth0"), ("hostname", "rack-003-server-c4de")]
        );
    }

    #[test]
    fn path_tags_are_kept_and_rule_labels_override_them() {
        let (p, counts) = one(
            &processor(false, &[]),
            "test.dispatcher.P.send.ok;job=mine;dc=eu;broken 1 1700000000",
        );
        assert_eq!(
            sorted_tags(&p),
            vec![
                ("action", "send"),
                ("dc", "eu"),
                ("job", "test_dispatcher"),
                ("outcome", "ok"),
                ("processor", "P")
            ]
        );
        assert_eq!(counts.tag_errors, 1);
    }

    #[test]
    fn instance_tags_fill_in_but_never_override_line_tags() {
        let (p, _) = one(
            &processor(false, &[("dc", "default"), ("team", "ops")]),
            "cpu.load;dc=eu 1 1700000000",
        );
        assert_eq!(sorted_tags(&p), vec![("dc", "eu"), ("team", "ops")]);
    }

    #[test]
    fn a_line_without_timestamp_takes_the_receive_time() {
        for line in ["m 1", "m 1 -1", "m 1 N"] {
            let (p, _) = one(&processor(false, &[]), line);
            assert_eq!(p.time, NOW, "{line}");
            assert_eq!(p.get_field("timestamp"), Some(&Value::I(NOW)), "{line}");
        }
    }

    #[test]
    fn strict_match_and_drop_rules_drop_lines() {
        let p = processor(true, &[]);
        let mut out = Vec::new();
        let mut counts = Counts::default();
        let body = b"unmapped.name 1 1\nnoisy.x 2 2\ntest.dispatcher.a.b.c 3 3\n";
        assert_eq!(p.datagram(body, NOW, &mut out, &mut counts), None);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].name, "dispatcher_test");
        assert_eq!(
            counts,
            Counts {
                lines: 3,
                unmapped: 1,
                dropped: 2,
                points: 1,
                ..Counts::default()
            }
        );
        // Without strict_match the unmapped line is kept; the drop rule still drops.
        let mut out = Vec::new();
        processor(false, &[]).datagram(body, NOW, &mut out, &mut Counts::default());
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn malformed_lines_are_counted_and_the_rest_kept() {
        let p = processor(false, &[]);
        let mut out = Vec::new();
        let mut counts = Counts::default();
        let last = p.datagram(
            b"good.one 1 1700000000\r\nbad line here now\n\nm NaN 1\ngood.two 2 1700000001",
            NOW,
            &mut out,
            &mut counts,
        );
        assert_eq!(last, Some(LineError::NanValue));
        let fields: Vec<&str> = out.iter().map(|p| p.fields[0].0.as_str()).collect();
        assert_eq!(fields, vec!["good_one", "good_two"]);
        assert_eq!(
            (counts.lines, counts.parse_errors, counts.points),
            (4, 2, 2)
        );
    }

    #[test]
    fn a_metric_named_timestamp_is_overwritten_by_the_timestamp_field() {
        let (p, _) = one(&processor(false, &[]), "timestamp 5 1700000000");
        assert_eq!(
            p.fields,
            vec![("timestamp".to_string(), Value::I(1_700_000_000_000_000_000))]
        );
    }

    #[test]
    fn field_names_replace_each_character_or_invalid_byte() {
        assert_eq!(field_name(b"a.b-c:d_e9"), "a_b_c:d_e9");
        assert_eq!(field_name("caf\u{e9}.x".as_bytes()), "caf__x");
        assert_eq!(field_name(b"a\xff\xfeb"), "a__b");
    }
}
