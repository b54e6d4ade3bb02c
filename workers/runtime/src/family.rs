//! The [`Family`] and [`Input`] traits.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::registry::Registry;

pub use dk_proto::family::ListenSpec;
use dk_proto::rpc::{InheritedListener, WorkerConfig};
use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{ConfigProblem, Emitter};

/// One input family: the unit of process isolation.
pub trait Family: Send + Sync + 'static {
    /// The family name (`host`, `socket`), also the `datakit worker <family>` argument.
    fn name(&self) -> &'static str;

    /// The Datakit input names this family serves (`cpu`, `mem`...).
    fn inputs(&self) -> &'static [&'static str];

    /// Sample config per input: `(input name, sample text)`. The text is the `conf.d` sample
    /// (pulled in with `include_str!`), the single source for docs and tests.
    fn samples(&self) -> &'static [(&'static str, &'static str)];

    /// Checks one instance of `input` (its TOML table as text) and returns every problem:
    /// errors and warnings (unknown keys, bare-number durations), see [`ConfigProblem::severity`].
    fn validate(&self, input: &str, toml_text: &str) -> Vec<ConfigProblem>;

    /// The listening sockets one instance claims (empty for inputs that do not listen).
    fn listeners(&self, input: &str, toml_text: &str) -> Vec<ListenSpec> {
        let _ = (input, toml_text);
        Vec::new()
    }

    /// The routes one instance serves on the agent's API port (see [`crate::http`]); its
    /// running input handles them ([`Input::routes`]).
    fn routes(&self, input: &str, toml_text: &str) -> Vec<crate::http::RoutePath> {
        let _ = (input, toml_text);
        Vec::new()
    }

    /// Builds the inputs of this worker from its configuration.
    ///
    /// # Errors
    /// Every problem found (the supervisor has validated already, so this is rare).
    fn build(&self, config: &WorkerConfig) -> Result<Vec<Box<dyn Input>>, Vec<ConfigProblem>>;

    /// Whether [`Family::build`] makes exactly one input per instance, in order, and the
    /// instances share nothing but process-wide metrics: a reconfigure then keeps the unchanged
    /// instances running (with their connections) instead of restarting every input.
    fn per_instance(&self) -> bool {
        false
    }
}

/// A running input.
pub trait Input: Send {
    /// The input name (`cpu`), used as the feed name.
    fn name(&self) -> &str;

    /// Runs until `ctx.shutdown` is cancelled. Errors are reported through
    /// [`Emitter::last_error`], never by returning early.
    fn run(self: Box<Self>, ctx: InputContext) -> BoxFuture<'static, ()>;

    /// The handlers of the routes this input serves on the API port (those its family's
    /// `routes` declared for its config); asked once, before [`Input::run`].
    fn routes(&self) -> Vec<crate::http::HttpRoute> {
        Vec::new()
    }
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
    /// Reports that `input` cannot serve (its socket is missing or unusable): logged once
    /// and shown in `/v1/lasterror` under `category`.
    pub async fn startup_error(&self, input: &str, category: dk_proto::Category, message: String) {
        tracing::error!(input, "{message}");
        self.emitter
            .last_error(input, input, category, message)
            .await;
    }

    /// For tests: the input finds `listener` as the inherited TCP socket of `address` (the
    /// listener must outlive the test; the input serves a duplicate of it).
    pub fn inherit_tcp(&mut self, address: impl Into<String>, listener: &std::net::TcpListener) {
        use std::os::fd::AsRawFd;
        self.listeners = vec![InheritedListener {
            address: address.into(),
            kind: dk_proto::rpc::ListenerKind::Tcp,
            fd: listener.as_raw_fd(),
        }];
    }

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

/// A [`Family`] seen as the contract's [`dk_proto::family::Descriptor`]: what the supervisor's
/// config loading needs (names, samples, validation, listeners) without the worker runtime.
pub struct Described<'a>(pub &'a dyn Family);

impl dk_proto::family::Descriptor for Described<'_> {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn inputs(&self) -> &'static [&'static str] {
        self.0.inputs()
    }

    fn samples(&self) -> &'static [(&'static str, &'static str)] {
        self.0.samples()
    }

    fn validate(&self, input: &str, toml_text: &str) -> Vec<ConfigProblem> {
        self.0.validate(input, toml_text)
    }

    fn listeners(&self, input: &str, toml_text: &str) -> Vec<ListenSpec> {
        self.0.listeners(input, toml_text)
    }

    fn routes(&self, input: &str, toml_text: &str) -> Vec<dk_proto::family::RoutePath> {
        self.0.routes(input, toml_text)
    }
}
