//! The Datakit-compatible HTTP API on 9529: writes, ping,
//! ntp, last errors, metrics, with Datakit's access control, CORS, rate limit and errors.
//!
//! Build an [`ApiState`], then either mount [`router`] yourself or run [`serve`]
//! (TCP, with the peer address for the loopback checks) or [`serve_unix`].
//!
//! Additions over Datakit: `GET /v1/lasterror` (loopback only) lists the recent errors
//! as `{"content":[{input,source,category,message,timestamp}]}`; a busy delivery queue
//! answers 503 `datakit.ioBusy` instead of blocking; write bodies are capped.

mod budget;
mod error;
mod forward;
mod lasterr;
mod metrics;
mod middleware;
mod ratelimit;
mod routes;
mod server;
mod state;
mod write;

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::HeaderValue;
use axum::routing::{get, post};
use dk_proto::Category;
use dk_proto::normalize::Limits;

pub use error::{ApiError, camel_case};
pub use forward::{RouteForward, RouteMatch};
pub use lasterr::{LAST_ERRORS_CAPACITY, LastErrorEntry, LastErrors};
pub use metrics::ApiMetrics;
pub use middleware::{ClientInfo, X_DATAKIT};
pub use server::connection_cap;
pub use state::{
    AgentInfo, ApiConfig, ApiState, ElectionInfo, FeedError, Feeder, MetricsSource, ScrapeHook,
    WorkerMetrics,
};
pub use write::{CONTENT_TYPE_PBJSON, CONTENT_TYPE_PROTOBUF};

/// How long [`serve`] lets in-flight requests finish after `shutdown` resolves.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Shared per-router state derived from [`ApiState`].
pub(crate) struct Inner {
    pub(crate) state: ApiState,
    pub(crate) whitelist: HashSet<String>,
    pub(crate) limiter: Option<ratelimit::RateLimiter>,
    pub(crate) limits: Arc<Limits>,
    pub(crate) x_datakit: HeaderValue,
    /// The agent's one memory budget for write bodies.
    pub(crate) budget: budget::Budget,
    /// Bodies being inflated at once at most (one per core, at least two): more only spreads
    /// the memory of refused bombs over more allocator thread heaps, and the CPU is no faster.
    pub(crate) inflaters: Arc<tokio::sync::Semaphore>,
    /// `DK_DEBUG_API_PANIC=decode` (read once): decoding a body starting with
    /// `dk_debug_panic` panics, to prove a decoder bug costs one 500 and nothing else.
    pub(crate) debug_panic_decode: bool,
}

/// The env variable of the API's debug knobs (`decode`: see [`Inner::debug_panic_decode`]).
pub const DEBUG_PANIC_ENV: &str = "DK_DEBUG_API_PANIC";

/// The paths served to non-loopback clients: `/v1/ping`, `/v1/ntp`, plus
/// `public_apis` (each with a leading `/`), or every category write URL when that is empty.
pub fn whitelist(config: &ApiConfig) -> HashSet<String> {
    let mut w: HashSet<String> = ["/v1/ping", "/v1/ntp"].map(String::from).into();
    if config.public_apis.is_empty() {
        w.extend(
            Category::ALL
                .iter()
                .filter(|c| **c != Category::MetricDeprecated)
                .map(|c| c.url_path()),
        );
    } else {
        w.extend(config.public_apis.iter().map(|p| {
            let p = p.trim();
            if p.starts_with('/') {
                p.to_string()
            } else {
                format!("/{p}")
            }
        }));
    }
    w
}

/// The API's routes with the whole middleware pipeline. The loopback check reads the peer
/// from `ConnectInfo<SocketAddr>` (or a `MockConnectInfo<SocketAddr>` layer); a request
/// without a peer is treated as external.
pub fn router(state: ApiState) -> Router {
    let x_datakit =
        HeaderValue::from_str(&format!("{}/{}", state.info.version, state.info.hostname))
            .or_else(|_| HeaderValue::from_str(&state.info.version))
            .unwrap_or(HeaderValue::from_static(dk_proto::DATAKIT_VERSION));
    let debug_panic_decode =
        std::env::var(DEBUG_PANIC_ENV).is_ok_and(|v| v.split(',').any(|k| k.trim() == "decode"));
    if debug_panic_decode {
        tracing::warn!(
            "{DEBUG_PANIC_ENV}=decode: write bodies starting with dk_debug_panic make decoding panic (debug only)"
        );
    }
    let inner = Arc::new(Inner {
        budget: state.metrics.budget(state.config.max_inflight_bytes),
        debug_panic_decode,
        inflaters: Arc::new(tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(2, |n| n.get().max(2)),
        )),
        whitelist: whitelist(&state.config),
        limiter: ratelimit::RateLimiter::new(state.config.request_rate_limit),
        limits: Arc::new(Limits::default()),
        x_datakit,
        state,
    });
    Router::new()
        .route("/v1/write/{category}", post(write::write))
        .route("/v1/ping", get(routes::ping))
        .route("/v1/ntp", get(routes::ntp))
        .route(
            "/v1/lasterror",
            post(routes::lasterror_post).get(routes::lasterror_get),
        )
        .route("/v1/election/info", get(routes::election_info))
        .route("/metrics", get(routes::metrics))
        // Routes of input families come from the config: looked up per request.
        .fallback(forward::forward_or_404)
        .method_not_allowed_fallback(routes::page404)
        .layer(axum::middleware::from_fn_with_state(
            inner.clone(),
            middleware::pipeline,
        ))
        .with_state(inner)
}

/// Serves until `shutdown` resolves, with `ConnectInfo<SocketAddr>` so loopback checks
/// work; then stops accepting and gives in-flight requests [`SHUTDOWN_GRACE`] to finish.
/// Clients get `header_timeout` for each request's headers; at `max_connections` open
/// connections the one idle the longest makes room for a new one.
///
/// # Errors
/// I/O errors of the listener.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (config, metrics) = (state.config.clone(), state.metrics.clone());
    server::run(listener, router(state), &config, metrics, shutdown).await
}

/// Serves on a Unix socket (`[http_api] listen_socket`) until `shutdown` resolves; every
/// peer counts as loopback, as in Datakit. Shares the budget and the connection cap with
/// [`serve`].
///
/// # Errors
/// I/O errors of the listener.
pub async fn serve_unix(
    listener: tokio::net::UnixListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (config, metrics) = (state.config.clone(), state.metrics.clone());
    server::run(listener, router(state), &config, metrics, shutdown).await
}
