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
