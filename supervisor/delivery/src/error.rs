//! The errors of delivery.

use dk_proto::sink::SinkError;

/// Why delivery refused a feed or could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// The category's queue is full and may not drop its oldest data (`no_drop_categories`),
    /// or the disk is too full; nothing was taken: retry the feed later (RPC callers answer
    /// with a retry ack, HTTP callers with 503).
    #[error("delivery is busy: {0}")]
    Busy(String),
    /// [`crate::Delivery::shutdown`] has begun; no more points are accepted.
    #[error("delivery is shut down and accepts no more points")]
    Closed,
    /// A sink could not be set up (e.g. the local data directory is not writable).
    #[error(transparent)]
    Io(#[from] SinkError),
    /// The feed can never be accepted as it is (one record larger than the queue cap); retrying
    /// the same points is pointless: drop or split them.
    #[error("refused for good: {0}")]
    Rejected(String),
    /// The durable queue failed (disk error when appending or opening); nothing was accepted.
    #[error("the durable queue failed: {0}")]
    Queue(String),
    /// `start` was called outside a tokio runtime.
    #[error("delivery needs a tokio runtime: call Delivery::start from inside one")]
    NoRuntime,
    /// Points that could not be delivered. Not returned by the durable engine (undelivered
    /// points stay queued on disk); kept for API compatibility.
    #[error("{points} accepted points could not be delivered before shutdown: {detail}")]
    Undelivered {
        /// Points given up.
        points: u64,
        /// Which category and sink failed, and the last error.
        detail: String,
    },
}
