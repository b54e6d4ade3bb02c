//! Decoding and checking one `[[inputs.beats_output]]` instance: Datakit's keys and
//! defaults, every problem at once.

use std::collections::BTreeMap;
use std::time::Duration;

use dk_proto::rpc::ListenerKind;
use dk_worker::config::{Decoded, Problems};
use dk_worker::{ConfigProblem, ListenSpec};
use serde::Deserialize;

use crate::frame::DEFAULT_MAX_EVENT;
use crate::mapping::Mapping;

/// Datakit's default `listen`.
pub const DEFAULT_LISTEN: &str = "tcp://0.0.0.0:5044";
/// Datakit's default `source`.
pub const DEFAULT_SOURCE: &str = "default";
/// Default `tls_handshake_timeout`.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS on the listener (`tls_cert_file` and `tls_key_file`, our addition to Datakit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// PEM certificate chain, the server's certificate first.
    pub cert_file: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// Longest time a client may take to complete its handshake.
    pub handshake_timeout: Duration,
}

/// One instance's settings, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct BeatsConfig {
    /// `listen` with the scheme `tcp://` (`tcp4`/`tcp6` are written as `tcp`).
    pub listen: String,
    /// The measurement and the tags of every point.
    pub mapping: Mapping,
    /// `pipeline`: accepted, not run (no Pipeline engine yet).
    pub pipeline: String,
    /// `storage_index`: part of the feed name.
    pub storage_index: String,
    /// `maximum_length`: longest event kept, in bytes.
    pub maximum_length: usize,
    /// TLS, when `tls_cert_file` and `tls_key_file` are set.
    pub tls: Option<Tls>,
}

impl BeatsConfig {
    /// The feed name: `beats_output/<source>[/<storage_index>]`, as Datakit names it.
    pub fn feed(&self) -> String {
        if self.storage_index.is_empty() {
            format!("beats_output/{}", self.mapping.source)
        } else {
            format!(
                "beats_output/{}/{}",
                self.mapping.source, self.storage_index
            )
        }
    }

    /// The socket of the instance.
    pub fn listeners(&self) -> Vec<ListenSpec> {
        vec![ListenSpec::new(self.listen.clone(), ListenerKind::Tcp)]
    }
}

/// `[[inputs.beats_output]]` as written.
#[derive(Debug, Deserialize)]
#[serde(default)]
struct BeatsToml {
    listen: String,
    source: String,
    service: String,
    pipeline: String,
    storage_index: String,
    maximum_length: i64,
    tls_cert_file: String,
    tls_key_file: String,
    #[serde(with = "dk_worker::config::seconds")]
    tls_handshake_timeout: Duration,
    tags: BTreeMap<String, String>,
}

impl Default for BeatsToml {
    fn default() -> Self {
        BeatsToml {
            listen: DEFAULT_LISTEN.to_string(),
            source: String::new(),
            service: String::new(),
            pipeline: String::new(),
            storage_index: String::new(),
            maximum_length: DEFAULT_MAX_EVENT as i64,
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
            tls_handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            tags: BTreeMap::new(),
        }
    }
}

const LISTEN_FIX: &str =
    "write tcp://host:port (e.g. \"tcp://0.0.0.0:5044\"; IPv6 as \"tcp://[::1]:5044\")";

/// `listen` normalised to `tcp://host:port`.
///
/// # Errors
/// What is wrong, with the fix.
pub fn check_listen(listen: &str) -> Result<String, String> {
    let Some((scheme, address)) = listen.split_once("://") else {
        return Err(format!("{listen:?} has no scheme; {LISTEN_FIX}"));
    };
    if !matches!(scheme, "tcp" | "tcp4" | "tcp6") {
        return Err(format!(
            "the scheme {scheme:?} is not tcp, tcp4 or tcp6; {LISTEN_FIX}"
        ));
    }
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
pub fn decode(toml_text: &str) -> Decoded<BeatsConfig> {
    dk_worker::config::decode::<BeatsToml>(toml_text).map(check)
}

/// [`decode`] without the warnings.
///
/// # Errors
/// Every error, each naming its key and a fix.
pub fn parse(toml_text: &str) -> Result<BeatsConfig, Vec<ConfigProblem>> {
    decode(toml_text).into_result()
}

fn check(t: BeatsToml, p: &mut Problems) -> BeatsConfig {
    let listen = match check_listen(t.listen.trim()) {
        Ok(l) => l,
        Err(e) => {
            p.error("listen", e);
            DEFAULT_LISTEN.to_string()
        }
    };
    let source = match t.source.trim() {
        "" => DEFAULT_SOURCE.to_string(),
        s => s.to_string(),
    };
    let service = match t.service.trim() {
        "" => source.clone(),
        s => s.to_string(),
    };
    let maximum_length = match usize::try_from(t.maximum_length) {
        Ok(n) if n > 0 => n,
        _ => {
            p.error(
                "maximum_length",
                format!(
                    "{} is not a positive number of bytes; remove it for the default {DEFAULT_MAX_EVENT}",
                    t.maximum_length
                ),
            );
            DEFAULT_MAX_EVENT
        }
    };
    let (cert, key) = (t.tls_cert_file.trim(), t.tls_key_file.trim());
    let tls = match (cert.is_empty(), key.is_empty()) {
        (true, true) => None,
        (false, false) => Some(Tls {
            cert_file: cert.to_string(),
            key_file: key.to_string(),
            handshake_timeout: p.clamp(
                "tls_handshake_timeout",
                t.tls_handshake_timeout,
                Duration::from_millis(100),
                Duration::from_secs(300),
            ),
        }),
        (true, false) => {
            p.error(
                "tls_cert_file",
                "tls_key_file is set without tls_cert_file; set both (PEM files) for TLS, or neither",
            );
            None
        }
        (false, true) => {
            p.error(
                "tls_key_file",
                "tls_cert_file is set without tls_key_file; set both (PEM files) for TLS, or neither",
            );
            None
        }
    };
    if !t.pipeline.is_empty() {
        p.warn(
            "pipeline",
            "Pipeline scripts are not run by this agent yet; events are stored as received",
        );
    }
    BeatsConfig {
        listen,
        mapping: Mapping {
            source,
            service,
            tags: t.tags.into_iter().collect(),
        },
        pipeline: t.pipeline,
        storage_index: t.storage_index,
        maximum_length,
        tls,
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
    fn applies_datakit_defaults_when_keys_are_absent() {
        let cfg = parse("").unwrap();
        assert_eq!(cfg.listen, "tcp://0.0.0.0:5044");
        assert_eq!(cfg.mapping.source, "default");
        assert_eq!(cfg.mapping.service, "default", "service defaults to source");
        assert_eq!(cfg.maximum_length, 262_144);
        assert_eq!(cfg.feed(), "beats_output/default");
    }

    #[test]
    fn reads_every_key_and_names_the_feed_with_the_storage_index() {
        let cfg = parse(
            "listen = \"tcp4://127.0.0.1:5045\"\nsource = \"filebeat\"\nstorage_index = \"idx\"\nmaximum_length = 1024\n[tags]\nenv = \"prod\"\n",
        )
        .unwrap();
        assert_eq!(cfg.listen, "tcp://127.0.0.1:5045");
        assert_eq!(cfg.mapping.service, "filebeat");
        assert_eq!(cfg.mapping.tags, vec![("env".into(), "prod".into())]);
        assert_eq!(cfg.feed(), "beats_output/filebeat/idx");
        assert_eq!(cfg.maximum_length, 1024);
    }

    #[test]
    fn lists_every_bad_key_and_claims_no_socket_for_a_bad_listen() {
        let problems = parse("listen = \"udp://:5044\"\nmaximum_length = -1\n").unwrap_err();
        assert_eq!(keys(&problems), vec!["listen", "maximum_length"]);
        assert!(listeners("listen = \":5044\"").is_empty());
        assert_eq!(listeners("").len(), 1);
        let warned = decode("pipeline = \"x.p\"").into_problems();
        assert_eq!(keys(&warned), vec!["pipeline"]);
    }

    #[test]
    fn tls_needs_both_files_and_takes_a_handshake_timeout() {
        assert_eq!(parse("").unwrap().tls, None);
        let cfg = parse(
            "tls_cert_file = \"/etc/c.pem\"\ntls_key_file = \"/etc/k.pem\"\ntls_handshake_timeout = \"3s\"\n",
        )
        .unwrap();
        assert_eq!(
            cfg.tls,
            Some(Tls {
                cert_file: "/etc/c.pem".into(),
                key_file: "/etc/k.pem".into(),
                handshake_timeout: Duration::from_secs(3),
            })
        );
        let defaulted = parse("tls_cert_file = \"c\"\ntls_key_file = \"k\"\n").unwrap();
        assert_eq!(
            defaulted.tls.map(|t| t.handshake_timeout),
            Some(DEFAULT_HANDSHAKE_TIMEOUT)
        );
        let problems = parse("tls_cert_file = \"c\"").unwrap_err();
        assert_eq!(keys(&problems), vec!["tls_key_file"]);
        let problems = parse("tls_key_file = \"k\"").unwrap_err();
        assert_eq!(keys(&problems), vec!["tls_cert_file"]);
    }
}
