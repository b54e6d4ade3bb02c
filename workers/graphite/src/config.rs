//! Decoding and checking one `[[inputs.graphite]]` instance: pure functions from TOML text to
//! settings and compiled mapping rules, reporting every problem at once.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::time::Duration;

use dk_proto::rpc::ListenerKind;
use dk_worker::config::{Decoded, Problems};
use dk_worker::{ConfigProblem, ListenSpec};
use serde::Deserialize;

use crate::mapper::{Mapper, RuleConfig};

/// Datakit's default `address`, served on TCP and UDP.
pub const DEFAULT_ADDRESS: &str = ":9109";
/// Datakit's default `buffer_size`: points buffered before an early flush.
pub const DEFAULT_BUFFER_SIZE: usize = 100;
/// Shortest flush interval (an unset or zero `interval` becomes this, as in Datakit).
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Longest flush interval.
pub const MAX_INTERVAL: Duration = Duration::from_secs(120);

/// One instance's settings, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphiteConfig {
    /// `address` as written (`:9109`, `127.0.0.1:2003`, `[::1]:2003`).
    pub address: String,
    /// Drop lines whose name matches no mapping rule.
    pub strict_match: bool,
    /// Flush period, clamped into 1 s–120 s.
    pub interval: Duration,
    /// The interval as configured, when clamping changed it (for a warning).
    pub interval_clamped_from: Option<Duration>,
    /// Flush early once this many points are buffered (at least 1).
    pub buffer_size: usize,
    /// `read_buffer_size` (not in Datakit): SO_RCVBUF of the UDP socket in bytes; 0 keeps
    /// the kernel default.
    pub read_buffer_size: usize,
    /// `[[inputs.graphite.metric_mapper.mappings]]`, in file order.
    pub rules: Vec<RuleConfig>,
    /// `[inputs.graphite.tags]`, in key order.
    pub tags: Vec<(String, String)>,
}

impl Default for GraphiteConfig {
    fn default() -> Self {
        GraphiteConfig {
            address: DEFAULT_ADDRESS.to_string(),
            strict_match: false,
            interval: MIN_INTERVAL,
            interval_clamped_from: None,
            buffer_size: DEFAULT_BUFFER_SIZE,
            read_buffer_size: 0,
            rules: Vec::new(),
            tags: Vec::new(),
        }
    }
}

impl GraphiteConfig {
    /// The two sockets of the instance: TCP and UDP on `address`. The scheme makes the two
    /// addresses distinct for the supervisor, which binds them.
    pub fn listeners(&self) -> Vec<ListenSpec> {
        vec![
            ListenSpec::new(tcp_address(&self.address), ListenerKind::Tcp),
            ListenSpec::new(udp_address(&self.address), ListenerKind::Udp),
        ]
    }
}

/// The TCP listener's address as declared to the supervisor.
pub fn tcp_address(address: &str) -> String {
    format!("tcp://{address}")
}

/// The UDP listener's address as declared to the supervisor.
pub fn udp_address(address: &str) -> String {
    format!("udp://{address}")
}

const ADDRESS_FIX: &str = "write host:port or :port (e.g. \":9109\" or \"127.0.0.1:2003\"; IPv6 as \"[::1]:2003\"); Graphite listens on TCP and UDP at that address";

/// Checks an `address` (`:port`, `host:port`, `[v6]:port`).
///
/// # Errors
/// What is wrong, with the fix.
pub fn check_address(address: &str) -> Result<(), String> {
    if address.contains("://") {
        return Err(format!(
            "{address:?} has a scheme; {ADDRESS_FIX} (no tcp:// or udp://)"
        ));
    }
    let (host, port) = if let Some(inner) = address.strip_prefix('[') {
        let Some((host, after)) = inner.split_once(']') else {
            return Err(format!("{address:?} has no closing ']'; {ADDRESS_FIX}"));
        };
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(format!("{host:?} is not an IPv6 address; {ADDRESS_FIX}"));
        }
        let Some(port) = after.strip_prefix(':') else {
            return Err(format!("{address:?} has no port; {ADDRESS_FIX}"));
        };
        (host, port)
    } else {
        let Some((host, port)) = address.rsplit_once(':') else {
            return Err(format!("{address:?} has no port; {ADDRESS_FIX}"));
        };
        if host.contains(':') {
            return Err(format!(
                "{address:?}: put an IPv6 address in brackets; {ADDRESS_FIX}"
            ));
        }
        (host, port)
    };
    if host
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '@' | '[' | ']'))
    {
        return Err(format!("the host {host:?} is not valid; {ADDRESS_FIX}"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        _ => Err(format!(
            "the port {port:?} is not a number from 1 to 65535; {ADDRESS_FIX}"
        )),
    }
}

/// `[[inputs.graphite]]` as written: Datakit's keys and defaults (plus `read_buffer_size`),
/// read by the runtime's collector; [`decode`] checks it.
#[derive(Debug, Deserialize)]
#[serde(default)]
struct GraphiteToml {
    address: String,
    strict_match: bool,
    /// Datakit's `datakit.Duration`: a bare number is seconds.
    #[serde(with = "dk_worker::config::seconds")]
    interval: Duration,
    buffer_size: i64,
    read_buffer_size: usize,
    metric_mapper: MapperToml,
    tags: BTreeMap<String, String>,
}

impl Default for GraphiteToml {
    fn default() -> Self {
        GraphiteToml {
            address: DEFAULT_ADDRESS.to_string(),
            strict_match: false,
            interval: Duration::ZERO,
            buffer_size: DEFAULT_BUFFER_SIZE as i64,
            read_buffer_size: 0,
            metric_mapper: MapperToml::default(),
            tags: BTreeMap::new(),
        }
    }
}

/// `[inputs.graphite.metric_mapper]`: Datakit's keys; statsd_exporter's other keys are
/// accepted and unused, as in Datakit.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct MapperToml {
    name: String,
    /// Datakit's doc shows `strict_match` here; its code reads only the top-level key. Both
    /// are honoured.
    strict_match: bool,
    mappings: Vec<RuleToml>,
    cache_size: Option<toml::Value>,
    cache_type: Option<toml::Value>,
    defaults: Option<toml::Value>,
}

/// `[[inputs.graphite.metric_mapper.mappings]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RuleToml {
    #[serde(rename = "match")]
    match_text: String,
    match_type: Option<String>,
    name: String,
    measurement_name: Option<String>,
    labels: BTreeMap<String, String>,
    action_type: Option<String>,
    match_metric_type: Option<String>,
    // statsd_exporter keys Datakit accepts and does not use.
    action: Option<toml::Value>,
    help: Option<toml::Value>,
    honor_labels: Option<toml::Value>,
    observer_type: Option<toml::Value>,
    timer_type: Option<toml::Value>,
    buckets: Option<toml::Value>,
    quantiles: Option<toml::Value>,
    ttl: Option<toml::Value>,
    scale: Option<toml::Value>,
    summary_options: Option<toml::Value>,
    histogram_options: Option<toml::Value>,
}

/// Decodes and checks one instance (its TOML table as text) and compiles its mapping rules:
/// every error and warning at once.
pub fn decode(toml_text: &str) -> Decoded<Option<(GraphiteConfig, Mapper)>> {
    dk_worker::config::decode::<GraphiteToml>(toml_text).map(check)
}

/// [`decode`] without the warnings.
///
/// # Errors
/// Every error found, each naming its key and a fix.
pub fn parse(toml_text: &str) -> Result<(GraphiteConfig, Mapper), Vec<ConfigProblem>> {
    match decode(toml_text).into_result() {
        Ok(Some(parsed)) => Ok(parsed),
        Ok(None) => Err(vec![ConfigProblem::new(
            "",
            "the mapping rules did not compile",
        )]),
        Err(problems) => Err(problems),
    }
}

/// The sockets an instance listens on, from its `address` alone (a bad mapping rule does not
/// keep the port from being claimed; `validate` reports it). Empty when the address is bad.
pub fn listeners(toml_text: &str) -> Vec<ListenSpec> {
    let d = dk_worker::config::decode::<GraphiteToml>(toml_text);
    let address = d.value.address.trim();
    // A syntax error (key "") or a bad address claims nothing.
    if d.problems.has("") || d.problems.has("address") || check_address(address).is_err() {
        return Vec::new();
    }
    GraphiteConfig {
        address: address.to_string(),
        ..GraphiteConfig::default()
    }
    .listeners()
}

fn check(t: GraphiteToml, p: &mut Problems) -> Option<(GraphiteConfig, Mapper)> {
    let mut cfg = GraphiteConfig::default();
    let address = t.address.trim();
    match check_address(address) {
        Ok(()) => cfg.address = address.to_string(),
        Err(e) => p.error("address", e),
    }
    cfg.strict_match = t.strict_match || t.metric_mapper.strict_match;
    // Zero is Datakit's "unset": it becomes 1 s without a warning.
    if t.interval.is_zero() {
        cfg.interval = MIN_INTERVAL;
    } else {
        cfg.interval = p.clamp("interval", t.interval, MIN_INTERVAL, MAX_INTERVAL);
        if cfg.interval != t.interval {
            cfg.interval_clamped_from = Some(t.interval);
        }
    }
    // Datakit flushes at `len >= buffer_size`, so zero or less flushes every point.
    cfg.buffer_size = usize::try_from(t.buffer_size).unwrap_or(1).max(1);
    cfg.read_buffer_size = t.read_buffer_size;
    cfg.rules = t
        .metric_mapper
        .mappings
        .into_iter()
        .map(|r| RuleConfig {
            match_text: r.match_text,
            match_type: r.match_type,
            name: r.name,
            measurement_name: r.measurement_name,
            labels: r.labels.into_iter().collect(),
            action_type: r.action_type,
            match_metric_type: r.match_metric_type,
        })
        .collect();
    cfg.tags = t.tags.into_iter().collect();
    match Mapper::new(&cfg.rules) {
        Ok(m) => Some((cfg, m)),
        Err(found) => {
            for rp in found {
                let key = format!("metric_mapper.mappings[{}].{}", rp.index, rp.key);
                // A key that failed to decode is also reported by the mapper (as missing).
                if !p.has(&key) {
                    p.error(key, rp.message);
                }
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use dk_worker::testing::keys;

    use super::*;

    #[test]
    fn applies_datakit_defaults_when_keys_are_absent() {
        let (cfg, mapper) = parse("").expect("empty instance is valid");
        assert_eq!(cfg, GraphiteConfig::default());
        assert_eq!(cfg.address, ":9109");
        assert_eq!(cfg.buffer_size, 100);
        assert_eq!(cfg.interval, Duration::from_secs(1));
        assert!(!cfg.strict_match);
        assert!(mapper.is_empty());
    }

    #[test]
    fn listens_on_tcp_and_udp_at_the_same_address() {
        let (cfg, _) = parse("address = \"127.0.0.1:2003\"").unwrap();
        assert_eq!(
            cfg.listeners(),
            vec![
                ListenSpec::new("tcp://127.0.0.1:2003", ListenerKind::Tcp),
                ListenSpec::new("udp://127.0.0.1:2003", ListenerKind::Udp),
            ]
        );
    }

    #[test]
    fn decodes_every_key_including_the_doc_mapping_example() {
        let (cfg, mapper) = parse(
            r#"
            address = ":2003"
            strict_match = true
            interval = "10s"
            buffer_size = 500
            read_buffer_size = 8388608
            [metric_mapper]
              name = "test"
              cache_size = 1000
              [[metric_mapper.mappings]]
              match = "test.dispatcher.*.*.*"
              name = "dispatcher_events_total"
              measurement_name = "dispatcher_test"
              observer_type = "histogram"
              [metric_mapper.mappings.labels]
                action = "$2"
                job = "test_dispatcher"
              [[metric_mapper.mappings]]
              match = '''servers\.(.*)\.networking'''
              match_type = "regex"
              name = "net"
              action_type = "drop"
            [tags]
              team = "ops"
            "#,
        )
        .unwrap();
        assert_eq!(cfg.address, ":2003");
        assert!(cfg.strict_match);
        assert_eq!(cfg.interval, Duration::from_secs(10));
        assert_eq!(cfg.buffer_size, 500);
        assert_eq!(cfg.read_buffer_size, 8_388_608);
        assert_eq!(cfg.tags, vec![("team".into(), "ops".into())]);
        assert_eq!(cfg.rules.len(), 2);
        assert_eq!(
            cfg.rules[0].measurement_name.as_deref(),
            Some("dispatcher_test")
        );
        assert_eq!(
            cfg.rules[0].labels,
            vec![
                ("action".into(), "$2".into()),
                ("job".into(), "test_dispatcher".into())
            ]
        );
        assert_eq!(cfg.rules[1].action_type.as_deref(), Some("drop"));
        let m = mapper.map("test.dispatcher.a.b.c").unwrap();
        assert_eq!(m.measurement, "dispatcher_test");
    }

    #[test]
    fn honours_strict_match_under_metric_mapper_as_the_doc_shows() {
        let (cfg, _) = parse("[metric_mapper]\nstrict_match = true").unwrap();
        assert!(cfg.strict_match);
    }

    #[test]
    fn clamps_the_interval_and_remembers_what_was_configured() {
        let (cfg, _) = parse("interval = \"10m\"").unwrap();
        assert_eq!(cfg.interval, MAX_INTERVAL);
        assert_eq!(cfg.interval_clamped_from, Some(Duration::from_secs(600)));
        let (cfg, _) = parse("interval = \"100ms\"").unwrap();
        assert_eq!(cfg.interval, MIN_INTERVAL);
        assert!(cfg.interval_clamped_from.is_some());
        let (cfg, _) = parse("interval = \"0s\"").unwrap();
        assert_eq!(
            (cfg.interval, cfg.interval_clamped_from),
            (MIN_INTERVAL, None)
        );
    }

    #[test]
    fn a_buffer_size_of_zero_or_less_flushes_every_point() {
        assert_eq!(parse("buffer_size = 0").unwrap().0.buffer_size, 1);
        assert_eq!(parse("buffer_size = -5").unwrap().0.buffer_size, 1);
    }

    #[test]
    fn validate_lists_every_problem() {
        let problems = parse(
            r#"
            address = "udp://:9109"
            strict_match = "yes"
            interval = "soon"
            buffer_size = "big"
            [metric_mapper]
              [[metric_mapper.mappings]]
              name = "n"
              [[metric_mapper.mappings]]
              match = "a.*"
              name = 5
              [metric_mapper.mappings.labels]
                x = "1"
                count = 2
            [tags]
              n = 1
            "#,
        )
        .unwrap_err();
        let mut got = keys(&problems);
        got.sort_unstable();
        assert_eq!(
            got,
            vec![
                "address",
                "buffer_size",
                "interval",
                "metric_mapper.mappings[0].match",
                "metric_mapper.mappings[1].labels.count",
                "metric_mapper.mappings[1].labels.x",
                "metric_mapper.mappings[1].name",
                "strict_match",
                "tags.n",
            ]
        );
        let address = problems.iter().find(|p| p.key == "address");
        assert!(
            address.is_some_and(|p| p.message.contains("no tcp:// or udp://")),
            "{address:?}"
        );
    }

    #[test]
    fn a_typo_warns_with_the_closest_key_at_every_depth() {
        let d = decode(
            "adress = \":2003\"\n[metric_mapper]\nstrict_mach = true\n[[metric_mapper.mappings]]\nmatch = \"a.*\"\nname = \"x\"\nmeasurment_name = \"m\"\nobserver_type = \"histogram\"\n",
        );
        let warned: Vec<(String, String)> = d
            .problems
            .0
            .iter()
            .map(|p| (p.key.clone(), p.message.clone()))
            .collect();
        let want = |k: &str, m: &str| {
            (
                k.to_string(),
                format!("unknown key, ignored (the default applies): did you mean `{m}`?"),
            )
        };
        assert_eq!(
            warned,
            vec![
                want("adress", "address"),
                want(
                    "metric_mapper.mappings[0].measurment_name",
                    "measurement_name"
                ),
                want("metric_mapper.strict_mach", "strict_match"),
            ]
        );
        let (cfg, _) = d.value.expect("warnings only");
        assert_eq!(cfg.address, DEFAULT_ADDRESS);
    }

    #[test]
    fn bare_number_intervals_are_seconds_and_a_fraction_is_dropped_as_in_datakit() {
        let d = decode("interval = 5");
        assert_eq!(
            d.value.as_ref().map(|(c, _)| c.interval),
            Some(Duration::from_secs(5))
        );
        assert_eq!(d.problems.0.len(), 1);
        assert!(d.problems.0[0].is_warning());
        let d = decode("interval = 2.5");
        assert_eq!(
            d.value.as_ref().map(|(c, _)| c.interval),
            Some(Duration::from_secs(2))
        );
        assert!(
            d.problems.0[0]
                .message
                .contains("write interval = \"2.5s\""),
            "{:?}",
            d.problems
        );
    }

    #[test]
    fn every_key_of_the_sample_with_its_examples_uncommented_is_known() {
        let sample =
            dk_worker::testing::uncommented(include_str!("../../../conf.d/graphite/graphite.conf"));
        for table in dk_worker::testing::instances(&sample, "graphite") {
            assert_eq!(decode(&table).into_problems(), Vec::new());
        }
    }

    #[test]
    fn checks_each_address_form() {
        for ok in [
            ":9109",
            "0.0.0.0:9109",
            "localhost:2003",
            "[::1]:2003",
            "[::]:1",
        ] {
            assert_eq!(check_address(ok), Ok(()), "{ok}");
        }
        for bad in [
            "9109",
            ":0",
            ":65536",
            ":http",
            "::1:2003",
            "[::1]",
            "[nothex]:1",
            "tcp://:9109",
            "a b:1",
            ":+1",
        ] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
    }
}
