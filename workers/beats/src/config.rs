//! Decoding and checking one `[[inputs.beats_output]]` instance: Datakit's keys and
//! defaults, every problem at once.

use std::collections::BTreeMap;

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
}
