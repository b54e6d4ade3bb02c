//! Delivery's Prometheus metrics, named after Datakit's `datakit_io_*` family.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// `{name, category}`: the input that fed and the category.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct FeedLabels {
    pub(crate) name: String,
    pub(crate) category: &'static str,
}

/// `{category, from}`: Datakit's labels of `datakit_io_feed_cost_seconds` (`from` is the input).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct FeedCostLabels {
    pub(crate) category: &'static str,
    pub(crate) from: String,
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

/// `{category, sink}`: one sink's position in one category's queue.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct QueueLabels {
    pub(crate) category: &'static str,
    pub(crate) sink: String,
}

/// The handles of every delivery metric (cheap to clone: each is an `Arc`).
#[derive(Clone)]
pub(crate) struct Metrics {
    pub(crate) feed_points: Family<FeedLabels, Counter>,
    pub(crate) dropped_points: Family<DropLabels, Counter>,
    pub(crate) sink_points: Family<SinkLabels, Counter>,
    pub(crate) queue_points: Family<QueueLabels, Gauge>,
    pub(crate) queue_oldest: Family<QueueLabels, Gauge>,
    pub(crate) queue_bytes: Family<CategoryLabels, Gauge>,
    pub(crate) retries: Family<QueueLabels, Counter>,
    pub(crate) flushes: Family<CategoryLabels, Counter>,
    pub(crate) last_feed: Family<FeedLabels, Gauge<f64, AtomicU64>>,
    pub(crate) feed_cost: Family<FeedCostLabels, Histogram, fn() -> Histogram>,
    pub(crate) time_adjusted: Family<AdjustLabels, Counter>,
    pub(crate) disk_full: Family<PathLabels, Gauge>,
    pub(crate) migrated_points: Family<CategoryLabels, Counter>,
    pub(crate) migrate_skipped: Family<ReasonLabels, Counter>,
    pub(crate) ntp_sync: Counter,
    pub(crate) ntp_time_diff: Gauge,
    pub(crate) ntp_offset: Gauge,
}

/// `{reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabels {
    pub(crate) reason: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            feed_points: Family::default(),
            dropped_points: Family::default(),
            sink_points: Family::default(),
            queue_points: Family::default(),
            queue_oldest: Family::default(),
            queue_bytes: Family::default(),
            retries: Family::default(),
            flushes: Family::default(),
            last_feed: Family::default(),
            time_adjusted: Family::default(),
            disk_full: Family::default(),
            migrated_points: Family::default(),
            migrate_skipped: Family::default(),
            ntp_sync: Counter::default(),
            ntp_time_diff: Gauge::default(),
            ntp_offset: Gauge::default(),
            feed_cost: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.000_05, 4.0, 10))
            }),
        }
    }
}

/// Sets `datakit_io_last_feed_timestamp_seconds` now and observes the feed's duration in
/// `datakit_io_feed_cost_seconds` when dropped (however the feed ends).
pub(crate) struct FeedTimer<'a> {
    metrics: &'a Metrics,
    category: &'static str,
    name: &'a str,
    started: std::time::Instant,
}

impl<'a> FeedTimer<'a> {
    pub(crate) fn start(metrics: &'a Metrics, category: &'static str, name: &'a str) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        metrics
            .last_feed
            .get_or_create(&FeedLabels {
                name: name.to_string(),
                category,
            })
            .set(now);
        FeedTimer {
            metrics,
            category,
            name,
            started: std::time::Instant::now(),
        }
    }
}

impl Drop for FeedTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .feed_cost
            .get_or_create(&FeedCostLabels {
                category: self.category,
                from: self.name.to_string(),
            })
            .observe(self.started.elapsed().as_secs_f64());
    }
}

/// `{path}`: a watched directory.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PathLabels {
    pub(crate) path: String,
}

/// `{category, name}`: the category and the input whose point times were corrected.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct AdjustLabels {
    pub(crate) category: &'static str,
    pub(crate) name: String,
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
            "Points dropped, by category and reason: a normalisation warn type, busy (refused, retry), rejected (sink 4xx), evicted_cap / evicted_disk_ratio (queue full, oldest dropped), corrupt",
            self.dropped_points.clone(),
        );
        registry.register(
            "datakit_io_sink_point",
            "Points written by a sink (status ok), refused for good (rejected) or failed (failed, counted per attempt)",
            self.sink_points.clone(),
        );
        registry.register(
            "datakit_io_queue_points",
            "Points in the durable queue not yet written by the sink, by category and sink",
            self.queue_points.clone(),
        );
        registry.register(
            "datakit_io_queue_oldest_seconds",
            "Age of the oldest point the sink has not written yet, by category and sink",
            self.queue_oldest.clone(),
        );
        registry.register(
            "datakit_io_queue_bytes",
            "Bytes of the durable queue on disk, by category",
            self.queue_bytes.clone(),
        );
        registry.register(
            "datakit_io_sink_retry",
            "Failed sink writes that will be retried from the queue, by category and sink",
            self.retries.clone(),
        );
        registry.register(
            "datakit_io_last_feed_timestamp_seconds",
            "Input last feed time (according to Datakit local time), by input name and category",
            self.last_feed.clone(),
        );
        registry.register(
            "datakit_io_feed_cost_seconds",
            "Time a feed took to be taken into the queue, by category and input (from)",
            self.feed_cost.clone(),
        );
        registry.register(
            "datakit_io_flush",
            "Batches written to the sinks, by category",
            self.flushes.clone(),
        );
        registry.register(
            "datakit_io_point_time_adjusted",
            "Points whose time was more than 2h from now and was set to now (auto_timestamp_correction), by category and input",
            self.time_adjusted.clone(),
        );
        registry.register(
            "datakit_io_disk_full",
            "1 while the file system of the queue directory is above max_disk_ratio (95%): writes that cannot be stored are refused",
            self.disk_full.clone(),
        );
        registry.register(
            "datakit_io_migrated_point",
            "Points adopted from the unsent data a Datakit install left in cache/dw-wal, by category",
            self.migrated_points.clone(),
        );
        registry.register(
            "datakit_io_migrate_skipped_record",
            "Records of a Datakit cache/dw-wal that could not be adopted, by reason (truncated, bad_length, bad_cachedata, bad_gzip, bad_payload, unknown_category, dynamic_url, rejected)",
            self.migrate_skipped.clone(),
        );
        registry.register(
            "datakit_ntp_sync",
            "Times the [dataway.ntp] clock offset changed",
            self.ntp_sync.clone(),
        );
        registry.register(
            "datakit_ntp_time_diff",
            "Last measured difference between Dataway's clock and the host clock (Dataway - host), in seconds",
            self.ntp_time_diff.clone(),
        );
        registry.register(
            "datakit_ntp_offset_seconds",
            "Offset added to the host clock for point time correction ([dataway.ntp]), in seconds",
            self.ntp_offset.clone(),
        );
    }
}
