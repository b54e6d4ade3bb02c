//! Decoding and checking one `[[inputs.netflow]]` instance: pure functions from TOML text to
//! settings, reporting every problem at once.

use std::collections::BTreeMap;
use std::time::Duration;

use dk_proto::rpc::ListenerKind;
use dk_worker::config::{Decoded, Problems};
use dk_worker::{ConfigProblem, ListenSpec};
use serde::Deserialize;

/// Datakit's default measurement.
pub const DEFAULT_SOURCE: &str = "netflow";
/// Datakit's default `namespace`.
pub const DEFAULT_NAMESPACE: &str = "namespace";
/// Longest `namespace` Datakit accepts.
pub const MAX_NAMESPACE: usize = 100;

/// Datakit's flush tick.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(10);
/// Shortest `flush_interval`.
pub const MIN_FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Longest `flush_interval`.
pub const MAX_FLUSH_INTERVAL: Duration = Duration::from_secs(300);

/// What a listener receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerType {
    /// `netflow5`.
    Netflow5,
    /// `netflow9`.
    Netflow9,
    /// `ipfix`.
    Ipfix,
    /// `sflow5`.
    Sflow5,
}

impl ListenerType {
    /// The `flow_type` as written.
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerType::Netflow5 => "netflow5",
            ListenerType::Netflow9 => "netflow9",
            ListenerType::Ipfix => "ipfix",
            ListenerType::Sflow5 => "sflow5",
        }
    }
}

/// One `[[inputs.netflow.listeners]]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listener {
    /// `flow_type`.
    pub flow_type: ListenerType,
    /// `port` (bound on all addresses, as Datakit does).
    pub port: u16,
}

impl Listener {
    /// The UDP address declared to the supervisor.
    pub fn address(&self) -> String {
        format!("udp://0.0.0.0:{}", self.port)
    }
}

/// One instance's settings, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetflowConfig {
    /// `source`: the measurement.
    pub source: String,
    /// `namespace`, cleaned as Datakit does.
    pub namespace: String,
    /// The listeners, in file order.
    pub listeners: Vec<Listener>,
    /// `flush_interval` (not in Datakit, whose tick is a fixed 10 s).
    pub flush_interval: Duration,
    /// `read_buffer_size` (not in Datakit): SO_RCVBUF of each listener in bytes; 0 keeps the
    /// kernel default.
    pub read_buffer_size: usize,
    /// `[inputs.netflow.tags]`, in key order.
    pub tags: Vec<(String, String)>,
}

impl NetflowConfig {
    /// The sockets of the instance.
    pub fn listen_specs(&self) -> Vec<ListenSpec> {
        self.listeners
            .iter()
            .map(|l| ListenSpec::new(l.address(), ListenerKind::Udp))
            .collect()
    }
}

/// `[[inputs.netflow]]` as written: Datakit's keys and defaults.
#[derive(Debug, Deserialize)]
#[serde(default)]
struct NetflowToml {
    source: String,
    namespace: String,
    listeners: Vec<ListenerToml>,
    #[serde(with = "dk_worker::config::seconds")]
    flush_interval: Duration,
    read_buffer_size: usize,
    tags: BTreeMap<String, String>,
}

impl Default for NetflowToml {
    fn default() -> Self {
        NetflowToml {
            source: DEFAULT_SOURCE.into(),
            namespace: DEFAULT_NAMESPACE.into(),
            listeners: Vec::new(),
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            read_buffer_size: 0,
            tags: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ListenerToml {
    flow_type: String,
    port: i64,
    /// Datakit's goflow settings, accepted and unused.
    bind_host: Option<toml::Value>,
    workers: Option<toml::Value>,
}

/// Datakit's namespace rules: `\n \r \t` dropped, `<` `>` become `-`; NUL or over 100
/// characters is an error.
///
/// # Errors
/// What is wrong, with the fix.
pub fn clean_namespace(ns: &str) -> Result<String, String> {
    if ns.contains('\0') {
        return Err("namespace contains a NUL character; remove it".into());
    }
    let cleaned: String = ns
        .chars()
        .filter(|c| !matches!(c, '\n' | '\r' | '\t'))
        .map(|c| if matches!(c, '<' | '>') { '-' } else { c })
        .collect();
    if cleaned.chars().count() > MAX_NAMESPACE {
        return Err(format!(
            "namespace is longer than {MAX_NAMESPACE} characters; shorten it"
        ));
    }
    Ok(cleaned)
}

/// Decodes and checks one instance: every error and warning at once.
pub fn decode(toml_text: &str) -> Decoded<NetflowConfig> {
    dk_worker::config::decode::<NetflowToml>(toml_text).map(check)
}

/// [`decode`] without the warnings.
///
/// # Errors
/// Every error found, each naming its key and a fix.
pub fn parse(toml_text: &str) -> Result<NetflowConfig, Vec<ConfigProblem>> {
    decode(toml_text).into_result()
}

/// The sockets of an instance: its valid listeners, whatever else is wrong.
pub fn listeners(toml_text: &str) -> Vec<ListenSpec> {
    let d = decode(toml_text);
    if d.problems.has("") {
        return Vec::new();
    }
    d.value.listen_specs()
}

fn check(t: NetflowToml, p: &mut Problems) -> NetflowConfig {
    let source = if t.source.trim().is_empty() {
        DEFAULT_SOURCE.to_string()
    } else {
        t.source.trim().to_string()
    };
    let namespace = match clean_namespace(&t.namespace) {
        Ok(ns) if ns.is_empty() => DEFAULT_NAMESPACE.to_string(),
        Ok(ns) => ns,
        Err(e) => {
            p.error("namespace", e);
            DEFAULT_NAMESPACE.to_string()
        }
    };
    let mut listeners: Vec<Listener> = Vec::new();
    for (i, l) in t.listeners.iter().enumerate() {
        let key = |k: &str| format!("listeners[{i}].{k}");
        let flow_type = match l.flow_type.trim() {
            "netflow5" => Some(ListenerType::Netflow5),
            "netflow9" => Some(ListenerType::Netflow9),
            "ipfix" => Some(ListenerType::Ipfix),
            "sflow5" => Some(ListenerType::Sflow5),
            other => {
                p.error(
                    key("flow_type"),
                    format!(
                        "{other:?} is not a flow type; write netflow5, netflow9, ipfix or sflow5"
                    ),
                );
                None
            }
        };
        let port = match u16::try_from(l.port) {
            Ok(port) if port > 0 => Some(port),
            _ => {
                p.error(
                    key("port"),
                    format!(
                        "{} is not a UDP port; write a number from 1 to 65535 (Datakit's defaults: netflow9 2055, netflow5 2056, ipfix 4739, sflow5 6343)",
                        l.port
                    ),
                );
                None
            }
        };
        let (Some(flow_type), Some(port)) = (flow_type, port) else {
            continue;
        };
        if listeners.iter().any(|o| o.port == port) {
            p.error(
                key("port"),
                format!(
                    "port {port} is used by another listener of this input; give each its own port"
                ),
            );
            continue;
        }
        listeners.push(Listener { flow_type, port });
    }
    let flush_interval = p.clamp(
        "flush_interval",
        t.flush_interval,
        MIN_FLUSH_INTERVAL,
        MAX_FLUSH_INTERVAL,
    );
    NetflowConfig {
        source,
        namespace,
        listeners,
        flush_interval,
        read_buffer_size: t.read_buffer_size,
        tags: t.tags.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use dk_worker::testing::keys;

    use super::*;

    #[test]
    fn reads_listeners_and_defaults() {
        let cfg = parse(
            "namespace = \"a<b>\\tc\"\n[[listeners]]\nflow_type = \"netflow9\"\nport = 2055\n[[listeners]]\nflow_type = \"ipfix\"\nport = 4739\n[tags]\ndc = \"eu\"\n",
        )
        .unwrap_or_else(|p| panic!("{p:?}"));
        assert_eq!(cfg.source, "netflow");
        assert_eq!(cfg.namespace, "a-b-c");
        assert_eq!(
            cfg.listeners,
            vec![
                Listener {
                    flow_type: ListenerType::Netflow9,
                    port: 2055
                },
                Listener {
                    flow_type: ListenerType::Ipfix,
                    port: 4739
                },
            ]
        );
        assert_eq!(cfg.tags, vec![("dc".to_string(), "eu".to_string())]);
        assert_eq!(
            cfg.listen_specs(),
            vec![
                ListenSpec::new("udp://0.0.0.0:2055", ListenerKind::Udp),
                ListenSpec::new("udp://0.0.0.0:4739", ListenerKind::Udp),
            ]
        );
    }

    #[test]
    fn bad_flow_types_ports_and_namespaces_are_errors_naming_their_key() {
        let text = format!(
            "namespace = \"{}\"\n[[listeners]]\nflow_type = \"netflow7\"\nport = 1\n[[listeners]]\nflow_type = \"netflow5\"\nport = 0\n[[listeners]]\nflow_type = \"netflow5\"\nport = 9\n[[listeners]]\nflow_type = \"ipfix\"\nport = 9\n",
            "x".repeat(101)
        );
        let problems = parse(&text).expect_err("errors");
        assert_eq!(
            keys(&problems),
            vec![
                "namespace",
                "listeners[0].flow_type",
                "listeners[1].port",
                "listeners[3].port"
            ]
        );
        // The valid listener is still claimed.
        assert_eq!(listeners(&text).len(), 1);
    }

    #[test]
    fn an_sflow5_listener_claims_its_udp_port() {
        let d = decode("[[listeners]]\nflow_type = \"sflow5\"\nport = 6343\n");
        assert!(d.problems.0.is_empty(), "{:?}", d.problems);
        assert_eq!(
            d.value.listeners,
            vec![Listener {
                flow_type: ListenerType::Sflow5,
                port: 6343
            }]
        );
        assert_eq!(
            d.value.listen_specs(),
            vec![ListenSpec::new("udp://0.0.0.0:6343", ListenerKind::Udp)]
        );
    }
}
