//! The supervisor's own metrics (worker lifecycle and RPC), registered once at start-up.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type FamilyLabel = [(&'static str, String); 1];
type FamilyCauseLabels = [(&'static str, String); 2];

/// Handles to the supervisor metrics.
#[derive(Clone)]
pub struct SupervisorMetrics {
    /// `datakit_worker_restarts_total{family,cause}`.
    pub restarts: Family<FamilyCauseLabels, Counter>,
    /// `datakit_worker_up{family}`: 1 while a worker is connected and healthy.
    pub up: Family<FamilyLabel, Gauge>,
    /// `datakit_worker_rss_bytes{family}` from the last health check.
    pub rss: Family<FamilyLabel, Gauge>,
    /// `datakit_rpc_push_points_total{family}`: points received over RPC.
    pub push_points: Family<FamilyLabel, Counter>,
    /// `datakit_rpc_push_seconds{family}`: time from receiving a batch to acking it.
    pub push_latency: Family<FamilyLabel, Histogram>,
    /// `datakit_rpc_over_limit_total{family}`: requests refused because the worker connection
    /// already had the maximum in flight.
    pub over_limit: Family<FamilyLabel, Counter>,
    /// `datakit_worker_points_dropped{family}`: points the current worker dropped (batches the
    /// supervisor rejected for good, points too large to send), from its last health check.
    pub worker_dropped: Family<FamilyLabel, Gauge>,
    /// `datakit_worker_metrics_refused_total{family}`: worker metrics reports over the size cap.
    pub metrics_refused: Family<FamilyLabel, Counter>,
    /// `datakit_config_reload_total{result}`.
    pub reloads: Family<[(&'static str, String); 1], Counter>,
    /// `datakit_uptime_seconds`.
    pub uptime: Gauge,
}

impl SupervisorMetrics {
    /// Registers every supervisor metric.
    pub fn new(registry: &mut Registry) -> Self {
        let m = SupervisorMetrics {
            restarts: Family::default(),
            up: Family::default(),
            rss: Family::default(),
            push_points: Family::default(),
            push_latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
            }),
            over_limit: Family::default(),
            metrics_refused: Family::default(),
            worker_dropped: Family::default(),
            reloads: Family::default(),
            uptime: Gauge::default(),
        };
        registry.register(
            "datakit_worker_restarts",
            "Worker restarts by family and cause",
            m.restarts.clone(),
        );
        registry.register(
            "datakit_worker_up",
            "1 while the family's worker is healthy",
            m.up.clone(),
        );
        registry.register(
            "datakit_worker_rss_bytes",
            "Resident memory of the family's worker at its last health check",
            m.rss.clone(),
        );
        registry.register(
            "datakit_rpc_push_points",
            "Points received from workers over RPC",
            m.push_points.clone(),
        );
        registry.register(
            "datakit_rpc_push_seconds",
            "Time from receiving a worker batch to acknowledging it",
            m.push_latency.clone(),
        );
        registry.register(
            "datakit_rpc_over_limit",
            "Worker requests refused because the connection had the maximum in flight",
            m.over_limit.clone(),
        );
        registry.register(
            "datakit_worker_points_dropped",
            "Points the family's current worker dropped (rejected batches, oversize points) at its last health check",
            m.worker_dropped.clone(),
        );
        registry.register(
            "datakit_worker_metrics_refused",
            "Worker metrics reports refused for being over the size cap (the last good one is served)",
            m.metrics_refused.clone(),
        );
        registry.register(
            "datakit_config_reload",
            "Config reloads by result",
            m.reloads.clone(),
        );
        registry.register(
            "datakit_uptime_seconds",
            "Seconds since the supervisor started",
            m.uptime.clone(),
        );
        m
    }

    /// Counts one restart.
    pub fn restart(&self, family: &str, cause: &str) {
        self.restarts
            .get_or_create(&[("family", family.to_string()), ("cause", cause.to_string())])
            .inc();
    }

    /// The label set of a family.
    pub fn family(family: &str) -> FamilyLabel {
        [("family", family.to_string())]
    }
}
