//! What the API needs from the supervisor: the feeder, agent identity, configuration and metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dk_proto::{Category, FeedOpts, Point};
use futures::future::BoxFuture;
use prometheus_client::registry::Registry;

use crate::lasterr::LastErrors;
use crate::metrics::ApiMetrics;

/// Where `POST /v1/write/:category` hands its points: the supervisor's delivery pipeline.
pub trait Feeder: Send + Sync + 'static {
    /// Hands normalised points to delivery; resolves once they are accepted.
    ///
    /// `input` is the feed name (`v1-write.<input>`). The future may be dropped when the
    /// request times out, so an implementation must not lose accepted points on drop.
    fn feed(
        &self,
        category: Category,
        input: String,
        opts: FeedOpts,
        points: Vec<Point>,
    ) -> BoxFuture<'_, Result<(), FeedError>>;
}

/// Why delivery did not accept a feed.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The queue is full or over budget right now; the client should retry later.
    #[error("delivery queue busy: {0}; retry later")]
    Busy(String),
    /// Delivery is shutting down and accepts nothing more.
    #[error("delivery is closed (the agent is shutting down)")]
    Closed,
    /// The points can never be stored as sent (larger than the queue can hold); retrying
    /// the same body will not help.
    #[error("delivery refused the points for good: {0}")]
    Rejected(String),
}

/// The agent's identity, shown by `/v1/ping`, the 404 page and the `X-DataKit` header.
#[derive(Debug, Clone)]
pub struct AgentInfo {
    /// Datakit-compatible version (`1.84.1`).
    pub version: String,
    /// Git commit of the build.
    pub commit: String,
    /// Hostname reported to clients.
    pub hostname: String,
    /// `linux/amd64` style OS and architecture.
    pub os_arch: String,
    /// When the agent started (for the uptime).
    pub started: Instant,
}

/// `[http_api]` settings the router uses.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Paths served to non-loopback clients besides `/v1/ping` and `/v1/ntp`; empty means
    /// every category write URL.
    pub public_apis: Vec<String>,
    /// Answer unknown routes with a plain 404 instead of the welcome page.
    pub disable_404page: bool,
    /// Origins that get CORS headers; empty allows every origin.
    pub allowed_cors_origins: Vec<String>,
    /// Per-request handler timeout (408 after it); zero disables it.
    pub timeout: Duration,
    /// Requests per second per client IP and path; zero or less disables the limit.
    pub request_rate_limit: f64,
    /// Cap on the (decompressed) body of a write request (`[http_api] max_body_size_mb`).
    pub max_body_bytes: usize,
    /// Memory budget shared by every write request being read, inflated and decoded at once
    /// (`[http_api] max_inflight_body_mb`); 503 with `Retry-After` past it.
    pub max_inflight_bytes: usize,
    /// Cap on open connections; past it new connections are closed at once.
    pub max_connections: usize,
    /// Time a client has to send a request's headers (on a new or an idle kept-alive
    /// connection) before it is cut off.
    pub header_timeout: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            public_apis: Vec::new(),
            disable_404page: false,
            allowed_cors_origins: Vec::new(),
            timeout: Duration::from_secs(30),
            request_rate_limit: 100.0,
            max_body_bytes: 64 * 1024 * 1024,
            max_inflight_bytes: 128 * 1024 * 1024,
            max_connections: 4096,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// Everything the router shares between requests. Register [`LastErrors`] and
/// [`ApiMetrics`] into the registry before wrapping it in an `Arc`.
#[derive(Clone)]
pub struct ApiState {
    /// Delivery.
    pub feeder: Arc<dyn Feeder>,
    /// Agent identity.
    pub info: Arc<AgentInfo>,
    /// Settings.
    pub config: Arc<ApiConfig>,
    /// The shared last-error store.
    pub last_errors: Arc<LastErrors>,
    /// The API's own metrics.
    pub metrics: Arc<ApiMetrics>,
    /// The agent's whole registry, served by `/metrics`.
    pub registry: Arc<Registry>,
    /// Metrics reported by worker processes, appended to `/metrics`.
    pub worker_metrics: Arc<WorkerMetrics>,
    /// This node's election state for `GET /v1/election/info` (`None`: shown as disabled).
    pub election: Option<ElectionInfo>,
}

/// Produces the election state shown on `GET /v1/election/info`.
pub type ElectionInfo = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// The latest metrics text each worker reported (OpenMetrics, without `# EOF`), by family.
#[derive(Debug, Default)]
pub struct WorkerMetrics {
    by_family: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
}

impl WorkerMetrics {
    /// Replaces a family's metrics text (from its latest health check).
    pub fn set(&self, family: &str, text: String) {
        if let Ok(mut m) = self.by_family.lock() {
            m.insert(family.to_string(), text);
        }
    }

    /// Forgets a family (its worker is gone; a new one reports afresh).
    pub fn remove(&self, family: &str) {
        if let Ok(mut m) = self.by_family.lock() {
            m.remove(family);
        }
    }

    /// Appends every family's text to `out`.
    pub fn render(&self, out: &mut String) {
        if let Ok(m) = self.by_family.lock() {
            for text in m.values() {
                out.push_str(text);
            }
        }
    }
}
