//! Delivery: normalisation, global tags, per-category batching and the sinks.
//!
//! [`Delivery::feed`] attaches the global tags (spec §2.6), normalises each point for its
//! category (spec §2.4), and buffers the rest per category like Datakit's compactor (§2.7):
//! a category is flushed to every [`Sink`] once it holds `max_cache_count` points, every
//! `flush_interval`, and on [`Delivery::shutdown`]. Failing sinks are retried with capped
//! exponential backoff while the batch is kept; a byte budget bounds what is buffered.
//!
//! Metrics (registered by [`Delivery::start`]):
//! - `datakit_io_feed_point_total{name,category}`: points fed, by input name.
//! - `datakit_io_dropped_point_total{category,reason}`: points not taken; `reason` is the
//!   normalisation warn type that made a point unusable, `busy` (feed refused over budget;
//!   the caller may retry), or `undelivered` (given up at shutdown).
//! - `datakit_io_sink_point_total{sink,category,status}`: `ok`, `rejected`, or `failed`
//!   (counted per failed attempt).
//! - `datakit_io_queue_points{category}`: accepted points not yet written to every sink.
//! - `datakit_io_flush_total{category}`: batches flushed.
//! - `datakit_io_local_sink_rotate_total{category}` and
//!   `datakit_io_local_sink_deleted_files_total{category}`: the local-files sink's rotations.

mod config;
mod delivery;
mod error;
mod local;
mod metrics;
mod sink;

pub use config::{
    DEFAULT_FLUSH_INTERVAL, DEFAULT_MAX_BUFFER_BYTES, DEFAULT_MAX_CACHE_COUNT,
    DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_FILES, DeliveryConfig, DeliveryTuning, GlobalTags,
    LocalSinkConfig,
};
pub use delivery::{Delivery, FeedOutcome};
pub use error::{DeliveryError, SinkError};
pub use local::LocalFileSink;
pub use sink::Sink;
