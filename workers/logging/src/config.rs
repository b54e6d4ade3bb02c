//! Decoding and checking one `[[inputs.logging]]` instance: pure functions from TOML text to
//! settings, listing every problem at once.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use dk_worker::ConfigProblem;
use dk_worker::config::{Decoded, Problems};
use serde::Deserialize;

use crate::charset::Charset;
use crate::multiline::{AUTO_PATTERNS, StartPatterns};

/// The `source` (and measurement name) when none is configured.
pub const DEFAULT_SOURCE: &str = "default";

/// Transport of a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// `tcp`, `tcp4`, `tcp6`.
    Tcp,
    /// `udp`, `udp4`, `udp6`.
    Udp,
}

impl Proto {
    /// `tcp` or `udp` (metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One checked entry of `sockets`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketSpec {
    /// The address exactly as configured (the key of the inherited socket).
    pub address: String,
    /// Transport.
    pub proto: Proto,
    /// Host to bind (empty: every interface), without IPv6 brackets.
    pub host: String,
    /// Port.
    pub port: u16,
}

/// Why a `sockets` entry is not usable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SocketError {
    /// No `scheme://`.
    #[error("no scheme")]
    MissingScheme,
    /// A scheme other than tcp/udp and their 4/6 variants.
    #[error("unknown scheme {0:?} (use tcp, tcp4, tcp6, udp, udp4 or udp6)")]
    UnknownScheme(String),
    /// The host is not an IP literal or a host name.
    #[error("the host {0:?} is not valid (write IPv6 addresses in brackets: [::1])")]
    BadHost(String),
    /// No `:port`.
    #[error("the port is missing")]
    MissingPort,
    /// The port is not a number in 1-65535.
    #[error("the port {0:?} is not a number in 1-65535")]
    BadPort(String),
    /// Something after the port.
    #[error("unexpected {0:?} after the port")]
    Trailing(String),
}

const SOCKET_FIX: &str = "write e.g. \"tcp://0.0.0.0:9530\" or \"udp://0.0.0.0:9531\"";

/// Parses one `sockets` entry: `tcp://host:port`, `udp://[v6]:port`, `tcp://:port` (every
/// interface).
///
/// # Errors
/// The first [`SocketError`] found.
pub fn parse_socket(text: &str) -> Result<SocketSpec, SocketError> {
    let (scheme, rest) = text.split_once("://").ok_or(SocketError::MissingScheme)?;
    let proto = match scheme.to_ascii_lowercase().as_str() {
        "tcp" | "tcp4" | "tcp6" => Proto::Tcp,
        "udp" | "udp4" | "udp6" => Proto::Udp,
        "" => return Err(SocketError::MissingScheme),
        _ => return Err(SocketError::UnknownScheme(scheme.to_string())),
    };
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (host, after) = inner
            .split_once(']')
            .ok_or_else(|| SocketError::BadHost(rest.to_string()))?;
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(SocketError::BadHost(host.to_string()));
        }
        let port = after.strip_prefix(':').ok_or(SocketError::MissingPort)?;
        (host, port)
    } else {
        let (host, port) = rest.rsplit_once(':').ok_or(SocketError::MissingPort)?;
        if !valid_host(host) {
            return Err(SocketError::BadHost(host.to_string()));
        }
        (host, port)
    };
    let digits_end = port
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(port.len());
    if digits_end < port.len() {
        if digits_end == 0 {
            return Err(SocketError::BadPort(port.to_string()));
        }
        return Err(SocketError::Trailing(port[digits_end..].to_string()));
    }
    if port.is_empty() {
        return Err(SocketError::MissingPort);
    }
    let port_num = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| SocketError::BadPort(port.to_string()))?;
    Ok(SocketSpec {
        address: text.to_string(),
        proto,
        host: host.to_string(),
        port: port_num,
    })
}

/// An empty host (every interface), an IPv4 literal or a DNS name.
fn valid_host(host: &str) -> bool {
    if host.is_empty() || host.parse::<Ipv4Addr>().is_ok() {
        return true;
    }
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// One instance's settings, checked.
#[derive(Clone, Debug, Default)]
pub struct LoggingConfig {
    /// Listening sockets, in configured order.
    pub sockets: Vec<SocketSpec>,
    /// `source`: the measurement name (default `default`).
    pub source: String,
    /// `service` tag (default: the source).
    pub service: String,
    /// `pipeline` (or the deprecated `pipeline_path`): accepted, not run.
    pub pipeline: String,
    /// `storage_index`: accepted, not applied.
    pub storage_index: String,
    /// `character_encoding`.
    pub charset: Charset,
    /// `remove_ansi_escape_codes`.
    pub strip_ansi: bool,
    /// `multiline_match` (or the deprecated `match`).
    pub multiline_match: String,
    /// `auto_multiline_detection`.
    pub auto_multiline: bool,
    /// `auto_multiline_extra_patterns`.
    pub auto_extra_patterns: Vec<String>,
    /// The compiled multi-line start patterns in effect.
    pub patterns: StartPatterns,
    /// `ignore_status`.
    pub ignore_status: Vec<String>,
    /// `[tags]`, in key order.
    pub tags: Vec<(String, String)>,
    /// `logfiles`: file tailing is not served; listed to warn about it.
    pub logfiles: Vec<String>,
}

impl LoggingConfig {
    /// What the operator should know about this instance (keys accepted but not applied).
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if !self.logfiles.is_empty() {
            w.push(format!(
                "logfiles: file tailing is not supported by this agent yet; the {} file pattern(s) are ignored (sockets still work)",
                self.logfiles.len()
            ));
        }
        if self.sockets.is_empty() {
            w.push("sockets is empty: this instance receives nothing; add sockets = [\"tcp://0.0.0.0:9530\"]".to_string());
        }
        if !self.pipeline.is_empty() {
            w.push(format!(
                "pipeline {:?}: Pipeline scripts are not run by this agent yet; lines are kept as received with status \"info\"",
                self.pipeline
            ));
        }
        if !self.storage_index.is_empty() {
            w.push(format!(
                "storage_index {:?}: not applied yet; the logs go to the default index",
                self.storage_index
            ));
        }
        w
    }
}

/// `[[inputs.logging]]` as written: Datakit's keys and defaults, read by the runtime's
/// collector; [`decode`] checks it. File-tailing keys are type-checked as Datakit decodes them
/// and otherwise unused.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LoggingToml {
    sockets: Vec<String>,
    source: String,
    service: String,
    pipeline: String,
    storage_index: String,
    character_encoding: String,
    remove_ansi_escape_codes: bool,
    multiline_match: String,
    auto_multiline_detection: bool,
    auto_multiline_extra_patterns: Vec<String>,
    ignore_status: Vec<String>,
    tags: BTreeMap<String, String>,
    logfiles: Vec<String>,
    // Deprecated spellings Datakit still reads.
    pipeline_path: String,
    #[serde(rename = "match")]
    old_match: String,
    // File tailing: accepted, unused.
    ignore: Vec<String>,
    field_white_list: Vec<String>,
    ignore_dead_log: String,
    mode: String,
    from_beginning: bool,
    blocking_mode: bool,
    enable_diskcache: bool,
    max_open_files: i64,
    maximum_length: i64,
    file_from_beginning_threshold_size: Option<toml::Value>,
    docker_mode: Option<toml::Value>,
    max_force_flush_limit: Option<toml::Value>,
}

/// Decodes and checks one instance: every error and warning at once.
pub fn decode(toml_text: &str) -> Decoded<LoggingConfig> {
    dk_worker::config::decode::<LoggingToml>(toml_text).map(check)
}

/// [`decode`] without the warnings.
///
/// # Errors
/// Every error found, each naming its key and a fix.
pub fn parse(toml_text: &str) -> Result<LoggingConfig, Vec<ConfigProblem>> {
    decode(toml_text).into_result()
}

fn check(t: LoggingToml, p: &mut Problems) -> LoggingConfig {
    let mut cfg = LoggingConfig {
        source: t.source,
        service: t.service,
        pipeline: t.pipeline,
        storage_index: t.storage_index,
        strip_ansi: t.remove_ansi_escape_codes,
        multiline_match: t.multiline_match,
        auto_multiline: t.auto_multiline_detection,
        auto_extra_patterns: t.auto_multiline_extra_patterns,
        ignore_status: t.ignore_status,
        tags: t.tags.into_iter().collect(),
        logfiles: t.logfiles,
        ..LoggingConfig::default()
    };
    if cfg.pipeline.is_empty() && !t.pipeline_path.is_empty() {
        cfg.pipeline = t
            .pipeline_path
            .rsplit(['/', '\\'])
            .next()
            .unwrap_or_default()
            .to_string();
    }
    if cfg.multiline_match.is_empty() {
        cfg.multiline_match = t.old_match;
    }
    if cfg.source.is_empty() {
        cfg.source = DEFAULT_SOURCE.to_string();
    }
    if cfg.service.is_empty() {
        cfg.service = cfg.source.clone();
    }
    if !t.character_encoding.is_empty() {
        match Charset::parse(&t.character_encoding) {
            Ok(c) => cfg.charset = c,
            Err(e) => p.error("character_encoding", e.to_string()),
        }
    }
    for (i, s) in t.sockets.iter().enumerate() {
        let key = format!("sockets[{i}]");
        match parse_socket(s) {
            Ok(spec) => {
                if let Some(j) = cfg.sockets.iter().position(|o| {
                    o.proto == spec.proto && o.port == spec.port && o.host == spec.host
                }) {
                    p.error(
                        key,
                        format!("{s:?} repeats socket {j}; list every socket once"),
                    );
                } else {
                    cfg.sockets.push(spec);
                }
            }
            Err(e) => p.error(key, format!("{s:?}: {e}; {SOCKET_FIX}")),
        }
    }
    // Which start patterns apply, as Datakit picks them.
    let (patterns, key): (Vec<String>, &str) = if !cfg.multiline_match.is_empty() {
        (vec![cfg.multiline_match.clone()], "multiline_match")
    } else if cfg.auto_multiline {
        let mut patterns = cfg.auto_extra_patterns.clone();
        patterns.extend(AUTO_PATTERNS.iter().map(|s| s.to_string()));
        (patterns, "auto_multiline_extra_patterns")
    } else {
        (Vec::new(), "")
    };
    match StartPatterns::new(&patterns) {
        Ok(compiled) => cfg.patterns = compiled,
        Err(e) => {
            let key = if key == "multiline_match" {
                key.to_string()
            } else {
                format!("{key}[{}]", e.index)
            };
            p.error(
                key,
                format!(
                    "{:?} is not a valid regular expression ({}); fix the pattern (Go RE2 syntax, e.g. '''^\\d{{4}}-\\d{{2}}-\\d{{2}}''')",
                    e.pattern, e.reason
                ),
            );
        }
    }
    cfg
}

#[cfg(test)]
mod tests {
    use dk_worker::testing::keys;

    use super::*;

    #[test]
    fn parses_every_socket_form() {
        let t = parse_socket("tcp://0.0.0.0:9530").unwrap();
        assert_eq!(
            (t.proto, t.host.as_str(), t.port),
            (Proto::Tcp, "0.0.0.0", 9530)
        );
        let u = parse_socket("UDP6://[::1]:9531").unwrap();
        assert_eq!(
            (u.proto, u.host.as_str(), u.port),
            (Proto::Udp, "::1", 9531)
        );
        assert_eq!(u.address, "UDP6://[::1]:9531");
        let any = parse_socket("tcp4://:9530").unwrap();
        assert_eq!(any.host, "");
        assert_eq!(parse_socket("udp://localhost:1").unwrap().host, "localhost");
    }

    #[test]
    fn rejects_each_kind_of_bad_socket() {
        for (text, want) in [
            ("0.0.0.0:9530", SocketError::MissingScheme),
            ("://h:1", SocketError::MissingScheme),
            ("http://h:80", SocketError::UnknownScheme("http".into())),
            ("unix:///tmp/x", SocketError::UnknownScheme("unix".into())),
            ("tcp://h", SocketError::MissingPort),
            ("tcp://[::1]", SocketError::MissingPort),
            ("tcp://h:", SocketError::MissingPort),
            ("tcp://h:0", SocketError::BadPort("0".into())),
            ("tcp://h:70000", SocketError::BadPort("70000".into())),
            ("tcp://h:x1", SocketError::BadPort("x1".into())),
            ("tcp://h:1/path", SocketError::Trailing("/path".into())),
            ("tcp://::1:9", SocketError::BadHost("::1".into())),
            ("tcp://[zz]:9", SocketError::BadHost("zz".into())),
            ("tcp://a b:9", SocketError::BadHost("a b".into())),
        ] {
            assert_eq!(parse_socket(text), Err(want), "{text}");
        }
    }

    #[test]
    fn applies_datakit_defaults() {
        let cfg = parse("").unwrap();
        assert_eq!(cfg.source, "default");
        assert_eq!(cfg.service, "default");
        assert!(cfg.sockets.is_empty());
        assert!(cfg.patterns.is_empty());
        assert_eq!(cfg.charset, Charset::None);
        let cfg = parse("source = \"nginx\"").unwrap();
        assert_eq!(
            (cfg.source.as_str(), cfg.service.as_str()),
            ("nginx", "nginx")
        );
    }

    #[test]
    fn decodes_every_socket_key() {
        let cfg = parse(
            r#"
            sockets = ["tcp://0.0.0.0:9530", "udp://127.0.0.1:9531"]
            source = "app"
            service = "svc"
            character_encoding = "gbk"
            remove_ansi_escape_codes = true
            multiline_match = '''^\d{4}'''
            ignore_status = ["debug"]
            [tags]
            env = "prod"
            "#,
        )
        .unwrap();
        assert_eq!(cfg.sockets.len(), 2);
        assert_eq!(cfg.sockets[1].proto, Proto::Udp);
        assert_eq!((cfg.source.as_str(), cfg.service.as_str()), ("app", "svc"));
        assert_eq!(cfg.charset, Charset::Gbk);
        assert!(cfg.strip_ansi);
        assert!(!cfg.patterns.is_empty());
        assert_eq!(cfg.ignore_status, vec!["debug"]);
        assert_eq!(cfg.tags, vec![("env".to_string(), "prod".to_string())]);
        assert!(cfg.warnings().is_empty());
    }

    #[test]
    fn auto_detection_uses_time_stamp_patterns_unless_a_match_is_given() {
        let cfg = parse("auto_multiline_detection = true").unwrap();
        assert!(!cfg.patterns.is_empty());
        let cfg = parse("auto_multiline_detection = false").unwrap();
        assert!(cfg.patterns.is_empty());
    }

    #[test]
    fn reads_the_deprecated_spellings() {
        let cfg = parse("pipeline_path = \"/usr/local/datakit/pipeline/nginx.p\"\nmatch = \"^x\"")
            .unwrap();
        assert_eq!(cfg.pipeline, "nginx.p");
        assert_eq!(cfg.multiline_match, "^x");
    }

    #[test]
    fn file_tailing_keys_are_accepted_with_a_warning() {
        let cfg = parse(
            r#"
            logfiles = ["/var/log/*.log"]
            ignore = ["*.tmp"]
            from_beginning = true
            ignore_dead_log = "1h"
            max_open_files = 500
            pipeline = "x.p"
            storage_index = "idx"
            "#,
        )
        .unwrap();
        let w = cfg.warnings();
        assert_eq!(w.len(), 4, "{w:?}");
        assert!(w[0].starts_with("logfiles:"));
        assert!(w[1].starts_with("sockets is empty"));
        assert!(w[2].starts_with("pipeline"));
        assert!(w[3].starts_with("storage_index"));
    }

    #[test]
    fn lists_every_problem_with_its_key() {
        let problems = parse(
            r#"
            sockets = ["tcp://:9530", "ftp://h:21", "udp://h:0", "tcp://0.0.0.0", "tcp://:9530"]
            source = 1
            character_encoding = "latin1"
            remove_ansi_escape_codes = "yes"
            multiline_match = "(unclosed"
            ignore_status = ["info", 3]
            logfiles = "/var/log/x"
            [tags]
            ok = "x"
            n = 1
            "#,
        )
        .unwrap_err();
        let mut got = keys(&problems);
        got.sort_unstable();
        assert_eq!(
            got,
            vec![
                "character_encoding",
                "ignore_status[1]",
                "logfiles",
                "multiline_match",
                "remove_ansi_escape_codes",
                "sockets[1]",
                "sockets[2]",
                "sockets[3]",
                "sockets[4]",
                "source",
                "tags.n",
            ]
        );
        let message = |key: &str| {
            problems
                .iter()
                .find(|p| p.key == key)
                .map_or(String::new(), |p| p.message.clone())
        };
        assert!(message("character_encoding").contains("latin1"));
        assert!(message("sockets[1]").contains("unknown scheme \"ftp\""));
        assert!(message("sockets[4]").contains("repeats socket 0"));
        assert!(message("multiline_match").contains("(unclosed"));
    }

    #[test]
    fn a_typo_warns_with_the_closest_key() {
        let problems = decode("socket = [\"tcp://:9530\"]\nsource = \"app\"\n").into_problems();
        assert_eq!(
            problems,
            vec![ConfigProblem::warning(
                "socket",
                "unknown key, ignored (the default applies): did you mean `sockets`?"
            )]
        );
    }

    #[test]
    fn names_the_bad_auto_pattern() {
        let problems = parse(
            "auto_multiline_detection = true\nauto_multiline_extra_patterns = [\"ok\", \"[\"]",
        )
        .unwrap_err();
        assert_eq!(keys(&problems), vec!["auto_multiline_extra_patterns[1]"]);
    }

    #[test]
    fn rejects_a_single_string_for_sockets() {
        let problems = parse("sockets = \"tcp://:1\"").unwrap_err();
        assert_eq!(keys(&problems), vec!["sockets"]);
    }
}
