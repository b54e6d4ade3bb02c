//! Decoding and checking one `[[inputs.socket]]` instance: pure functions from TOML text to settings.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use dk_worker::ConfigProblem;
use dk_worker::config::{Decoded, Problems};
use serde::Deserialize;

/// Datakit's defaults and limits for the socket input.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// Shortest interval Datakit allows; shorter ones are raised to it.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);
/// Longest interval Datakit allows; longer ones are lowered to it.
pub const MAX_INTERVAL: Duration = Duration::from_secs(60);
/// Default `tcp_timeout` and `udp_timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The transport a `dest_url` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// `tcp://`: a TCP connect test.
    Tcp,
    /// `udp://`: a UDP reachability test.
    Udp,
}

impl Proto {
    /// The scheme, measurement name and `proto` tag value.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One checked `dest_url`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The URL as configured (trimmed), used to name the target in errors.
    pub url: String,
    /// Transport.
    pub proto: Proto,
    /// Host name or IP literal, without IPv6 brackets (the `dest_host` tag).
    pub host: String,
    /// Port number.
    pub port: u16,
    /// The port as written (the `dest_port` tag, as Datakit reports it).
    pub port_text: String,
}

/// Why a `dest_url` is not usable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// No `scheme://`.
    #[error("no scheme")]
    MissingScheme,
    /// A scheme other than `tcp` or `udp`.
    #[error("unknown scheme {0:?} (only tcp and udp are supported)")]
    UnknownScheme(String),
    /// `user@` in the authority.
    #[error("user info is not allowed")]
    UserInfo,
    /// Nothing before the port.
    #[error("the host is empty")]
    EmptyHost,
    /// An unbracketed IPv6 address or stray characters.
    #[error("the host {0:?} is not valid (write IPv6 addresses in brackets: [::1])")]
    BadHost(String),
    /// No `:port`.
    #[error("the port is missing")]
    MissingPort,
    /// The port is not a number.
    #[error("the port {0:?} is not a number")]
    PortNotNumber(String),
    /// The port is 0 or above 65535.
    #[error("the port {0} is out of range 1-65535")]
    PortOutOfRange(String),
}

/// Parses one `dest_url` (`tcp://host:port`, `udp://[v6]:port`); a path, query or fragment
/// after the port is ignored, as Datakit ignores it.
///
/// # Errors
/// The first [`UrlError`] found.
pub fn parse_dest_url(text: &str) -> Result<Target, UrlError> {
    let url = text.trim();
    let (scheme, rest) = url.split_once("://").ok_or(UrlError::MissingScheme)?;
    let proto = match scheme.to_ascii_lowercase().as_str() {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        "" => return Err(UrlError::MissingScheme),
        _ => return Err(UrlError::UnknownScheme(scheme.to_string())),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(UrlError::UserInfo);
    }
    let (host, port) = split_host_port(authority)?;
    if host.is_empty() {
        return Err(UrlError::EmptyHost);
    }
    if host
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '[' | ']' | '\\' | '"'))
    {
        return Err(UrlError::BadHost(host.to_string()));
    }
    let port_text = port.ok_or(UrlError::MissingPort)?;
    if port_text.is_empty() {
        return Err(UrlError::MissingPort);
    }
    if !port_text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UrlError::PortNotNumber(port_text.to_string()));
    }
    let port = port_text
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| UrlError::PortOutOfRange(port_text.to_string()))?;
    Ok(Target {
        url: url.to_string(),
        proto,
        host: host.to_string(),
        port,
        port_text: port_text.to_string(),
    })
}

/// Splits `host:port` / `[v6]:port` / `host`; the port is `None` when there is no colon.
fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), UrlError> {
    if let Some(inner) = authority.strip_prefix('[') {
        let (host, after) = inner
            .split_once(']')
            .ok_or_else(|| UrlError::BadHost(authority.to_string()))?;
        let addr_part = host.split('%').next().unwrap_or_default();
        if addr_part.parse::<Ipv6Addr>().is_err() {
            return Err(UrlError::BadHost(host.to_string()));
        }
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(UrlError::BadHost(authority.to_string())),
            },
        };
    }
    match authority.rsplit_once(':') {
        Some((host, _)) if host.contains(':') => Err(UrlError::BadHost(host.to_string())),
        Some((host, port)) => Ok((host, Some(port))),
        None => Ok((authority, None)),
    }
}

/// Whether Datakit leaves out the `host` tag for this destination (it does for `localhost`
/// and loopback addresses, so such probes keep the agent's own host tag).
pub fn is_local_destination(host: &str) -> bool {
    if host == "localhost" {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

/// One instance's settings, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct SocketConfig {
    /// The destinations, in configured order.
    pub targets: Vec<Target>,
    /// Collection interval as configured (see [`clamp_interval`]).
    pub interval: Duration,
    /// Budget for DNS plus connect of a TCP probe.
    pub tcp_timeout: Duration,
    /// Budget for DNS plus probing of a UDP probe.
    pub udp_timeout: Duration,
    /// Election-aware (paused while this node is not the leader).
    pub election: bool,
    /// `[inputs.socket.tags]`, in key order.
    pub tags: Vec<(String, String)>,
}

impl Default for SocketConfig {
    fn default() -> Self {
        SocketConfig {
            targets: Vec::new(),
            interval: DEFAULT_INTERVAL,
            tcp_timeout: DEFAULT_TIMEOUT,
            udp_timeout: DEFAULT_TIMEOUT,
            election: true,
            tags: Vec::new(),
        }
    }
}

/// An interval moved into Datakit's 10 s–60 s range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clamped {
    /// As configured.
    pub configured: Duration,
    /// As used.
    pub used: Duration,
}

impl fmt::Display for Clamped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "interval {} is outside 10s-60s; using {}",
            dk_proto::duration::format(self.configured),
            dk_proto::duration::format(self.used)
        )
    }
}

/// Clamps an interval into 10 s–60 s as Datakit does; `Err` carries the change to log.
///
/// # Errors
/// [`Clamped`] when the interval was moved (not a failure: the caller logs it and goes on).
pub fn clamp_interval(interval: Duration) -> Result<Duration, Clamped> {
    let used = interval.clamp(MIN_INTERVAL, MAX_INTERVAL);
    if used == interval {
        Ok(used)
    } else {
        Err(Clamped {
            configured: interval,
            used,
        })
    }
}

const URL_FIX: &str = "write it as \"tcp://host:port\" or \"udp://host:port\" with a port 1-65535";

/// `[[inputs.socket]]` as written: Datakit's keys and defaults, read by the runtime's
/// collector; [`decode`] checks it. Datakit declares the durations as `datakit.Duration`: a
/// bare number is seconds.
#[derive(Debug, Deserialize)]
#[serde(default)]
struct SocketToml {
    dest_url: Vec<String>,
    #[serde(with = "dk_worker::config::seconds")]
    interval: Duration,
    #[serde(with = "dk_worker::config::seconds")]
    tcp_timeout: Duration,
    #[serde(with = "dk_worker::config::seconds")]
    udp_timeout: Duration,
    election: bool,
    tags: BTreeMap<String, String>,
}

impl Default for SocketToml {
    fn default() -> Self {
        SocketToml {
            dest_url: Vec::new(),
            interval: DEFAULT_INTERVAL,
            tcp_timeout: DEFAULT_TIMEOUT,
            udp_timeout: DEFAULT_TIMEOUT,
            election: true,
            tags: BTreeMap::new(),
        }
    }
}

/// Decodes and checks one instance (its TOML table as text): every error and warning at once.
pub fn decode(toml_text: &str) -> Decoded<SocketConfig> {
    dk_worker::config::decode::<SocketToml>(toml_text).map(check)
}

/// [`decode`] without the warnings.
///
/// # Errors
/// Every error found, each naming its key and a fix.
pub fn parse(toml_text: &str) -> Result<SocketConfig, Vec<ConfigProblem>> {
    decode(toml_text).into_result()
}

fn check(t: SocketToml, p: &mut Problems) -> SocketConfig {
    let mut targets = Vec::with_capacity(t.dest_url.len());
    for (i, url) in t.dest_url.iter().enumerate() {
        match parse_dest_url(url) {
            Ok(target) => targets.push(target),
            Err(e) => p.error(format!("dest_url[{i}]"), format!("{url:?}: {e}; {URL_FIX}")),
        }
    }
    for (key, d) in [
        ("tcp_timeout", t.tcp_timeout),
        ("udp_timeout", t.udp_timeout),
    ] {
        if d.is_zero() && !p.has(key) {
            p.error(key, "must be greater than 0; write e.g. \"10s\"");
        }
    }
    // The input clamps the interval; say so at load.
    p.clamp("interval", t.interval, MIN_INTERVAL, MAX_INTERVAL);
    SocketConfig {
        targets,
        interval: t.interval,
        tcp_timeout: t.tcp_timeout,
        udp_timeout: t.udp_timeout,
        election: t.election,
        tags: t.tags.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use dk_worker::testing::keys;

    use super::*;

    #[test]
    fn parses_tcp_udp_and_bracketed_ipv6_urls() {
        let t = parse_dest_url("tcp://www.example.com:443").expect("valid");
        assert_eq!(
            (t.proto, t.host.as_str(), t.port),
            (Proto::Tcp, "www.example.com", 443)
        );
        let u = parse_dest_url(" UDP://[::1]:53/ignored?x#y ").expect("valid");
        assert_eq!((u.proto, u.host.as_str(), u.port), (Proto::Udp, "::1", 53));
        assert_eq!(u.url, "UDP://[::1]:53/ignored?x#y");
    }

    #[test]
    fn keeps_the_port_as_written_for_the_tag() {
        let t = parse_dest_url("tcp://h:080").expect("valid");
        assert_eq!((t.port, t.port_text.as_str()), (80, "080"));
    }

    #[test]
    fn rejects_each_kind_of_bad_url() {
        let cases = [
            ("host:80", UrlError::MissingScheme),
            ("http://h:80", UrlError::UnknownScheme("http".into())),
            ("tcp4://h:80", UrlError::UnknownScheme("tcp4".into())),
            ("tcp://h", UrlError::MissingPort),
            ("tcp://h:", UrlError::MissingPort),
            ("tcp://[::1]", UrlError::MissingPort),
            ("tcp://:80", UrlError::EmptyHost),
            ("tcp://h:http", UrlError::PortNotNumber("http".into())),
            ("tcp://h:0", UrlError::PortOutOfRange("0".into())),
            ("tcp://h:65536", UrlError::PortOutOfRange("65536".into())),
            ("tcp://::1:80", UrlError::BadHost("::1".into())),
            ("tcp://[nothex]:80", UrlError::BadHost("nothex".into())),
            ("tcp://u@h:80", UrlError::UserInfo),
            ("tcp://a b:80", UrlError::BadHost("a b".into())),
        ];
        for (url, want) in cases {
            assert_eq!(parse_dest_url(url), Err(want), "{url}");
        }
    }

    #[test]
    fn applies_datakit_defaults_when_keys_are_absent() {
        let cfg = parse("").expect("empty instance is valid");
        assert_eq!(cfg, SocketConfig::default());
        assert_eq!(cfg.interval, Duration::from_secs(30));
        assert_eq!(cfg.tcp_timeout, Duration::from_secs(10));
        assert_eq!(cfg.udp_timeout, Duration::from_secs(10));
        assert!(cfg.election);
    }

    #[test]
    fn decodes_every_key() {
        let cfg = parse(
            r#"
            dest_url = ["tcp://10.0.0.1:22", "udp://dns.local:53"]
            interval = "15s"
            tcp_timeout = "3s"
            udp_timeout = 2
            election = false
            [tags]
            b = "2"
            a = "1"
            "#,
        )
        .expect("valid");
        assert_eq!(cfg.targets.len(), 2);
        assert_eq!(cfg.interval, Duration::from_secs(15));
        assert_eq!(cfg.tcp_timeout, Duration::from_secs(3));
        assert_eq!(cfg.udp_timeout, Duration::from_secs(2));
        assert!(!cfg.election);
        assert_eq!(
            cfg.tags,
            vec![
                ("a".to_string(), "1".to_string()),
                ("b".to_string(), "2".to_string())
            ]
        );
    }

    #[test]
    fn reports_every_problem_at_once_with_its_key() {
        let problems = parse(
            r#"
            dest_url = ["tcp://ok:1", "ftp://h:21", "tcp://h", 5, "udp://h:70000", "udp://:9"]
            interval = "soon"
            tcp_timeout = "0s"
            udp_timeout = true
            election = "yes"
            [tags]
            ok = "x"
            n = 1
            "#,
        )
        .expect_err("invalid");
        let mut got = keys(&problems);
        got.sort_unstable();
        assert_eq!(
            got,
            vec![
                "dest_url[1]",
                "dest_url[2]",
                "dest_url[3]",
                "dest_url[4]",
                "dest_url[5]",
                "election",
                "interval",
                "tags.n",
                "tcp_timeout",
                "udp_timeout",
            ]
        );
        let message = |key: &str| {
            problems
                .iter()
                .find(|p| p.key == key)
                .map_or(String::new(), |p| p.message.clone())
        };
        assert!(message("dest_url[1]").contains("unknown scheme \"ftp\""));
        assert!(message("dest_url[2]").contains("port is missing"));
        assert!(message("dest_url[3]").contains("expected a string"));
        assert!(message("dest_url[4]").contains("out of range"));
        assert!(message("dest_url[5]").contains("host is empty"));
        assert!(
            problems
                .iter()
                .all(|p| p.message.contains("write") || p.message.contains("quote")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_typo_and_a_bare_number_warn_and_the_instance_still_runs() {
        let d = decode("dest_urls = [\"tcp://h:1\"]\ninterval = 20\n");
        let problems = d.problems.clone().into_vec();
        assert!(
            problems.iter().all(ConfigProblem::is_warning),
            "{problems:?}"
        );
        let mut got = keys(&problems);
        got.sort_unstable();
        assert_eq!(got, vec!["dest_urls", "interval"]);
        assert!(
            problems
                .iter()
                .any(|p| p.message.ends_with("did you mean `dest_url`?"))
        );
        let cfg = d.into_result().expect("warnings only");
        assert_eq!(cfg.interval, Duration::from_secs(20));
        assert!(cfg.targets.is_empty());
    }

    #[test]
    fn rejects_a_single_string_for_dest_url() {
        let problems = parse(r#"dest_url = "tcp://h:1""#).expect_err("invalid");
        assert_eq!(keys(&problems), vec!["dest_url"]);
        assert!(problems[0].message.contains("expected an array"));
    }

    #[test]
    fn reports_toml_syntax_errors() {
        let problems = parse("dest_url = [").expect_err("invalid");
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn clamps_the_interval_into_ten_to_sixty_seconds() {
        assert_eq!(
            clamp_interval(Duration::from_secs(30)),
            Ok(Duration::from_secs(30))
        );
        let low = clamp_interval(Duration::from_secs(1)).expect_err("clamped");
        assert_eq!(low.used, Duration::from_secs(10));
        let high = clamp_interval(Duration::from_secs(600)).expect_err("clamped");
        assert_eq!(high.used, Duration::from_secs(60));
        assert_eq!(
            high.to_string(),
            "interval 10m0s is outside 10s-60s; using 1m0s"
        );
    }

    #[test]
    fn treats_localhost_and_loopback_as_local() {
        for host in [
            "localhost",
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_local_destination(host), "{host}");
        }
        for host in [
            "LOCALHOST",
            "10.0.0.1",
            "::2",
            "example.com",
            "localhost.localdomain",
        ] {
            assert!(!is_local_destination(host), "{host}");
        }
    }
}
