//! Delivery's Prometheus metrics, named after Datakit's `datakit_io_*` family.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// `{name, category}`: the input that fed and the category.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct FeedLabels {
    pub(crate) name: String,
    pub(crate) category: &'static str,
}

/// `{category, reason}`: why points were not taken.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DropLabels {
    pub(crate) category: &'static str,
    pub(crate) reason: &'static str,
}

/// `{sink, category, status}`: points a sink wrote (`ok`) or failed to write (`failed`, per attempt).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct SinkLabels {
    pub(crate) sink: String,
    pub(crate) category: &'static str,
    pub(crate) status: &'static str,
}

/// `{category}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CategoryLabels {
    pub(crate) category: &'static str,
}

/// The handles of every delivery metric (cheap to clone: each is an `Arc`).
#[derive(Clone, Default)]
pub(crate) struct Metrics {
    pub(crate) feed_points: Family<FeedLabels, Counter>,
    pub(crate) dropped_points: Family<DropLabels, Counter>,
    pub(crate) sink_points: Family<SinkLabels, Counter>,
    pub(crate) queue_points: Family<CategoryLabels, Gauge>,
    pub(crate) flushes: Family<CategoryLabels, Counter>,
}

impl Metrics {
    /// Registers every metric (counters get their `_total` suffix from the registry).
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "datakit_io_feed_point",
            "Points fed to delivery, by input name and category",
            self.feed_points.clone(),
        );
        registry.register(
            "datakit_io_dropped_point",
            "Points not taken by delivery, by category and reason (a normalisation warn type, busy, rejected or undelivered)",
            self.dropped_points.clone(),
        );
        registry.register(
            "datakit_io_sink_point",
            "Points written by a sink (status ok) or failed (status failed, counted per attempt)",
            self.sink_points.clone(),
        );
        registry.register(
            "datakit_io_queue_points",
            "Points accepted by delivery and not yet written to every sink",
            self.queue_points.clone(),
        );
        registry.register(
            "datakit_io_flush",
            "Batches flushed to the sinks, by category",
            self.flushes.clone(),
        );
    }
}
