//! Decoding and checking `[inputs.logfwdserver]`: Datakit's keys and defaults, every
//! problem at once.

use std::collections::BTreeMap;

use dk_proto::rpc::ListenerKind;
use dk_worker::config::{Decoded, Problems};
use dk_worker::{ConfigProblem, ListenSpec};
use serde::Deserialize;

/// Datakit's default `address`.
pub const DEFAULT_ADDRESS: &str = "0.0.0.0:9533";

/// The instance's settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogfwdConfig {
    /// `host:port` the WebSocket server listens on.
    pub address: String,
    /// `[inputs.logfwdserver.tags]`: fill the tags a message lacks.
    pub tags: Vec<(String, String)>,
}

impl LogfwdConfig {
    /// The listening address with its scheme.
    pub fn listen(&self) -> String {
        format!("tcp://{}", self.address)
    }

    /// The socket of the instance.
    pub fn listeners(&self) -> Vec<ListenSpec> {
        vec![ListenSpec::new(self.listen(), ListenerKind::Tcp)]
    }
}

/// `[inputs.logfwdserver]` as written.
#[derive(Debug, Deserialize)]
#[serde(default)]
struct LogfwdToml {
    address: String,
    tags: BTreeMap<String, String>,
}

impl Default for LogfwdToml {
    fn default() -> Self {
        LogfwdToml {
            address: DEFAULT_ADDRESS.to_string(),
            tags: BTreeMap::new(),
        }
    }
}

/// Decodes and checks the instance: every error and warning.
pub fn decode(toml_text: &str) -> Decoded<LogfwdConfig> {
    dk_worker::config::decode::<LogfwdToml>(toml_text).map(check)
}

/// [`decode`] without the warnings.
///
/// # Errors
/// Every error, each naming its key and a fix.
pub fn parse(toml_text: &str) -> Result<LogfwdConfig, Vec<ConfigProblem>> {
    decode(toml_text).into_result()
}

fn check(t: LogfwdToml, p: &mut Problems) -> LogfwdConfig {
    let raw = t.address.trim();
    let ok = match raw.rsplit_once(':') {
        Some((host, port)) => {
            !host.contains(['/', ' ', '@']) && port.parse::<u16>().is_ok_and(|n| n > 0)
        }
        None => false,
    };
    let address = if ok {
        raw.to_string()
    } else {
        p.error(
            "address",
            format!("{raw:?} is not host:port; write e.g. address = \"0.0.0.0:9533\" (IPv6 as \"[::]:9533\")"),
        );
        DEFAULT_ADDRESS.to_string()
    };
    LogfwdConfig {
        address,
        tags: t.tags.into_iter().collect(),
    }
}

/// The sockets the instance listens on; empty when `address` is bad.
pub fn listeners(toml_text: &str) -> Vec<ListenSpec> {
    let d = decode(toml_text);
    if d.problems.has("") || d.problems.has("address") {
        return Vec::new();
    }
    d.value.listeners()
}

#[cfg(test)]
mod tests {
    use dk_worker::testing::keys;

    use super::*;

    #[test]
    fn applies_datakits_default_address_and_reads_the_tags() {
        let cfg = parse("").unwrap();
        assert_eq!(cfg.listen(), "tcp://0.0.0.0:9533");
        let cfg = parse("address = \"127.0.0.1:19533\"\n[tags]\nenv = \"k8s\"\n").unwrap();
        assert_eq!(cfg.listen(), "tcp://127.0.0.1:19533");
        assert_eq!(cfg.tags, vec![("env".into(), "k8s".into())]);
    }

    #[test]
    fn a_bad_address_is_an_error_claiming_no_socket() {
        for bad in [":0", "9533", "tcp://0.0.0.0:9533", "host:port"] {
            let problems = parse(&format!("address = \"{bad}\"")).unwrap_err();
            assert_eq!(keys(&problems), vec!["address"], "{bad}");
        }
        assert!(listeners("address = \"x\"").is_empty());
        assert_eq!(listeners("").len(), 1);
    }
}
