//! Decoding and checking one `[[inputs.pyroscope]]` instance: Datakit's keys and defaults,
//! plus `listen` (Pyroscope's own port, which Datakit 1.84 does not open).

use std::collections::BTreeMap;

use dk_proto::rpc::ListenerKind;
use dk_worker::config::{Decoded, Problems};
use dk_worker::{ConfigProblem, ListenSpec};
use serde::Deserialize;

use crate::ingest::MAX_BODY_BYTES;

/// Datakit's default `endpoints`.
pub const DEFAULT_ENDPOINT: &str = "/ingest";
/// Default `listen`: Pyroscope's server port.
pub const DEFAULT_LISTEN: &str = "tcp://0.0.0.0:4040";
/// Datakit's default `body_size_limit_mb`.
pub const DEFAULT_BODY_LIMIT_MB: i64 = 32;

/// One instance's settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PyroscopeConfig {
    /// Paths served on the API port (9529) and on `listen`.
    pub endpoints: Vec<String>,
    /// `tcp://host:port` of the own HTTP listener; `None` when `listen = ""`.
    pub listen: Option<String>,
    /// `election`: feed with the election tags instead of the host tags.
    pub election: bool,
    /// Largest body accepted, bytes: `body_size_limit_mb`, capped at [`MAX_BODY_BYTES`].
    pub body_limit: usize,
    /// `[tags]`: added to every profile (they win over the upload's).
    pub tags: BTreeMap<String, String>,
}

/// `[io_config]` as written: Datakit's own upload queue; accepted, unused (profiles go
/// through the agent's durable queue and the Dataway sink).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
#[allow(dead_code)]
struct IoConfigToml {
    cache_path: String,
    cache_capacity_mb: i64,
    clear_cache_on_start: bool,
    upload_workers: i64,
    send_timeout: String,
    send_retry_count: i64,
    filter_rules: Vec<String>,
}

/// `[[inputs.pyroscope]]` as written.
#[derive(Debug, Deserialize)]
#[serde(default)]
struct PyroscopeToml {
    endpoints: Vec<String>,
    listen: String,
    election: bool,
    body_size_limit_mb: Option<i64>,
    generate_metrics: bool,
    io_config: Option<IoConfigToml>,
    tags: BTreeMap<String, String>,
}

impl Default for PyroscopeToml {
    fn default() -> Self {
        PyroscopeToml {
            endpoints: vec![DEFAULT_ENDPOINT.to_string()],
            listen: DEFAULT_LISTEN.to_string(),
            election: true,
            body_size_limit_mb: None,
            generate_metrics: true,
            io_config: None,
            tags: BTreeMap::new(),
        }
    }
}

const LISTEN_FIX: &str =
    "write tcp://host:port (e.g. \"tcp://0.0.0.0:4040\"), or \"\" to serve only on the API port";

/// `listen` normalised to `tcp://host:port` (a bare `host:port` is accepted).
///
/// # Errors
/// What is wrong, with the fix.
pub fn check_listen(listen: &str) -> Result<String, String> {
    let address = match listen.split_once("://") {
        Some(("tcp" | "tcp4" | "tcp6" | "http", a)) => a,
        Some((scheme, _)) => {
            return Err(format!("the scheme {scheme:?} is not tcp; {LISTEN_FIX}"));
        }
        None => listen,
    };
    let port = match address.rsplit_once(':') {
        Some((host, port)) if !host.contains(['/', '@', ' ']) => port,
        _ => return Err(format!("{listen:?} has no host:port; {LISTEN_FIX}")),
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(format!("tcp://{address}")),
        _ => Err(format!(
            "the port {port:?} is not a number from 1 to 65535; {LISTEN_FIX}"
        )),
    }
}

/// Decodes and checks one instance: every error and warning.
pub fn decode(toml_text: &str) -> Decoded<PyroscopeConfig> {
    dk_worker::config::decode::<PyroscopeToml>(toml_text).map(check)
}

/// [`decode`] without the warnings.
///
/// # Errors
/// Every error, each naming its key and a fix.
pub fn parse(toml_text: &str) -> Result<PyroscopeConfig, Vec<ConfigProblem>> {
    decode(toml_text).into_result()
}

fn check(t: PyroscopeToml, p: &mut Problems) -> PyroscopeConfig {
    let listen = match t.listen.trim() {
        "" => None,
        l => match check_listen(l) {
            Ok(l) => Some(l),
            Err(e) => {
                p.error("listen", e);
                None
            }
        },
    };
    let mut endpoints = Vec::new();
    for e in &t.endpoints {
        let e = e.trim();
        if !e.starts_with('/') || e.contains(['?', '#', ' ']) {
            p.error(
                "endpoints",
                format!("{e:?} is not a URL path; write paths such as \"/ingest\""),
            );
        } else if !endpoints.iter().any(|x| x == e) {
            endpoints.push(e.to_string());
        }
    }
    // Absent: Datakit's 32 MiB, capped silently; written: a value over the cap is warned.
    let written = t.body_size_limit_mb;
    let mb_value = written.unwrap_or(DEFAULT_BODY_LIMIT_MB);
    let body_limit = match usize::try_from(mb_value) {
        Ok(mb) if mb > 0 => {
            let bytes = mb.saturating_mul(1 << 20);
            if bytes > MAX_BODY_BYTES && written.is_some() {
                p.warn(
                    "body_size_limit_mb",
                    format!(
                        "{mb} MiB is above what one profile may weigh in this agent; uploads over {} MiB are refused with 400",
                        MAX_BODY_BYTES >> 20
                    ),
                );
            }
            bytes.min(MAX_BODY_BYTES)
        }
        _ => {
            p.error(
                "body_size_limit_mb",
                format!(
                    "{} is not a positive number of MiB; remove it for the default {DEFAULT_BODY_LIMIT_MB}",
                    mb_value
                ),
            );
            MAX_BODY_BYTES
        }
    };
    let _ = t.generate_metrics;
    if t.io_config.is_some() {
        p.warn(
            "io_config",
            "profiles go through the agent's durable queue and [dataway]; io_config is ignored",
        );
    }
    PyroscopeConfig {
        endpoints,
        listen,
        election: t.election,
        body_limit,
        tags: t.tags,
    }
}

impl PyroscopeConfig {
    /// The instance's own HTTP socket, if any.
    pub fn listeners(&self) -> Vec<ListenSpec> {
        self.listen
            .iter()
            .map(|l| ListenSpec::new(l.clone(), ListenerKind::Tcp))
            .collect()
    }
}

/// The sockets an instance listens on; empty when `listen` is bad.
pub fn listeners(toml_text: &str) -> Vec<ListenSpec> {
    let d = decode(toml_text);
    if d.problems.has("") || d.problems.has("listen") {
        return Vec::new();
    }
    d.value.listeners()
}

#[cfg(test)]
mod tests {
    use dk_worker::testing::keys;

    use super::*;

    #[test]
    fn applies_datakit_defaults_and_caps_the_body_at_what_a_point_can_carry() {
        let cfg = parse("").unwrap();
        assert_eq!(cfg.endpoints, vec!["/ingest"]);
        assert_eq!(cfg.listen.as_deref(), Some("tcp://0.0.0.0:4040"));
        assert!(cfg.election);
        assert_eq!(cfg.body_limit, MAX_BODY_BYTES);
        assert_eq!(keys(&decode("").into_problems()), Vec::<String>::new());
        assert_eq!(
            keys(&decode("body_size_limit_mb = 32").into_problems()),
            vec!["body_size_limit_mb"],
            "32 MiB is warned about"
        );
        assert_eq!(parse("body_size_limit_mb = 1").unwrap().body_limit, 1 << 20);
    }

    #[test]
    fn reads_every_key_and_an_empty_listen_serves_only_the_api_port() {
        let cfg = parse(
            "endpoints = [\"/ingest\", \"/pyroscope/ingest\", \"/ingest\"]\nlisten = \"\"\nelection = false\n[tags]\nteam = \"a\"\n",
        )
        .unwrap();
        assert_eq!(cfg.endpoints, vec!["/ingest", "/pyroscope/ingest"]);
        assert_eq!(cfg.listen, None);
        assert!(cfg.listeners().is_empty());
        assert!(!cfg.election);
        assert_eq!(cfg.tags["team"], "a");
        assert_eq!(
            parse("listen = \"127.0.0.1:4041\"")
                .unwrap()
                .listen
                .as_deref(),
            Some("tcp://127.0.0.1:4041")
        );
        let warned = decode("[io_config]\nupload_workers = 8\n").into_problems();
        assert_eq!(keys(&warned), vec!["io_config"]);
    }

    #[test]
    fn lists_every_bad_key_and_claims_no_socket_for_a_bad_listen() {
        let problems =
            parse("listen = \"udp://:4040\"\nendpoints = [\"ingest\"]\nbody_size_limit_mb = 0\n")
                .unwrap_err();
        assert_eq!(
            keys(&problems),
            vec!["listen", "endpoints", "body_size_limit_mb"]
        );
        assert!(listeners("listen = \":x\"").is_empty());
        assert_eq!(listeners("").len(), 1);
    }
}
