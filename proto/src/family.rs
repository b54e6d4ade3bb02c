//! What the supervisor knows of an input family before any worker runs: its names, samples,
//! config validation and the sockets its instances claim. Worker families (`dk_worker::Family`)
//! provide it; the config loader (`dk-config`) uses only this.

use crate::config::ConfigProblem;
use crate::rpc::ListenerKind;

/// A listening socket an input instance needs; the supervisor binds it before any worker
/// starts (so a busy port is a config error) and passes it to the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSpec {
    /// The address as written in the config; the key the worker looks the socket up by.
    pub address: String,
    /// Transport.
    pub kind: ListenerKind,
    /// How many sockets to bind on the address (UDP only). Above 1 every socket is bound with
    /// `SO_REUSEPORT` and the kernel spreads senders across them by source address and port;
    /// the worker gets them all under the one address (`dk_worker::listen::udp_all`).
    pub sockets: u16,
    /// A failed bind is a warning (logged, in `/v1/lasterror`) instead of a config error; the
    /// worker then finds no socket for the address. Datakit treats the StatsD Unix socket so.
    pub optional: bool,
}

impl ListenSpec {
    /// One required socket on `address`.
    pub fn new(address: impl Into<String>, kind: ListenerKind) -> ListenSpec {
        ListenSpec {
            address: address.into(),
            kind,
            sockets: 1,
            optional: false,
        }
    }

    /// Binds `n` sockets with `SO_REUSEPORT` (UDP; 0 is taken as 1).
    #[must_use]
    pub fn with_sockets(mut self, n: u16) -> ListenSpec {
        self.sockets = n.max(1);
        self
    }

    /// Makes a failed bind a warning rather than a config error.
    #[must_use]
    pub fn optional(mut self) -> ListenSpec {
        self.optional = true;
        self
    }
}

/// An HTTP method a route on the API port answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// `GET`.
    Get,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
}

impl Method {
    /// The method from its name (`"POST"`); `None` for others.
    pub fn parse(name: &str) -> Option<Method> {
        match name {
            "GET" => Some(Method::Get),
            "POST" => Some(Method::Post),
            "PUT" => Some(Method::Put),
            _ => None,
        }
    }

    /// The method's name (`"POST"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A route one input instance serves on the agent's API port (9529), as Datakit's
/// OpenTelemetry (`/otel/v1/traces`) or Pyroscope (`/ingest`) inputs do: declared from the
/// instance's config like its listeners, served by the supervisor, handled by the worker.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoutePath {
    /// The method.
    pub method: Method,
    /// The exact path (`/otel/v1/traces`).
    pub path: String,
}

impl RoutePath {
    /// `method path`.
    pub fn new(method: Method, path: impl Into<String>) -> RoutePath {
        RoutePath {
            method,
            path: path.into(),
        }
    }
}

impl std::fmt::Display for RoutePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// The API's own paths on 9529 (a trailing `/` marks a prefix): the API's router serves
/// exactly these, and no input route may shadow one.
pub const API_PATHS: &[&str] = &[
    "/v1/write/",
    "/v1/ping",
    "/v1/ntp",
    "/v1/lasterror",
    "/v1/election/",
    "/metrics",
];

/// The API path (or prefix) of [`API_PATHS`] that `path` would shadow, if any.
pub fn shadowed_api_path(path: &str) -> Option<&'static str> {
    API_PATHS.iter().copied().find(|own| {
        if own.ends_with('/') {
            path.starts_with(own)
        } else {
            path == *own
        }
    })
}

/// An input family as the config loader sees it (see the module docs).
pub trait Descriptor: Send + Sync {
    /// The family name (`host`, `socket`), also the `datakit worker <family>` argument.
    fn name(&self) -> &'static str;

    /// The Datakit input names this family serves (`cpu`, `mem`...).
    fn inputs(&self) -> &'static [&'static str];

    /// Sample config per input: `(input name, sample text)`.
    fn samples(&self) -> &'static [(&'static str, &'static str)];

    /// Checks one instance of `input` (its TOML table as text) and returns every problem.
    fn validate(&self, input: &str, toml_text: &str) -> Vec<ConfigProblem>;

    /// The listening sockets one instance claims (empty for inputs that do not listen).
    fn listeners(&self, input: &str, toml_text: &str) -> Vec<ListenSpec> {
        let _ = (input, toml_text);
        Vec::new()
    }

    /// The routes one instance serves on the API port (empty for most inputs).
    fn routes(&self, input: &str, toml_text: &str) -> Vec<RoutePath> {
        let _ = (input, toml_text);
        Vec::new()
    }
}
