//! The settings of delivery: global tags, batch size, limits and the durable queue.

use dk_proto::normalize::Limits;
use std::path::PathBuf;
use std::time::Duration;

/// Datakit's flush interval of the compactor (`[io] flush_interval`); accepted in the config
/// but unused: points are uploaded as soon as they are durable.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(10);
/// Datakit's `[io] max_cache_count`: the most points handed to a sink in one write.
pub const DEFAULT_MAX_CACHE_COUNT: usize = 1000;
/// Datakit's `[io] auto_timestamp_correction` window: points further than this from now get
/// the current time (and their original time in the int field `__orig_time`).
pub const TIME_CORRECTION_WINDOW: Duration = Duration::from_secs(2 * 3600);

/// The global tags attached to fed points, as resolved by the supervisor.
///
/// Placeholders (`__datakit_hostname`...) are already expanded, `host` is included, and with
/// election off `election` is a copy of `host`: delivery attaches exactly what it is given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GlobalTags {
    /// `[global_host_tags]` plus `host`: attached to points of ordinary feeds.
    pub host: Vec<(String, String)>,
    /// `[election.tags]` (plus `election_namespace`): attached to points of election-aware feeds.
    pub election: Vec<(String, String)>,
}

/// Where and how big the durable queue is (`[dataway.wal]`).
#[derive(Clone, Debug, PartialEq)]
pub struct QueueSettings {
    /// Root directory; each category gets a sub-directory (`[dataway.wal] path`).
    pub dir: PathBuf,
    /// Disk cap per category (`[dataway.wal] max_capacity_gb`); `object` and `custom_object`
    /// are capped at 128 MiB as in Datakit.
    pub max_disk_bytes: u64,
    /// Never write when the file system would be more than this fraction used (0.95).
    pub max_disk_ratio: f64,
    /// Categories that refuse new data when full instead of dropping their oldest
    /// (`[dataway.wal] no_drop_categories`).
    pub no_drop: Vec<dk_proto::Category>,
    /// Recent records kept in memory per category so uploaders that keep up never read disk.
    pub mem_cache_bytes: usize,
    /// Group-commit window: concurrent feeds within it share one fsync.
    pub commit_window: Duration,
}

impl QueueSettings {
    /// Datakit's defaults (2 GiB per category, 95 % disk ratio) under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        QueueSettings {
            dir: dir.into(),
            max_disk_bytes: 2 * 1024 * 1024 * 1024,
            max_disk_ratio: 0.95,
            no_drop: Vec::new(),
            mem_cache_bytes: 1024 * 1024,
            commit_window: Duration::from_millis(2),
        }
    }
}

/// Everything [`crate::Delivery::start`] needs besides the sinks.
#[derive(Clone, Debug)]
pub struct DeliveryConfig {
    /// Initial global tags; replace them later with [`crate::Delivery::set_global_tags`].
    pub global_tags: GlobalTags,
    /// `[io] flush_interval`: kept for config compatibility and unused, because points are
    /// uploaded as soon as they are durable (there is no in-memory buffer to flush).
    pub flush_interval: Duration,
    /// `[io] max_cache_count`: the most points handed to a sink in one write (records queued
    /// meanwhile are grouped up to it; a larger feed is split).
    pub max_cache_count: usize,
    /// Normalisation limits.
    pub limits: Limits,
    /// The durable queue between feeds and sinks.
    pub queue: QueueSettings,
    /// `[io] auto_timestamp_correction` (the agent sets [`TIME_CORRECTION_WINDOW`] unless the
    /// key is false): a point whose time is more than this from now gets the current time and
    /// keeps the original (ns) in the int field `__orig_time`. `None` (the library default)
    /// leaves times as given.
    pub time_correction: Option<Duration>,
}

impl Default for DeliveryConfig {
    /// Datakit's defaults: no global tags, 10 s (unused), 1000 points, default limits,
    /// the queue under `cache/queue` of the current directory (tests set their own); times are
    /// left as given (the agent turns the correction on).
    fn default() -> Self {
        DeliveryConfig {
            global_tags: GlobalTags::default(),
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            max_cache_count: DEFAULT_MAX_CACHE_COUNT,
            limits: Limits::default(),
            queue: QueueSettings::new("cache/queue"),
            time_correction: None,
        }
    }
}

/// Knobs with sensible defaults that operators rarely change (tests shorten them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryTuning {
    /// First wait before retrying a failed sink write; doubled per failure.
    pub retry_initial: Duration,
    /// Cap of the retry wait.
    pub retry_max: Duration,
    /// Attempts per sink and batch once shutdown has begun, before the upload stops (the
    /// batch stays in the durable queue for the next start).
    pub shutdown_attempts: u32,
    /// How long shutdown lets uploaders drain the queue before stopping them (even in the
    /// middle of a sink write) and leaving the rest on disk.
    pub shutdown_grace: Duration,
    /// How often the queue gauges and the queues' eviction counts are published (and once
    /// more at shutdown): 2 s, the period of the worker health checks, on the same grid, so
    /// an idle supervisor wakes once for both.
    pub stats_interval: Duration,
}

impl Default for DeliveryTuning {
    fn default() -> Self {
        DeliveryTuning {
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(30),
            shutdown_attempts: 3,
            shutdown_grace: Duration::from_secs(5),
            stats_interval: Duration::from_secs(2),
        }
    }
}
