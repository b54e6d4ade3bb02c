//! Decoding and checking one `[[inputs.graphite]]` instance: pure functions from TOML text to
//! settings and compiled mapping rules, reporting every problem at once.

use std::net::Ipv6Addr;
use std::time::Duration;

use dk_proto::rpc::ListenerKind;
use dk_worker::{ConfigProblem, ListenSpec};

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

/// Decodes and checks one instance (its TOML table as text) and compiles its mapping rules.
/// Unknown keys are ignored, as Datakit ignores them (statsd_exporter keys Datakit does not
/// use, such as `observer_type` or `ttl`, included).
///
/// # Errors
/// Every [`ConfigProblem`] found, each naming its key and a fix.
pub fn parse(toml_text: &str) -> Result<(GraphiteConfig, Mapper), Vec<ConfigProblem>> {
    let table: toml::Table = dk_worker::parse_instance(toml_text).map_err(|p| vec![p])?;
    let mut cfg = GraphiteConfig::default();
    let mut problems = Vec::new();

    if let Some(v) = table.get("address") {
        match v {
            toml::Value::String(s) => {
                let s = s.trim();
                match check_address(s) {
                    Ok(()) => cfg.address = s.to_string(),
                    Err(e) => problems.push(ConfigProblem::new("address", e)),
                }
            }
            other => problems.push(ConfigProblem::new(
                "address",
                format!(
                    "expected a string, found {}; {ADDRESS_FIX}",
                    other.type_str()
                ),
            )),
        }
    }

    if let Some(b) = bool_key(&table, "strict_match", &mut problems) {
        cfg.strict_match = b;
    }

    if let Some(v) = table.get("interval") {
        match duration_value("interval", v) {
            Ok(d) => {
                let used = d.clamp(MIN_INTERVAL, MAX_INTERVAL);
                // Zero is Datakit's "unset": it becomes 1 s without a warning.
                if used != d && !d.is_zero() {
                    cfg.interval_clamped_from = Some(d);
                }
                cfg.interval = used;
            }
            Err(p) => problems.push(p),
        }
    }

    match table.get("buffer_size") {
        None => {}
        // Datakit flushes at `len >= buffer_size`, so zero or less flushes every point.
        Some(toml::Value::Integer(n)) => {
            cfg.buffer_size = usize::try_from(*n).unwrap_or(1).max(1);
        }
        Some(other) => problems.push(ConfigProblem::new(
            "buffer_size",
            format!(
                "expected an integer, found {}; write e.g. buffer_size = 100",
                other.type_str()
            ),
        )),
    }

    match table.get("read_buffer_size") {
        None => {}
        Some(toml::Value::Integer(n)) if *n >= 0 => {
            cfg.read_buffer_size = usize::try_from(*n).unwrap_or(usize::MAX);
        }
        Some(other) => problems.push(ConfigProblem::new(
            "read_buffer_size",
            format!(
                "expected a whole number of bytes >= 0, found {other}; write e.g. read_buffer_size = 4194304 (0 keeps the kernel default)"
            ),
        )),
    }

    match table.get("metric_mapper") {
        None => {}
        Some(toml::Value::Table(mm)) => {
            // Datakit's doc shows strict_match here; its code reads only the top-level key.
            // Both are honoured.
            if let Some(true) = bool_key(mm, "strict_match", &mut problems) {
                cfg.strict_match = true;
            }
            cfg.rules = rules(mm, &mut problems);
        }
        Some(other) => problems.push(ConfigProblem::new(
            "metric_mapper",
            format!(
                "expected a table, found {}; write [inputs.graphite.metric_mapper] with [[inputs.graphite.metric_mapper.mappings]] tables",
                other.type_str()
            ),
        )),
    }

    cfg.tags = dk_worker::config::tags("graphite", &table, &mut problems);

    let mapper = match Mapper::new(&cfg.rules) {
        Ok(m) => Some(m),
        Err(found) => {
            problems.extend(found.into_iter().map(|p| {
                ConfigProblem::new(
                    format!("metric_mapper.mappings[{}].{}", p.index, p.key),
                    p.message,
                )
            }));
            None
        }
    };
    match mapper {
        Some(m) if problems.is_empty() => Ok((cfg, m)),
        _ => {
            // A key that failed to decode is also reported by the mapper (as missing): keep
            // the first problem of each key.
            let mut seen = std::collections::HashSet::new();
            problems.retain(|p| seen.insert(p.key.clone()));
            Err(problems)
        }
    }
}

fn bool_key(table: &toml::Table, key: &str, problems: &mut Vec<ConfigProblem>) -> Option<bool> {
    match table.get(key)? {
        toml::Value::Boolean(b) => Some(*b),
        other => {
            problems.push(ConfigProblem::new(
                key,
                format!(
                    "expected true or false, found {}; write {key} = true",
                    other.type_str()
                ),
            ));
            None
        }
    }
}

/// `[[metric_mapper.mappings]]` into rule configs (the mapper checks their contents).
fn rules(mm: &toml::Table, problems: &mut Vec<ConfigProblem>) -> Vec<RuleConfig> {
    let mut out = Vec::new();
    let items = match mm.get("mappings") {
        None => return out,
        Some(toml::Value::Array(items)) => items,
        Some(other) => {
            problems.push(ConfigProblem::new(
                "metric_mapper.mappings",
                format!(
                    "expected an array of tables, found {}; write each rule as [[inputs.graphite.metric_mapper.mappings]]",
                    other.type_str()
                ),
            ));
            return out;
        }
    };
    for (i, item) in items.iter().enumerate() {
        let prefix = format!("metric_mapper.mappings[{i}]");
        let toml::Value::Table(t) = item else {
            problems.push(ConfigProblem::new(
                prefix,
                format!(
                    "expected a table, found {}; write each rule as [[inputs.graphite.metric_mapper.mappings]]",
                    item.type_str()
                ),
            ));
            continue;
        };
        let mut text = |key: &str| -> Option<String> {
            match t.get(key)? {
                toml::Value::String(s) => Some(s.clone()),
                other => {
                    problems.push(ConfigProblem::new(
                        format!("{prefix}.{key}"),
                        format!(
                            "expected a string, found {}; quote the value: {key} = \"...\"",
                            other.type_str()
                        ),
                    ));
                    None
                }
            }
        };
        let mut rule = RuleConfig {
            match_text: text("match").unwrap_or_default(),
            match_type: text("match_type"),
            name: text("name").unwrap_or_default(),
            measurement_name: text("measurement_name"),
            labels: Vec::new(),
            action_type: text("action_type"),
            match_metric_type: text("match_metric_type"),
        };
        match t.get("labels") {
            None => {}
            Some(toml::Value::Table(labels)) => {
                rule.labels = dk_worker::config::string_table(&format!("{prefix}.labels"), labels, problems);
            }
            Some(other) => problems.push(ConfigProblem::new(
                format!("{prefix}.labels"),
                format!(
                    "expected a table, found {}; write [inputs.graphite.metric_mapper.mappings.labels] with name = \"$1\" lines",
                    other.type_str()
                ),
            )),
        }
        out.push(rule);
    }
    out
}

/// A duration as Datakit's `datakit.Duration` accepts it: a Go duration string, or a number
/// of seconds.
fn duration_value(key: &str, v: &toml::Value) -> Result<Duration, ConfigProblem> {
    match v {
        toml::Value::String(s) => dk_worker::config::duration(key, s),
        toml::Value::Integer(n) if *n >= 0 => Ok(Duration::from_secs(n.unsigned_abs())),
        toml::Value::Float(f) if f.is_finite() && *f >= 0.0 => Ok(Duration::from_secs_f64(*f)),
        other => Err(ConfigProblem::new(
            key,
            format!(
                "expected a duration, found {} {other}; write e.g. {key} = \"10s\"",
                other.type_str()
            ),
        )),
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
        assert_eq!(
            keys(&problems),
            vec![
                "address",
                "strict_match",
                "interval",
                "buffer_size",
                "metric_mapper.mappings[1].name",
                "metric_mapper.mappings[1].labels.count",
                "tags.n",
                "metric_mapper.mappings[0].match",
                "metric_mapper.mappings[1].labels.x",
            ]
        );
        assert!(
            problems[0].message.contains("no tcp:// or udp://"),
            "{}",
            problems[0]
        );
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
