//! Delivery: normalisation, global tags, the durable per-category queues and the sinks.
//!
//! [`Delivery::feed`] attaches the global tags, normalises each point for its
//! category, and appends the rest to the category's durable queue (`dk-queue`):
//! a feed is accepted only once it is fsynced. Every [`Sink`] has its own position in every
//! queue; an uploader per sink and category writes up to `max_cache_count` points per call and
//! retries a failing sink with capped exponential backoff from the queue. The queue is bounded
//! by disk bytes and a free-disk ratio; when full it drops its oldest data (counted) or, for
//! `no_drop` categories, refuses new feeds (`Busy`).
//!
//! Metrics (registered by [`Delivery::start`]):
//! - `datakit_io_feed_point_total{name,category}`: points fed, by input name.
//! - `datakit_io_last_feed_timestamp_seconds{name,category}`: when the input last fed (Unix s).
//! - `datakit_io_feed_cost_seconds{category,from}`: how long feeds took (`from` = input name).
//! - `datakit_io_dropped_point_total{category,reason}`: points lost or refused; `reason` is the
//!   normalisation warn type that made a point unusable, `busy` (a full `no_drop` queue refused
//!   the feed; the caller may retry), `rejected` (a sink refused the batch for good),
//!   `evicted_cap` / `evicted_disk_ratio` (a full queue dropped its oldest data), or `corrupt`
//!   (queued data that could not be read back).
//! - `datakit_io_sink_point_total{sink,category,status}`: `ok`, `rejected`, or `failed`
//!   (counted per failed attempt).
//! - `datakit_io_queue_points{category,sink}`, `datakit_io_queue_oldest_seconds{category,sink}`,
//!   `datakit_io_queue_bytes{category}`: what waits in the durable queue.
//! - `datakit_io_point_time_adjusted_total{category,name}`: points whose time was more than
//!   2 h from now and was set to now (`[io] auto_timestamp_correction`; the original time is
//!   kept in the int field `__orig_time`).
//! - `datakit_io_disk_full{path}`: 1 while the file system of the queue is above
//!   `max_disk_ratio` (also logged, and told to [`Delivery::on_disk_full`]).
//! - `datakit_io_sink_retry_total{category,sink}`: failed writes retried from the queue.
//! - `datakit_io_flush_total{category}`: batches written (over all sinks).
//! - `datakit_io_migrated_point_total{category}` and
//!   `datakit_io_migrate_skipped_record_total{reason}`: points adopted from a Datakit
//!   install's unsent `cache/dw-wal` ([`adopt_datakit_wal`]) and records that could not be.
//! - `datakit_ntp_sync_total`, `datakit_ntp_time_diff`, `datakit_ntp_offset_seconds`: the
//!   `[dataway.ntp]` clock ([`Delivery::spawn_clock_sync`], module `clock`): offset changes,
//!   the last measured difference to Dataway and the offset in force.

mod chunks;
mod clock;
mod config;
mod delivery;
mod error;
mod metrics;
mod migrate;

pub use clock::{ClockSync, host_now_secs};
pub use config::{
    DEFAULT_FLUSH_INTERVAL, DEFAULT_MAX_CACHE_COUNT, DeliveryConfig, DeliveryTuning, GlobalTags,
    QueueSettings, TIME_CORRECTION_WINDOW,
};
pub use delivery::{Delivery, DiskAlert, FeedOutcome};
pub use dk_proto::sink::{Sink, SinkError, SinkInput};
pub use error::DeliveryError;
pub use migrate::{MIGRATION_MARKER, MigrateError, MigrationReport, adopt_datakit_wal};
