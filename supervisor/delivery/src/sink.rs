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

    /// Registers the sink's own metrics; called once by [`crate::Delivery::start`].
    fn register_metrics(&self, registry: &mut Registry) {
        let _ = registry;
    }
}
