//! Listen addresses and Dataway URLs: parsing, checking, and telling whether two listeners clash.

use std::path::PathBuf;

use dk_proto::rpc::ListenerKind;

/// Where a server listens: a TCP `host:port` or a Unix socket path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    /// `host:port`; `localhost` is kept as written (it means `127.0.0.1`), an empty host means all.
    Tcp {
        /// Host or IP as written, without brackets.
        host: String,
        /// Port (0 = any free port).
        port: u16,
    },
    /// An absolute Unix socket path.
    Unix(PathBuf),
}

impl ListenAddr {
    /// Parses `[http_api] listen`: `host:port`, `[v6]:port`, `:port`, or an absolute path.
    ///
    /// # Errors
    /// A message saying what form is expected.
    pub fn parse(s: &str) -> Result<ListenAddr, String> {
        let s = s.trim();
        if s.starts_with('/') {
            return Ok(ListenAddr::Unix(PathBuf::from(s)));
        }
        let (host, port) = split_host_port(s).ok_or_else(|| {
            format!(
                "{s:?} is not host:port or an absolute Unix socket path: write e.g. \"localhost:9529\", \"0.0.0.0:9529\" or \"/var/run/datakit.sock\""
            )
        })?;
        Ok(ListenAddr::Tcp { host, port })
    }

    /// The host to bind: `localhost` is `127.0.0.1`, an empty host is `0.0.0.0`.
    pub fn bind_host(&self) -> Option<&str> {
        match self {
            ListenAddr::Tcp { host, .. } if host.is_empty() => Some("0.0.0.0"),
            ListenAddr::Tcp { host, .. } if host.eq_ignore_ascii_case("localhost") => {
                Some("127.0.0.1")
            }
            ListenAddr::Tcp { host, .. } => Some(host),
            ListenAddr::Unix(_) => None,
        }
    }
}

/// Splits `host:port` / `[v6]:port` / `:port`; the port must be a number.
pub(crate) fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest.split_once("]:")?;
        (h, p)
    } else {
        let (h, p) = s.rsplit_once(':')?;
        if h.contains(':') {
            return None; // a bare IPv6 address needs brackets
        }
        (h, p)
    };
    if host.contains(|c: char| c.is_whitespace() || c == '/') {
        return None;
    }
    let port = port.parse::<u16>().ok()?;
    Some((host.to_string(), port))
}

/// A normalised socket endpoint, to find two listeners that cannot both bind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Ip {
        stream: bool,
        host: String,
        port: u16,
    },
    Unix(String),
    Other(String),
}

impl Endpoint {
    /// The endpoint a family's listener claims (`udp://0.0.0.0:8125`, `:2003`, `/run/x.sock`).
    pub(crate) fn of(address: &str, kind: ListenerKind) -> Endpoint {
        let rest = address
            .split_once("://")
            .map_or(address, |(_, rest)| rest)
            .trim();
        match kind {
            ListenerKind::UnixDatagram | ListenerKind::UnixStream => {
                Endpoint::Unix(rest.to_string())
            }
            ListenerKind::Tcp | ListenerKind::Udp => match split_host_port(rest) {
                Some((host, port)) => Endpoint::Ip {
                    stream: kind == ListenerKind::Tcp,
                    host: normal_host(&host),
                    port,
                },
                None => Endpoint::Other(address.to_string()),
            },
        }
    }

    /// The `[http_api] listen` endpoint.
    pub(crate) fn of_http(addr: &ListenAddr) -> Endpoint {
        match addr {
            ListenAddr::Tcp { host, port } => Endpoint::Ip {
                stream: true,
                host: normal_host(host),
                port: *port,
            },
            ListenAddr::Unix(p) => Endpoint::Unix(p.to_string_lossy().into_owned()),
        }
    }

    /// Whether both cannot be bound at once.
    pub(crate) fn clashes(&self, other: &Endpoint) -> bool {
        match (self, other) {
            (
                Endpoint::Ip {
                    stream: s1,
                    host: h1,
                    port: p1,
                },
                Endpoint::Ip {
                    stream: s2,
                    host: h2,
                    port: p2,
                },
            ) => s1 == s2 && p1 == p2 && *p1 != 0 && (h1 == h2 || h1.is_empty() || h2.is_empty()),
            (Endpoint::Unix(a), Endpoint::Unix(b)) => a == b,
            (Endpoint::Other(a), Endpoint::Other(b)) => a == b,
            _ => false,
        }
    }
}

/// Wildcards become "", `localhost` becomes `127.0.0.1`.
fn normal_host(host: &str) -> String {
    match host {
        "" | "0.0.0.0" | "::" | "*" => String::new(),
        h if h.eq_ignore_ascii_case("localhost") => "127.0.0.1".to_string(),
        h => h.to_ascii_lowercase(),
    }
}

/// The parts of an `http(s)://host[:port][/path][?query]` URL that the checks need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UrlParts {
    pub(crate) scheme: String,
    pub(crate) host: String,
    pub(crate) query: String,
}

impl UrlParts {
    /// The value of query parameter `name`.
    pub(crate) fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

/// Parses an absolute URL with one of `schemes`.
pub(crate) fn parse_url(s: &str, schemes: &[&str]) -> Result<UrlParts, String> {
    let (scheme, rest) = s.split_once("://").ok_or_else(|| {
        format!(
            "{s:?} is not an absolute URL: write e.g. \"https://openway.guance.com?token=tkn_...\""
        )
    })?;
    let scheme = scheme.to_ascii_lowercase();
    if !schemes.contains(&scheme.as_str()) {
        return Err(format!(
            "{s:?}: scheme {scheme:?} is not supported; use {}",
            schemes.join(" or ")
        ));
    }
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = before_query.split('/').next().unwrap_or("");
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if hostport.starts_with('[') || hostport.matches(':').count() == 1 {
        let (h, _) = split_host_port(hostport)
            .ok_or_else(|| format!("{s:?}: bad host or port {hostport:?}"))?;
        h
    } else {
        hostport.to_string()
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("{s:?} has no host"));
    }
    Ok(UrlParts {
        scheme,
        host,
        query: query.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_http_listen_forms() {
        assert_eq!(
            ListenAddr::parse("localhost:9529"),
            Ok(ListenAddr::Tcp {
                host: "localhost".into(),
                port: 9529
            })
        );
        assert_eq!(
            ListenAddr::parse("[::1]:9529"),
            Ok(ListenAddr::Tcp {
                host: "::1".into(),
                port: 9529
            })
        );
        assert_eq!(
            ListenAddr::parse(":9529"),
            Ok(ListenAddr::Tcp {
                host: String::new(),
                port: 9529
            })
        );
        assert_eq!(
            ListenAddr::parse("/run/dk.sock"),
            Ok(ListenAddr::Unix("/run/dk.sock".into()))
        );
        assert!(ListenAddr::parse("localhost").is_err());
        assert!(ListenAddr::parse("localhost:95290").is_err());
        assert!(ListenAddr::parse("run/dk.sock").is_err());
        assert_eq!(
            ListenAddr::parse(":1")
                .ok()
                .and_then(|a| a.bind_host().map(str::to_string))
                .as_deref(),
            Some("0.0.0.0")
        );
    }

    #[test]
    fn wildcard_and_specific_hosts_clash_on_the_same_port_and_transport() {
        let a = Endpoint::of("udp://0.0.0.0:8125", ListenerKind::Udp);
        let b = Endpoint::of(":8125", ListenerKind::Udp);
        let c = Endpoint::of("127.0.0.1:8125", ListenerKind::Udp);
        let d = Endpoint::of("tcp://0.0.0.0:8125", ListenerKind::Tcp);
        let e = Endpoint::of("127.0.0.2:8125", ListenerKind::Udp);
        assert!(a.clashes(&b));
        assert!(a.clashes(&c));
        assert!(!a.clashes(&d));
        assert!(!c.clashes(&e));
        let http = Endpoint::of_http(&ListenAddr::Tcp {
            host: "localhost".into(),
            port: 8125,
        });
        assert!(http.clashes(&d));
    }

    #[test]
    fn parses_dataway_urls_and_token() {
        let u = parse_url(
            "https://openway.guance.com?token=tkn_abc&x=1",
            &["http", "https"],
        )
        .expect("valid");
        assert_eq!(u.host, "openway.guance.com");
        assert_eq!(u.query_param("token"), Some("tkn_abc"));
        let u = parse_url("http://10.0.0.1:9528/v1?a=b", &["http", "https"]).expect("valid");
        assert_eq!(u.query_param("token"), None);
        assert!(parse_url("ftp://x", &["http", "https"]).is_err());
        assert!(parse_url("openway.guance.com", &["http", "https"]).is_err());
        assert!(parse_url("https://:80", &["http", "https"]).is_err());
    }
}
