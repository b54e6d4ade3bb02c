//! The [`Family`] and [`Input`] traits.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::registry::Registry;

use dk_proto::rpc::{InheritedListener, ListenerKind, WorkerConfig};
use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{ConfigProblem, Emitter};

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
    /// the worker gets them all under the one address ([`crate::listen::udp_all`]).
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

/// One input family: the unit of process isolation.
pub trait Family: Send + Sync + 'static {
    /// The family name (`host`, `socket`), also the `datakit worker <family>` argument.
    fn name(&self) -> &'static str;

    /// The Datakit input names this family serves (`cpu`, `mem`...).
    fn inputs(&self) -> &'static [&'static str];

    /// Sample config per input: `(input name, sample text)`. The text is the `conf.d` sample
    /// (pulled in with `include_str!`), the single source for docs and tests.
    fn samples(&self) -> &'static [(&'static str, &'static str)];

    /// Checks one instance of `input` (its TOML table as text) and returns every problem.
    fn validate(&self, input: &str, toml_text: &str) -> Vec<ConfigProblem>;

    /// The listening sockets one instance claims (empty for inputs that do not listen).
    fn listeners(&self, input: &str, toml_text: &str) -> Vec<ListenSpec> {
        let _ = (input, toml_text);
        Vec::new()
    }

    /// Routes this family serves on the agent's API port (see [`crate::http`]).
    fn http_routes(&self) -> Vec<crate::http::HttpRoute> {
        Vec::new()
    }

    /// Builds the inputs of this worker from its configuration.
    ///
    /// # Errors
    /// Every problem found (the supervisor has validated already, so this is rare).
    fn build(&self, config: &WorkerConfig) -> Result<Vec<Box<dyn Input>>, Vec<ConfigProblem>>;
}

/// A running input.
pub trait Input: Send {
    /// The input name (`cpu`), used as the feed name.
    fn name(&self) -> &str;

    /// Runs until `ctx.shutdown` is cancelled. Errors are reported through
    /// [`Emitter::last_error`], never by returning early.
    fn run(self: Box<Self>, ctx: InputContext) -> BoxFuture<'static, ()>;
}

/// What an input gets from the runtime.
#[derive(Clone)]
pub struct InputContext {
    /// Where points go.
    pub emitter: Emitter,
    /// Cancelled when the worker shuts down.
    pub shutdown: CancellationToken,
    /// `true` while election-aware inputs must not collect.
    pub paused: watch::Receiver<bool>,
    /// The agent's host name.
    pub hostname: String,
    /// Listening sockets inherited from the supervisor.
    pub listeners: Vec<InheritedListener>,
    /// When the worker started.
    pub started: Instant,
    /// The worker's metrics registry: register an input's counters once at start; they are
    /// reported with every health check and served on the supervisor's `/metrics`.
    pub metrics: Arc<Mutex<Registry>>,
}

impl InputContext {
    /// A context for tests: returns it with the cancel token and the pause sender.
    pub fn for_test(emitter: Emitter) -> (InputContext, CancellationToken, watch::Sender<bool>) {
        let shutdown = CancellationToken::new();
        let (pause_tx, paused) = watch::channel(false);
        let ctx = InputContext {
            emitter,
            shutdown: shutdown.clone(),
            paused,
            hostname: "test-host".to_string(),
            listeners: Vec::new(),
            started: Instant::now(),
            metrics: Arc::new(Mutex::new(Registry::default())),
        };
        (ctx, shutdown, pause_tx)
    }

    /// Registers a metric in the worker's registry (see [`InputContext::metrics`]).
    pub fn register_metric(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        if let Ok(mut r) = self.metrics.lock() {
            r.register(name, help, metric);
        }
    }

    /// The inherited listener for a configured address.
    pub fn listener(&self, address: &str) -> Option<&InheritedListener> {
        self.listeners.iter().find(|l| l.address == address)
    }
}
