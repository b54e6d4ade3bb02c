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
}
