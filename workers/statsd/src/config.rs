//! Decoding and checking one `[[inputs.statsd]]` instance: pure functions from TOML text to settings.

use std::collections::BTreeMap;
use std::time::Duration;

use dk_proto::rpc::ListenerKind;
use dk_worker::config::{Decoded, Problems};
use dk_worker::{ConfigProblem, ListenSpec};
use serde::Deserialize;

use crate::aggregate::{AggregatorConfig, DEFAULT_MAX_PENDING_EVENTS};

/// Datakit's default flush interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Shortest interval Datakit allows; shorter ones are raised to it.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Longest interval Datakit allows; longer ones are lowered to it.
pub const MAX_INTERVAL: Duration = Duration::from_secs(60);
/// Datakit's default `service_address`.
pub const DEFAULT_SERVICE_ADDRESS: &str = ":8125";
/// Datakit's default `service_unix_address`.
pub const DEFAULT_UNIX_ADDRESS: &str = "/var/run/datakit/statsd.sock";
/// Datakit's default `allowed_pending_messages`.
pub const DEFAULT_PENDING: usize = 128;
/// Datakit's default `percentile_limit`.
pub const DEFAULT_PERCENTILE_LIMIT: usize = 1000;
/// Largest `percentile_limit` accepted (values kept per timing series).
pub const MAX_PERCENTILE_LIMIT: usize = 1_000_000;
/// Largest `allowed_pending_messages` accepted.
pub const MAX_PENDING: usize = 1 << 20;
/// `read_buffer_size` when the key is absent: 4 MiB, about 5,000 small datagrams or 15 ms at
/// 350k/s. The kernel's default (`net.core.rmem_default`, often 208 KiB) loses datagrams above
/// ~100k/s on a busy 2-core host; this buffer loses none at a single sender's maximum. It is a
/// limit, not an allocation: memory is used only while datagrams wait.
pub const DEFAULT_READ_BUFFER: usize = 4 << 20;
/// Most UDP sockets (`udp_sockets`) one instance binds.
pub const MAX_UDP_SOCKETS: u16 = 64;
/// Datakit's default feed source.
pub const DEFAULT_SOURCE: &str = "statsd/-/-";

/// One instance's settings, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct StatsdConfig {
    /// `source` (kept for compatibility; used in logs).
    pub source: String,
    /// Flush interval as configured (see [`clamp_interval`]).
    pub interval: Duration,
    /// `service_address` (UDP), as written; `None` when empty.
    pub service_address: Option<String>,
    /// `service_unix_address` (Unix datagram path); `None` when empty.
    pub service_unix_address: Option<String>,
    /// `protocol`: `udp` (IPv6 and IPv4 for a `:port` address), `udp4` or `udp6`.
    pub protocol: String,
    /// `udp_sockets` (not in Datakit): UDP sockets bound on `service_address` with
    /// `SO_REUSEPORT`, each read by its own thread.
    pub udp_sockets: u16,
    /// `read_buffer_size`: SO_RCVBUF in bytes; [`DEFAULT_READ_BUFFER`] when absent, 0 leaves
    /// the kernel default.
    pub read_buffer_size: usize,
    /// `allowed_pending_messages`: datagrams queued between the sockets and the parser.
    pub allowed_pending_messages: usize,
    /// `datadog_extensions` (or the deprecated `parse_data_dog_tags`).
    pub datadog_extensions: bool,
    /// Aggregation settings.
    pub aggregate: AggregatorConfig,
}

impl Default for StatsdConfig {
    fn default() -> Self {
        StatsdConfig {
            source: DEFAULT_SOURCE.to_string(),
            interval: DEFAULT_INTERVAL,
            service_address: Some(DEFAULT_SERVICE_ADDRESS.to_string()),
            service_unix_address: Some(DEFAULT_UNIX_ADDRESS.to_string()),
            protocol: "udp".to_string(),
            udp_sockets: 1,
            read_buffer_size: DEFAULT_READ_BUFFER,
            allowed_pending_messages: DEFAULT_PENDING,
            datadog_extensions: false,
            aggregate: AggregatorConfig {
                percentile_limit: DEFAULT_PERCENTILE_LIMIT,
                distributions: false,
                max_pending_events: DEFAULT_MAX_PENDING_EVENTS,
                ..AggregatorConfig::default()
            },
        }
    }
}

impl StatsdConfig {
    /// The sockets this instance listens on: UDP `service_address` (`udp_sockets` of them),
    /// Unix datagram `service_unix_address` (optional: as in Datakit, a failed bind is only
    /// logged).
    pub fn listeners(&self) -> Vec<ListenSpec> {
        let mut out = Vec::new();
        if let Some(a) = self.udp_address() {
            out.push(ListenSpec::new(a, ListenerKind::Udp).with_sockets(self.udp_sockets));
        }
        if let Some(p) = &self.service_unix_address {
            out.push(ListenSpec::new(p.clone(), ListenerKind::UnixDatagram).optional());
        }
        out
    }

    /// The UDP listen address as the supervisor binds it: `service_address`, prefixed with
    /// `udp4://`/`udp6://` when `protocol` asks for one IP family.
    pub fn udp_address(&self) -> Option<String> {
        let a = self.service_address.as_ref()?;
        Some(match self.protocol.as_str() {
            p @ ("udp4" | "udp6") => format!("{p}://{a}"),
            _ => a.clone(),
        })
    }

    /// A name for this instance in metrics and logs: its UDP address, else its socket path.
    pub fn instance_label(&self) -> String {
        self.service_address
            .clone()
            .or_else(|| self.service_unix_address.clone())
            .unwrap_or_default()
    }
}

/// Clamps an interval into 1 s–60 s as Datakit does; `Err` carries (configured, used).
///
/// # Errors
/// `(configured, used)` when the interval was moved (the caller logs it and goes on).
pub fn clamp_interval(interval: Duration) -> Result<Duration, (Duration, Duration)> {
    let used = interval.clamp(MIN_INTERVAL, MAX_INTERVAL);
    if used == interval {
        Ok(used)
    } else {
        Err((interval, used))
    }
}

/// Checks a UDP listen address as Go's `net.ResolveUDPAddr` would take it: `host:port`,
/// `:port` or `[v6]:port`, port 1-65535.
///
/// # Errors
/// What is wrong, for the problem message.
pub fn check_udp_address(text: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| "unclosed '[' in an IPv6 address".to_string())?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| "no ':port' after the IPv6 address".to_string())?;
        if h.split('%')
            .next()
            .unwrap_or("")
            .parse::<std::net::Ipv6Addr>()
            .is_err()
        {
            return Err(format!("{h:?} is not an IPv6 address"));
        }
        (h, port)
    } else {
        let (h, p) = text
            .rsplit_once(':')
            .ok_or_else(|| "no ':port'".to_string())?;
        if h.contains(':') {
            return Err("write IPv6 addresses in brackets: \"[::1]:8125\"".to_string());
        }
        (h, p)
    };
    if host.contains(|c: char| c.is_whitespace() || c == '/') {
        return Err(format!("the host {host:?} is not valid"));
    }
    match port.parse::<u16>() {
        Ok(0) => Err("port 0 would listen on a random port no client knows".to_string()),
        Ok(_) => Ok(()),
        Err(_) => Err(format!("the port {port:?} is not a number 1-65535")),
    }
}

/// `[[inputs.statsd]]` as written: Datakit's keys and defaults (plus `udp_sockets` and
/// `read_buffer_size`), read by the runtime's collector; [`decode`] checks it.
#[derive(Debug, Deserialize)]
#[serde(default)]
struct StatsdToml {
    source: String,
    /// Datakit's `time.Duration`: a bare number is nanoseconds.
    #[serde(with = "dk_worker::config::go")]
    interval: Duration,
    protocol: String,
    service_address: String,
    service_unix_address: String,
    udp_sockets: usize,
    read_buffer_size: usize,
    allowed_pending_messages: usize,
    percentile_limit: usize,
    percentiles: Vec<f64>,
    delete_gauges: bool,
    delete_counters: bool,
    delete_sets: bool,
    delete_timings: bool,
    set_counter_int: bool,
    datadog_extensions: bool,
    /// The deprecated name of `datadog_extensions`.
    parse_data_dog_tags: bool,
    datadog_distributions: bool,
    metric_separator: String,
    drop_tags: Vec<String>,
    metric_mapping: Vec<String>,
    tags: BTreeMap<String, String>,
    statsd_source_key: String,
    statsd_host_key: String,
    save_above_key: bool,
    #[serde(with = "dk_worker::config::go")]
    max_ttl: Duration,
    /// Not in Datakit: the most series (and distinct set members) held.
    max_series: usize,
    // Accepted and unused, as in Datakit.
    udp_packet_size: usize,
    max_tcp_connections: usize,
    tcp_keep_alive: bool,
}

impl Default for StatsdToml {
    fn default() -> Self {
        let aggregate = AggregatorConfig::default();
        StatsdToml {
            source: DEFAULT_SOURCE.to_string(),
            interval: DEFAULT_INTERVAL,
            protocol: "udp".to_string(),
            service_address: DEFAULT_SERVICE_ADDRESS.to_string(),
            service_unix_address: DEFAULT_UNIX_ADDRESS.to_string(),
            udp_sockets: 1,
            read_buffer_size: DEFAULT_READ_BUFFER,
            allowed_pending_messages: DEFAULT_PENDING,
            percentile_limit: DEFAULT_PERCENTILE_LIMIT,
            percentiles: Vec::new(),
            delete_gauges: aggregate.delete_gauges,
            delete_counters: aggregate.delete_counters,
            delete_sets: aggregate.delete_sets,
            delete_timings: aggregate.delete_timings,
            set_counter_int: false,
            datadog_extensions: false,
            parse_data_dog_tags: false,
            datadog_distributions: false,
            metric_separator: aggregate.metric_separator,
            drop_tags: Vec::new(),
            metric_mapping: Vec::new(),
            tags: BTreeMap::new(),
            statsd_source_key: String::new(),
            statsd_host_key: String::new(),
            save_above_key: false,
            max_ttl: Duration::ZERO,
            max_series: aggregate.max_series,
            udp_packet_size: 0,
            max_tcp_connections: 0,
            tcp_keep_alive: false,
        }
    }
}

/// Decodes and checks one instance (its TOML table as text): every error and warning at once.
pub fn decode(toml_text: &str) -> Decoded<StatsdConfig> {
    dk_worker::config::decode::<StatsdToml>(toml_text).map(check)
}

/// [`decode`] without the warnings.
///
/// # Errors
/// Every error found, each naming its key and a fix.
pub fn parse(toml_text: &str) -> Result<StatsdConfig, Vec<ConfigProblem>> {
    decode(toml_text).into_result()
}

fn check(t: StatsdToml, p: &mut Problems) -> StatsdConfig {
    let mut cfg = StatsdConfig {
        source: t.source,
        interval: t.interval,
        ..StatsdConfig::default()
    };
    // The worker clamps the interval; say so at load.
    p.clamp("interval", t.interval, MIN_INTERVAL, MAX_INTERVAL);
    match t.protocol.as_str() {
        "udp" | "udp4" | "udp6" => cfg.protocol = t.protocol.clone(),
        other if other.starts_with("tcp") => p.error(
            "protocol",
            format!(
                "{other:?}: TCP is not supported by the statsd input (as in Datakit); \
                 write protocol = \"udp\" and send over UDP or the Unix socket"
            ),
        ),
        other => p.error(
            "protocol",
            format!("{other:?} is not a UDP network; write protocol = \"udp\""),
        ),
    }
    let address = t.service_address.trim();
    cfg.service_address = if address.is_empty() {
        None
    } else if let Err(e) = check_udp_address(address) {
        p.error(
            "service_address",
            format!("{address:?}: {e}; write e.g. service_address = \":8125\""),
        );
        Some(DEFAULT_SERVICE_ADDRESS.to_string())
    } else {
        Some(address.to_string())
    };
    let path = t.service_unix_address;
    cfg.service_unix_address = if path.is_empty() {
        None
    } else if !path.starts_with('/') {
        p.error(
            "service_unix_address",
            format!(
                "{path:?} is not an absolute path; write e.g. \"{DEFAULT_UNIX_ADDRESS}\" or \"\" to listen on UDP only"
            ),
        );
        Some(DEFAULT_UNIX_ADDRESS.to_string())
    } else {
        Some(path)
    };
    if cfg.service_address.is_none() && cfg.service_unix_address.is_none() {
        p.error(
            "service_address",
            "both service_address and service_unix_address are empty, so nothing would be received; \
             set service_address = \":8125\"",
        );
    }
    match u16::try_from(t.udp_sockets) {
        Ok(0) => p.error(
            "udp_sockets",
            "must be at least 1; write udp_sockets = 1 (one socket) or more for many senders",
        ),
        Ok(n) if n <= MAX_UDP_SOCKETS => cfg.udp_sockets = n,
        _ => p.error(
            "udp_sockets",
            format!(
                "{} is too large; the maximum is {MAX_UDP_SOCKETS}",
                t.udp_sockets
            ),
        ),
    }
    cfg.read_buffer_size = t.read_buffer_size;
    match t.allowed_pending_messages {
        0 => p.error(
            "allowed_pending_messages",
            "must be at least 1 (0 would drop every datagram); write e.g. 128",
        ),
        n if n > MAX_PENDING => p.error(
            "allowed_pending_messages",
            format!("{n} is too large; the maximum is {MAX_PENDING}"),
        ),
        n => cfg.allowed_pending_messages = n,
    }
    let a = &mut cfg.aggregate;
    match t.percentile_limit {
        // Datakit treats 0 as its default of 1000.
        0 => a.percentile_limit = DEFAULT_PERCENTILE_LIMIT,
        n if n > MAX_PERCENTILE_LIMIT => p.error(
            "percentile_limit",
            format!("{n} is too large; the maximum is {MAX_PERCENTILE_LIMIT}"),
        ),
        n => a.percentile_limit = n,
    }
    for (i, pc) in t.percentiles.iter().enumerate() {
        if !(0.0..=100.0).contains(pc) {
            p.error(
                format!("percentiles[{i}]"),
                format!("{pc} is outside 0-100; write e.g. percentiles = [50.0, 90.0, 99.0]"),
            );
        }
    }
    a.percentiles = t.percentiles;
    a.delete_gauges = t.delete_gauges;
    a.delete_counters = t.delete_counters;
    a.delete_sets = t.delete_sets;
    a.delete_timings = t.delete_timings;
    a.set_counter_int = t.set_counter_int;
    cfg.datadog_extensions = t.datadog_extensions || t.parse_data_dog_tags;
    a.distributions = cfg.datadog_extensions && t.datadog_distributions;
    if !t.metric_separator.is_empty() {
        a.metric_separator = t.metric_separator;
    }
    a.drop_tags = t.drop_tags;
    for (i, m) in t.metric_mapping.iter().enumerate() {
        match m.split_once(':') {
            Some((from, to)) if !to.is_empty() => {
                a.metric_mapping.push((from.to_string(), to.to_string()));
            }
            _ => p.error(
                format!("metric_mapping[{i}]"),
                format!("{m:?} is not \"<name prefix>:<measurement>\"; write e.g. \"jvm_:jvm\""),
            ),
        }
    }
    a.tags = t.tags.into_iter().collect();
    if !t.save_above_key {
        a.remove_keys = [t.statsd_source_key, t.statsd_host_key]
            .into_iter()
            .filter(|k| !k.is_empty())
            .collect();
    }
    a.max_ttl = t.max_ttl;
    // Not in Datakit: a bound on the series held, so a sender of endless distinct names
    // cannot grow the worker until it is killed.
    if t.max_series == 0 {
        p.error(
            "max_series",
            "must be at least 1 (0 would drop every sample); write e.g. max_series = 200000",
        );
    } else {
        a.max_series = t.max_series;
    }
    cfg
}

#[cfg(test)]
mod tests {
    use dk_worker::testing::keys;

    use super::*;

    #[test]
    fn applies_datakit_defaults_when_keys_are_absent() {
        let cfg = parse("").expect("valid");
        assert_eq!(cfg, StatsdConfig::default());
        assert_eq!(cfg.interval, Duration::from_secs(10));
        assert_eq!(cfg.service_address.as_deref(), Some(":8125"));
        assert_eq!(
            cfg.service_unix_address.as_deref(),
            Some("/var/run/datakit/statsd.sock")
        );
        assert_eq!(cfg.allowed_pending_messages, 128);
        assert_eq!(cfg.read_buffer_size, 4 << 20);
        assert_eq!(
            parse("read_buffer_size = 0")
                .expect("valid")
                .read_buffer_size,
            0
        );
        assert!(!cfg.datadog_extensions);
        assert!(!cfg.aggregate.distributions);
        assert!(cfg.aggregate.delete_counters && cfg.aggregate.delete_timings);
        assert_eq!(cfg.aggregate.metric_separator, "_");
        assert_eq!(cfg.aggregate.percentile_limit, 1000);
        assert!(cfg.aggregate.percentiles.is_empty());
        assert_eq!(cfg.aggregate.max_ttl, Duration::ZERO);
    }

    #[test]
    fn decodes_every_key() {
        let cfg = parse(
            r#"
            source = "s"
            interval = "2s"
            protocol = "udp4"
            service_address = "127.0.0.1:9125"
            service_unix_address = ""
            statsd_source_key = "source_key"
            statsd_host_key = "host_key"
            delete_gauges = false
            delete_counters = false
            delete_sets = false
            delete_timings = false
            set_counter_int = true
            percentiles = [50, 99.9]
            percentile_limit = 0
            metric_separator = "."
            parse_data_dog_tags = true
            datadog_distributions = true
            drop_tags = ["runtime-id"]
            metric_mapping = ["jvm_:jvm", "a:b:c"]
            allowed_pending_messages = 10000
            read_buffer_size = 8388608
            max_ttl = "1h"
            udp_packet_size = 1500
            max_tcp_connections = 250
            tcp_keep_alive = false
            [tags]
            b = "2"
            a = "1"
            "#,
        )
        .expect("valid");
        assert_eq!(cfg.source, "s");
        assert_eq!(cfg.interval, Duration::from_secs(2));
        assert_eq!(cfg.service_address.as_deref(), Some("127.0.0.1:9125"));
        assert_eq!(cfg.service_unix_address, None);
        assert_eq!(
            cfg.listeners(),
            vec![ListenSpec::new("udp4://127.0.0.1:9125", ListenerKind::Udp)]
        );
        let a = &cfg.aggregate;
        assert_eq!(a.remove_keys, vec!["source_key", "host_key"]);
        assert!(!a.delete_gauges && !a.delete_counters && !a.delete_sets && !a.delete_timings);
        assert!(a.set_counter_int);
        assert_eq!(a.percentiles, vec![50.0, 99.9]);
        assert_eq!(a.percentile_limit, 1000);
        assert_eq!(a.metric_separator, ".");
        assert!(cfg.datadog_extensions && a.distributions);
        assert_eq!(a.drop_tags, vec!["runtime-id"]);
        assert_eq!(
            a.metric_mapping,
            vec![
                ("jvm_".to_string(), "jvm".to_string()),
                ("a".to_string(), "b:c".to_string())
            ]
        );
        assert_eq!(cfg.allowed_pending_messages, 10000);
        assert_eq!(cfg.read_buffer_size, 8_388_608);
        assert_eq!(a.max_ttl, Duration::from_secs(3600));
        assert_eq!(
            a.tags,
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
    }

    #[test]
    fn udp_sockets_and_protocol_shape_the_listen_specs() {
        let cfg = parse("protocol = \"udp4\"\nudp_sockets = 4").expect("valid");
        assert_eq!(
            cfg.listeners(),
            vec![
                ListenSpec::new("udp4://:8125", ListenerKind::Udp).with_sockets(4),
                ListenSpec::new(DEFAULT_UNIX_ADDRESS, ListenerKind::UnixDatagram).optional(),
            ]
        );
        let problems = parse("udp_sockets = 0").expect_err("zero refused");
        assert_eq!(keys(&problems), vec!["udp_sockets"]);
        let problems = parse("udp_sockets = 65").expect_err("too many");
        assert_eq!(keys(&problems), vec!["udp_sockets"]);
    }

    #[test]
    fn save_above_key_keeps_the_source_and_host_tags() {
        let cfg = parse("statsd_source_key = \"s\"\nsave_above_key = true").expect("valid");
        assert!(cfg.aggregate.remove_keys.is_empty());
    }

    #[test]
    fn distributions_need_the_extensions() {
        let cfg = parse("datadog_distributions = true").expect("valid");
        assert!(!cfg.aggregate.distributions);
    }

    #[test]
    fn refuses_tcp_with_a_fix() {
        let problems = parse("protocol = \"tcp\"").expect_err("tcp refused");
        assert_eq!(keys(&problems), vec!["protocol"]);
        assert!(problems[0].message.contains("TCP is not supported"));
        assert!(problems[0].message.contains("protocol = \"udp\""));
    }

    #[test]
    fn reports_every_problem_at_once_with_its_key() {
        let problems = parse(
            r#"
            interval = "soon"
            protocol = "sctp"
            service_address = "8125"
            service_unix_address = "relative.sock"
            allowed_pending_messages = 0
            percentile_limit = -1
            percentiles = [50, 101, "x"]
            delete_gauges = "yes"
            drop_tags = "a"
            metric_mapping = ["nocolon", "x:"]
            max_ttl = true
            read_buffer_size = 1.5
            [tags]
            n = 1
            "#,
        )
        .expect_err("invalid");
        let mut got = keys(&problems);
        got.sort_unstable();
        let mut want = vec![
            "interval",
            "protocol",
            "service_address",
            "service_unix_address",
            "allowed_pending_messages",
            "percentile_limit",
            "percentiles[2]",
            "percentiles[1]",
            "delete_gauges",
            "drop_tags",
            "metric_mapping[0]",
            "metric_mapping[1]",
            "tags.n",
            "max_ttl",
            "read_buffer_size",
        ];
        want.sort_unstable();
        assert_eq!(got, want);
        assert!(
            problems.iter().all(|p| p.message.contains("write")
                || p.message.contains("quote")
                || p.message.contains("expected")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_typo_warns_with_the_closest_key_and_the_default_still_applies() {
        let problems = decode("servce_address = \":18126\"").into_problems();
        assert_eq!(
            problems,
            vec![ConfigProblem::warning(
                "servce_address",
                "unknown key, ignored (the default applies): did you mean `service_address`?"
            )]
        );
        let cfg = parse("servce_address = \":18126\"").expect("a warning only");
        assert_eq!(cfg.service_address.as_deref(), Some(":8125"));
    }

    #[test]
    fn a_bare_number_interval_warns_what_was_meant_and_names_the_clamp() {
        let d = decode("interval = 10");
        assert_eq!(d.value.interval, Duration::from_nanos(10));
        assert_eq!(
            d.into_problems(),
            vec![ConfigProblem::warning(
                "interval",
                "interval = 10 is 10ns as Datakit reads it (a bare number is nanoseconds here); \
                 if you meant 10s, write interval = \"10s\"; the input then raises it to its minimum 1s"
            )]
        );
    }

    #[test]
    fn every_key_of_the_sample_is_known() {
        let sample = include_str!("../../../conf.d/statsd/statsd.conf");
        for table in dk_worker::testing::instances(sample, "statsd") {
            assert_eq!(decode(&table).into_problems(), Vec::new());
        }
    }

    #[test]
    fn refuses_an_instance_that_listens_nowhere() {
        let problems =
            parse("service_address = \"\"\nservice_unix_address = \"\"").expect_err("nowhere");
        assert_eq!(keys(&problems), vec!["service_address"]);
    }

    #[test]
    fn checks_udp_addresses_like_go() {
        for ok in [
            ":8125",
            "0.0.0.0:8125",
            "localhost:1",
            "[::1]:8125",
            "[fe80::1%eth0]:9",
        ] {
            assert_eq!(check_udp_address(ok), Ok(()), "{ok}");
        }
        for bad in [
            "8125", ":0", ":65536", "::1:8125", "[::1]", "[x]:1", "a b:1", ":port",
        ] {
            assert!(check_udp_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn integer_durations_are_nanoseconds_as_in_go() {
        let cfg = parse("interval = 2000000000").expect("valid");
        assert_eq!(cfg.interval, Duration::from_secs(2));
    }

    #[test]
    fn clamps_the_interval_into_one_to_sixty_seconds() {
        assert_eq!(
            clamp_interval(Duration::from_secs(10)),
            Ok(Duration::from_secs(10))
        );
        assert_eq!(
            clamp_interval(Duration::from_millis(10)),
            Err((Duration::from_millis(10), Duration::from_secs(1)))
        );
        assert_eq!(
            clamp_interval(Duration::from_secs(600)),
            Err((Duration::from_secs(600), Duration::from_secs(60)))
        );
    }

    #[test]
    fn max_series_bounds_the_aggregator_and_refuses_zero() {
        assert_eq!(
            parse("").expect("valid").aggregate.max_series,
            crate::aggregate::DEFAULT_MAX_SERIES
        );
        let cfg = parse("max_series = 5000").expect("valid");
        assert_eq!(cfg.aggregate.max_series, 5000);
        let problems = parse("max_series = 0").expect_err("zero refused");
        assert_eq!(keys(&problems), vec!["max_series"]);
        assert!(
            problems[0].message.contains("max_series = 200000"),
            "{problems:?}"
        );
    }
}
