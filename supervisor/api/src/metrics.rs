//! The API's own Prometheus metrics (`datakit_http_api_*`, named as Datakit's).

use prometheus_client::encoding::EncodeLabelSet;
use std::sync::OnceLock;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of the per-API metrics: the path (or `404-page`), the method and the status text.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ApiLabels {
    pub(crate) api: String,
    pub(crate) method: String,
    pub(crate) status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CategoryLabels {
    pub(crate) category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabels {
    pub(crate) reason: &'static str,
}

type HistogramFamily = Family<ApiLabels, Histogram, fn() -> Histogram>;

fn elapsed_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

/// Request counters and latencies of the 9529 API.
pub struct ApiMetrics {
    pub(crate) total: Family<ApiLabels, Counter>,
    pub(crate) elapsed: HistogramFamily,
    pub(crate) write_points: Family<CategoryLabels, Counter>,
    pub(crate) write_dropped: Family<CategoryLabels, Counter>,
    pub(crate) rejected: Family<ReasonLabels, Counter>,
    pub(crate) inflight_bytes: Gauge,
    pub(crate) open_connections: Gauge,
    /// The one memory budget of every router and listener of this agent.
    budget: OnceLock<crate::budget::Budget>,
    /// The one open-connections cap of every listener of this agent.
    connections: OnceLock<std::sync::Arc<tokio::sync::Semaphore>>,
}

impl std::fmt::Debug for ApiMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiMetrics").finish_non_exhaustive()
    }
}

impl ApiMetrics {
    /// Creates the metrics and registers them: `datakit_http_api_total{api,method,status}`,
    /// `datakit_http_api_elapsed_seconds{api,method,status}` (histogram), and our additions
    /// `datakit_http_write_point_total{category}` / `datakit_http_write_dropped_point_total{category}`.
    pub fn new(registry: &mut Registry) -> Self {
        let me = ApiMetrics {
            total: Family::default(),
            elapsed: Family::new_with_constructor(elapsed_histogram as fn() -> Histogram),
            write_points: Family::default(),
            write_dropped: Family::default(),
            rejected: Family::default(),
            inflight_bytes: Gauge::default(),
            open_connections: Gauge::default(),
            budget: OnceLock::new(),
            connections: OnceLock::new(),
        };
        registry.register("datakit_http_api", "API request counter", me.total.clone());
        registry.register(
            "datakit_http_api_elapsed_seconds",
            "API request cost in seconds",
            me.elapsed.clone(),
        );
        registry.register(
            "datakit_http_write_point",
            "Points accepted by POST /v1/write/:category after normalisation",
            me.write_points.clone(),
        );
        registry.register(
            "datakit_http_write_dropped_point",
            "Points of POST /v1/write/:category dropped by normalisation",
            me.write_dropped.clone(),
        );
        registry.register(
            "datakit_http_api_rejected",
            "Requests and connections refused before they took memory or descriptors, by reason (memory_budget, body_too_large, connection_limit, evicted_idle, header_timeout, request_timeout)",
            me.rejected.clone(),
        );
        registry.register(
            "datakit_http_api_inflight_body_bytes",
            "Bytes of the write-body memory budget ([http_api] max_inflight_body_mb) held by requests now",
            me.inflight_bytes.clone(),
        );
        registry.register(
            "datakit_http_api_open_connections",
            "Open connections of the HTTP API",
            me.open_connections.clone(),
        );
        me
    }

    /// Counts a refusal.
    pub(crate) fn reject(&self, reason: &'static str) {
        self.rejected.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// The agent's write-body budget, created with `total_bytes` on first use.
    pub(crate) fn budget(&self, total_bytes: usize) -> crate::budget::Budget {
        self.budget
            .get_or_init(|| crate::budget::Budget::new(total_bytes, self.inflight_bytes.clone()))
            .clone()
    }

    /// The agent's open-connections cap, created with `max` permits on first use.
    pub(crate) fn connections(&self, max: usize) -> std::sync::Arc<tokio::sync::Semaphore> {
        self.connections
            .get_or_init(|| {
                std::sync::Arc::new(tokio::sync::Semaphore::new(
                    max.clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
                ))
            })
            .clone()
    }

    pub(crate) fn observe(&self, labels: ApiLabels, seconds: f64) {
        self.elapsed.get_or_create(&labels).observe(seconds);
        self.total.get_or_create(&labels).inc();
    }
}
