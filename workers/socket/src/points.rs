//! Building the `tcp` and `udp` points and tracking failure streaks: pure functions.

use dk_proto::{Point, Value};

use crate::config::{Target, is_local_destination};
use crate::probe::TcpTiming;

/// The tags of every point of a target: `dest_host`, `dest_port`, `proto`, then the instance
/// tags (the three measurement tags win over instance tags of the same key), then
/// `host=<dest host>` unless the instance sets `host` or the destination is local.
pub fn target_tags(target: &Target, instance_tags: &[(String, String)]) -> Vec<(String, String)> {
    let mut tags = vec![
        ("dest_host".to_string(), target.host.clone()),
        ("dest_port".to_string(), target.port_text.clone()),
        ("proto".to_string(), target.proto.as_str().to_string()),
    ];
    for (k, v) in instance_tags {
        if !tags.iter().any(|(have, _)| have == k) {
            tags.push((k.clone(), v.clone()));
        }
    }
    let instance_sets_host = instance_tags.iter().any(|(k, _)| k == "host");
    if !instance_sets_host && !is_local_destination(&target.host) {
        tags.push(("host".to_string(), target.host.clone()));
    }
    tags
}

/// The `tcp` point: timings on success; `success=-1` and zero times on failure.
pub fn tcp_point(tags: &[(String, String)], timing: Option<&TcpTiming>, time_ns: i64) -> Point {
    let (rt, rt_dns, success) = match timing {
        Some(t) => (t.response_time_us(), t.response_time_with_dns_us(), 1),
        None => (0, 0, -1),
    };
    Point {
        name: "tcp".to_string(),
        tags: tags.to_vec(),
        fields: vec![
            ("response_time".to_string(), Value::I(rt)),
            ("response_time_with_dns".to_string(), Value::I(rt_dns)),
            ("success".to_string(), Value::I(success)),
        ],
        time: time_ns,
    }
}

/// The `udp` point: `success` 1 or -1.
pub fn udp_point(tags: &[(String, String)], ok: bool, time_ns: i64) -> Point {
    Point {
        name: "udp".to_string(),
        tags: tags.to_vec(),
        fields: vec![("success".to_string(), Value::I(if ok { 1 } else { -1 }))],
        time: time_ns,
    }
}

/// What to do about one probe result, given the target's failure streak.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Nothing changed: stay quiet.
    Quiet,
    /// A streak started or its error changed: report this message once.
    Report(String),
    /// The target recovered after a streak.
    Recovered,
}

/// Updates a target's streak (`None` = healthy, `Some(message)` = failing with the last
/// reported message) with a result (`None` = success, `Some(message)` = failure).
pub fn transition(streak: &mut Option<String>, result: Option<&str>) -> Transition {
    match (streak.as_deref(), result) {
        (None, None) => Transition::Quiet,
        (Some(_), None) => {
            *streak = None;
            Transition::Recovered
        }
        (Some(last), Some(msg)) if last == msg => Transition::Quiet,
        (_, Some(msg)) => {
            *streak = Some(msg.to_string());
            Transition::Report(msg.to_string())
        }
    }
}

/// The first tick strictly after `now_ns` on the `interval_ns` grid (Unix-epoch aligned).
pub fn next_tick(now_ns: i64, interval_ns: i64) -> i64 {
    let interval = interval_ns.max(1);
    (now_ns.div_euclid(interval) + 1).saturating_mul(interval)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::parse_dest_url;

    fn tags(url: &str, instance: &[(&str, &str)]) -> Vec<(String, String)> {
        let target = parse_dest_url(url).expect("valid url");
        let instance: Vec<(String, String)> = instance
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        target_tags(&target, &instance)
    }

    fn get<'a>(tags: &'a [(String, String)], key: &str) -> Option<&'a str> {
        tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    #[test]
    fn adds_the_destination_as_host_tag_for_remote_targets() {
        let t = tags("tcp://db.example.com:5432", &[("team", "a")]);
        assert_eq!(
            t,
            vec![
                ("dest_host".into(), "db.example.com".into()),
                ("dest_port".into(), "5432".into()),
                ("proto".into(), "tcp".into()),
                ("team".into(), "a".into()),
                ("host".into(), "db.example.com".into()),
            ]
        );
        assert_eq!(
            get(&tags("udp://[2001:db8::1]:53", &[]), "host"),
            Some("2001:db8::1")
        );
    }

    #[test]
    fn leaves_out_the_host_tag_for_local_targets() {
        for url in ["tcp://localhost:80", "tcp://127.0.0.1:80", "udp://[::1]:53"] {
            assert_eq!(get(&tags(url, &[]), "host"), None, "{url}");
        }
    }

    #[test]
    fn keeps_an_instance_host_tag_over_the_destination() {
        let t = tags("tcp://db.example.com:5432", &[("host", "mine")]);
        assert_eq!(get(&t, "host"), Some("mine"));
        assert_eq!(t.iter().filter(|(k, _)| k == "host").count(), 1);
    }

    #[test]
    fn measurement_tags_win_over_instance_tags() {
        let t = tags("udp://10.1.1.1:53", &[("proto", "x"), ("dest_port", "1")]);
        assert_eq!(get(&t, "proto"), Some("udp"));
        assert_eq!(get(&t, "dest_port"), Some("53"));
    }

    #[test]
    fn tcp_point_carries_microsecond_timings_on_success() {
        let timing = TcpTiming {
            dns: Duration::from_micros(300),
            connect: Duration::from_micros(1200),
        };
        let p = tcp_point(&[], Some(&timing), 42);
        assert_eq!(p.name, "tcp");
        assert_eq!(p.time, 42);
        assert_eq!(p.get_field("response_time"), Some(&Value::I(1200)));
        assert_eq!(p.get_field("response_time_with_dns"), Some(&Value::I(1500)));
        assert_eq!(p.get_field("success"), Some(&Value::I(1)));
    }

    #[test]
    fn tcp_point_reports_zero_times_and_minus_one_on_failure() {
        let p = tcp_point(&[], None, 7);
        assert_eq!(p.get_field("response_time"), Some(&Value::I(0)));
        assert_eq!(p.get_field("response_time_with_dns"), Some(&Value::I(0)));
        assert_eq!(p.get_field("success"), Some(&Value::I(-1)));
    }

    #[test]
    fn udp_point_has_only_success() {
        let ok = udp_point(&[], true, 1);
        let bad = udp_point(&[], false, 1);
        assert_eq!(ok.fields, vec![("success".to_string(), Value::I(1))]);
        assert_eq!(bad.fields, vec![("success".to_string(), Value::I(-1))]);
        assert_eq!(ok.name, "udp");
    }

    #[test]
    fn reports_a_failure_once_per_streak() {
        let mut streak = None;
        assert_eq!(transition(&mut streak, None), Transition::Quiet);
        assert_eq!(
            transition(&mut streak, Some("refused")),
            Transition::Report("refused".into())
        );
        assert_eq!(transition(&mut streak, Some("refused")), Transition::Quiet);
        assert_eq!(transition(&mut streak, Some("refused")), Transition::Quiet);
        assert_eq!(
            transition(&mut streak, Some("timeout")),
            Transition::Report("timeout".into())
        );
        assert_eq!(transition(&mut streak, None), Transition::Recovered);
        assert_eq!(transition(&mut streak, None), Transition::Quiet);
        assert_eq!(
            transition(&mut streak, Some("refused")),
            Transition::Report("refused".into())
        );
    }

    #[test]
    fn next_tick_is_the_next_interval_boundary() {
        assert_eq!(next_tick(0, 10), 10);
        assert_eq!(next_tick(9, 10), 10);
        assert_eq!(next_tick(10, 10), 20);
        assert_eq!(
            next_tick(1_700_000_012_345_000_000, 30_000_000_000),
            1_700_000_040_000_000_000
        );
    }
}
