//! The `Sink` trait: where batches of normalised points read from the durable queue go.

use crate::SinkError;
use dk_proto::{Category, Point};
use futures::future::BoxFuture;
use prometheus_client::registry::Registry;

/// A destination for batches of normalised points (local files; later Dataway, InfluxDB).
///
/// Delivery calls `write` from one uploader task per sink and category, so calls for one
/// category never overlap; calls for different categories may run concurrently. Each sink
/// reads the durable queue at its own position: a slow or failing sink never delays another.
pub trait Sink: Send + Sync + 'static {
    /// A short stable name, used as the `sink` label of metrics and in logs.
    fn name(&self) -> &str;

    /// Writes one batch of normalised points of one category durably (fsync before resolving
    /// `Ok`). On [`SinkError::Rejected`] the batch is dropped; on any other error it is retried
    /// with backoff, so a write must leave no partial batch behind when it fails. A write must
    /// bound its own duration (timeouts): a write that never resolves stalls its category for
    /// this sink until shutdown cancels it (the batch then stays queued).
    fn write<'a>(
        &'a self,
        category: Category,
        points: &'a [Point],
    ) -> BoxFuture<'a, Result<(), SinkError>>;

    /// Whether the sink takes line protocol: delivery then turns queued records straight
    /// into lines (no owned points in between) and calls [`Sink::write_lines`] instead of
    /// [`Sink::write`].
    fn takes_lines(&self) -> bool {
        false
    }

    /// Writes `points` normalised points of one category given as line protocol, one line per
    /// point in queue order, each ending in `\n` (a point with no writable field is an empty
    /// line). The contract is that of [`Sink::write`]. Called only when
    /// [`Sink::takes_lines`] is true; the default refuses.
    fn write_lines<'a>(
        &'a self,
        category: Category,
        lines: &'a [u8],
        points: usize,
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        let _ = (category, lines, points);
        Box::pin(async move {
            Err(SinkError::Unavailable {
                sink: self.name().to_string(),
                message: "this sink does not take line protocol".to_string(),
            })
        })
    }

    /// For a sink that takes lines: the most points and about the most bytes one
    /// [`Sink::write_lines`] call carries, given `[io] max_cache_count`. The default is
    /// `max_cache_count` points, whatever their size.
    fn lines_per_write(&self, max_cache_count: usize) -> (usize, usize) {
        (max_cache_count, usize::MAX)
    }

    /// Registers the sink's own metrics; called once by [`crate::Delivery::start`].
    fn register_metrics(&self, registry: &mut Registry) {
        let _ = registry;
    }
}
