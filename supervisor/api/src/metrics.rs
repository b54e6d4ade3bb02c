//! The API's own Prometheus metrics (`datakit_http_api_*`, spec §8).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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
        me
    }

    pub(crate) fn observe(&self, labels: ApiLabels, seconds: f64) {
        self.elapsed.get_or_create(&labels).observe(seconds);
        self.total.get_or_create(&labels).inc();
    }
}
