//! The settings of delivery: global tags, batching, limits, buffer budget and the local-files sink.

use dk_proto::normalize::Limits;
use std::path::PathBuf;
use std::time::Duration;

/// Datakit's flush interval of the compactor (`[io] flush_interval`).
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(10);
/// Datakit's `[io] max_cache_count`: a category is flushed once this many points are buffered.
pub const DEFAULT_MAX_CACHE_COUNT: usize = 1000;
/// Bytes (by [`dk_proto::Point::approx_size`]) all categories may buffer before feeds get `Busy`.
pub const DEFAULT_MAX_BUFFER_BYTES: usize = 64 * 1024 * 1024;
/// Size at which the local-files sink rotates `current.lp`.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;
/// Rotated files the local-files sink keeps per category.
pub const DEFAULT_MAX_FILES: usize = 16;

/// The global tags attached to fed points (spec §2.6), as resolved by the supervisor.
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

/// The local-files sink: rotating line-protocol files under `<dir>/<category>/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalSinkConfig {
    /// Root directory; each category gets a sub-directory.
    pub dir: PathBuf,
    /// `current.lp` is rotated before a write would take it past this size.
    pub max_file_bytes: u64,
    /// Rotated files kept per category; older ones are deleted.
    pub max_files: usize,
}

impl LocalSinkConfig {
    /// A local sink under `dir` with the default file size (32 MiB) and file count (16).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LocalSinkConfig {
            dir: dir.into(),
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            max_files: DEFAULT_MAX_FILES,
        }
    }
}

/// Everything [`crate::Delivery::start`] needs besides the sinks.
#[derive(Clone, Debug)]
pub struct DeliveryConfig {
    /// Initial global tags; replace them later with [`crate::Delivery::set_global_tags`].
    pub global_tags: GlobalTags,
    /// A category's buffer is flushed at least this often when it holds points.
    pub flush_interval: Duration,
    /// A category's buffer is flushed as soon as it holds this many points.
    pub max_cache_count: usize,
    /// Normalisation limits (spec §2.4).
    pub limits: Limits,
    /// When set, a [`crate::LocalFileSink`] is added to the sinks.
    pub local: Option<LocalSinkConfig>,
}

impl Default for DeliveryConfig {
    /// Datakit's defaults: no global tags, 10 s, 1000 points, default limits, no local sink.
    fn default() -> Self {
        DeliveryConfig {
            global_tags: GlobalTags::default(),
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            max_cache_count: DEFAULT_MAX_CACHE_COUNT,
            limits: Limits::default(),
            local: None,
        }
    }
}

/// Knobs with sensible defaults that operators rarely change (tests shorten them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryTuning {
    /// Budget of buffered bytes over all categories (pending plus in-flight batches); while
    /// it is reached, feeds fail with [`crate::DeliveryError::Busy`].
    pub max_buffer_bytes: usize,
    /// First wait before retrying a failed sink write; doubled per failure.
    pub retry_initial: Duration,
    /// Cap of the retry wait.
    pub retry_max: Duration,
    /// Attempts per sink and batch once shutdown has begun, before the batch is given up.
    pub shutdown_attempts: u32,
}

impl Default for DeliveryTuning {
    fn default() -> Self {
        DeliveryTuning {
            max_buffer_bytes: DEFAULT_MAX_BUFFER_BYTES,
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(30),
            shutdown_attempts: 3,
        }
    }
}
