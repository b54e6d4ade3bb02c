//! The errors of delivery and of its sinks.

use std::path::PathBuf;

/// Why a sink could not write a batch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// A file-system operation failed (no space, permission, missing directory...).
    #[error(
        "sink {sink}: cannot {action} {}: {source}; check that the directory exists, is writable by the agent and has free space",
        .path.display()
    )]
    Io {
        /// The sink's name.
        sink: String,
        /// What was being done (`create directory`, `append to`...).
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The sink cannot take data right now; the batch is kept and retried with backoff.
    #[error("sink {sink} is unavailable: {message}; the batch is kept and retried")]
    Unavailable {
        /// The sink's name.
        sink: String,
        /// What went wrong and what to check.
        message: String,
    },
    /// The sink refuses this batch for good (as a Dataway 4xx); it is dropped and counted.
    #[error("sink {sink} rejected the batch: {message}; its points are dropped")]
    Rejected {
        /// The sink's name.
        sink: String,
        /// The reason the sink gave.
        message: String,
    },
}

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
