//! Decoding and checking one `[[inputs.cat]]` instance: Datakit's keys and defaults (note the
//! upper-case `MatchTransactionTypes`), every problem at once.

use std::collections::BTreeMap;

use dk_proto::rpc::ListenerKind;
use dk_worker::config::{Decoded, Problems};
use dk_worker::{ConfigProblem, ListenSpec};
use serde::{Deserialize, Serialize};

/// Datakit's default `tcp_port`.
pub const DEFAULT_PORT: u16 = 2280;

/// The client settings served on `GET /cat/s/router`, in Datakit's order and spelling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kvs {
    /// `startTransactionTypes`.
    #[serde(rename = "startTransactionTypes")]
    pub start_transaction_types: String,
    /// `block`.
    pub block: String,
    /// `routers`.
    pub routers: String,
    /// `sample`.
    pub sample: String,
    /// `MatchTransactionTypes` (served as `matchTransactionTypes`).
    #[serde(rename = "matchTransactionTypes")]
    pub match_transaction_types: String,
}

impl Kvs {
    /// The body of `GET /cat/s/router`: `{"kvs":{…}}`.
    pub fn router_body(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Body<'a> {
            kvs: &'a Kvs,
        }
        serde_json::to_vec(&Body { kvs: self }).unwrap_or_default()
    }
}

/// One instance's settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatConfig {
    /// The TCP port NT1 clients send to.
    pub port: u16,
    /// What CAT clients fetch from the router route.
    pub kvs: Kvs,
    /// `[inputs.cat.tags]`, added to every span.
    pub tags: Vec<(String, String)>,
}

impl CatConfig {
    /// The listening address.
    pub fn listen(&self) -> String {
        format!("tcp://0.0.0.0:{}", self.port)
    }

    /// The socket of the instance.
    pub fn listeners(&self) -> Vec<ListenSpec> {
        vec![ListenSpec::new(self.listen(), ListenerKind::Tcp)]
    }
}

/// `tcp_port`: Datakit writes a string, a number is taken too.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PortValue {
    Text(String),
    Number(i64),
}

/// `[[inputs.cat]]` as written.
#[derive(Debug, Deserialize)]
#[serde(default)]
struct CatToml {
    tcp_port: PortValue,
    decode: String,
    #[serde(rename = "startTransactionTypes")]
    start_transaction_types: String,
    #[serde(rename = "MatchTransactionTypes")]
    match_transaction_types: String,
    block: String,
    routers: String,
    sample: String,
    tags: BTreeMap<String, String>,
}

impl Default for CatToml {
    fn default() -> Self {
        CatToml {
            tcp_port: PortValue::Text(DEFAULT_PORT.to_string()),
            decode: "native".to_string(),
            start_transaction_types: String::new(),
            match_transaction_types: String::new(),
            block: String::new(),
            routers: String::new(),
            sample: String::new(),
            tags: BTreeMap::new(),
        }
    }
}

/// Decodes and checks one instance: every error and warning.
pub fn decode(toml_text: &str) -> Decoded<CatConfig> {
    dk_worker::config::decode::<CatToml>(toml_text).map(check)
}

/// [`decode`] without the warnings.
///
/// # Errors
/// Every error, each naming its key and a fix.
pub fn parse(toml_text: &str) -> Result<CatConfig, Vec<ConfigProblem>> {
    decode(toml_text).into_result()
}

fn or(value: String, default: &str) -> String {
    if value.is_empty() {
        default.to_string()
    } else {
        value
    }
}

fn check(t: CatToml, p: &mut Problems) -> CatConfig {
    let raw = match &t.tcp_port {
        PortValue::Text(s) => s.trim().to_string(),
        PortValue::Number(n) => n.to_string(),
    };
    let port = match raw.parse::<u16>() {
        Ok(n) if n > 0 => n,
        _ => {
            p.error(
                "tcp_port",
                format!("{raw:?} is not a port from 1 to 65535; write e.g. tcp_port = \"2280\""),
            );
            DEFAULT_PORT
        }
    };
    if !matches!(t.decode.as_str(), "" | "native") {
        p.warn(
            "decode",
            format!(
                "{:?} is not supported: only \"native\" (NT1) is read; set the CAT client's encoding to native",
                t.decode
            ),
        );
    }
    CatConfig {
        port,
        kvs: Kvs {
            start_transaction_types: or(t.start_transaction_types, "Cache.;Squirrel."),
            block: or(t.block, "false"),
            routers: or(t.routers, "127.0.0.1:2280;"),
            sample: or(t.sample, "1.0"),
            match_transaction_types: or(t.match_transaction_types, "SQL"),
        },
        tags: t.tags.into_iter().collect(),
    }
}

/// The sockets an instance listens on; empty when `tcp_port` is bad.
pub fn listeners(toml_text: &str) -> Vec<ListenSpec> {
    let d = decode(toml_text);
    if d.problems.has("") || d.problems.has("tcp_port") {
        return Vec::new();
    }
    d.value.listeners()
}

#[cfg(test)]
mod tests {
    use dk_worker::testing::keys;

    use super::*;

    #[test]
    fn applies_datakit_defaults_and_serves_them_as_the_router_kvs() {
        let cfg = parse("").unwrap();
        assert_eq!(cfg.listen(), "tcp://0.0.0.0:2280");
        assert_eq!(
            String::from_utf8(cfg.kvs.router_body()).unwrap(),
            r#"{"kvs":{"startTransactionTypes":"Cache.;Squirrel.","block":"false","routers":"127.0.0.1:2280;","sample":"1.0","matchTransactionTypes":"SQL"}}"#
        );
    }

    #[test]
    fn reads_every_key_with_datakits_spelling() {
        let cfg = parse(
            "tcp_port = 2281\nMatchTransactionTypes = \"SQL;RPC\"\nrouters = \"10.0.0.1:2281;\"\nsample = \"0.5\"\nblock = \"true\"\nstartTransactionTypes = \"Cache.\"\n[tags]\nenv = \"prod\"\n",
        )
        .unwrap();
        assert_eq!(cfg.port, 2281);
        assert_eq!(cfg.kvs.match_transaction_types, "SQL;RPC");
        assert_eq!(cfg.kvs.routers, "10.0.0.1:2281;");
        assert_eq!(cfg.kvs.sample, "0.5");
        assert_eq!(cfg.kvs.block, "true");
        assert_eq!(cfg.kvs.start_transaction_types, "Cache.");
        assert_eq!(cfg.tags, vec![("env".into(), "prod".into())]);
        assert_eq!(parse("tcp_port = \"2282\"").unwrap().port, 2282);
    }

    #[test]
    fn a_bad_port_is_an_error_claiming_no_socket_and_plaintext_is_warned() {
        let problems = parse("tcp_port = \"x\"").unwrap_err();
        assert_eq!(keys(&problems), vec!["tcp_port"]);
        assert!(listeners("tcp_port = 0").is_empty());
        assert_eq!(listeners("").len(), 1);
        assert_eq!(
            keys(&decode("decode = \"plaintext\"").into_problems()),
            vec!["decode"]
        );
    }
}
