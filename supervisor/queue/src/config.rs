//! Queue configuration and its defaults.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::QueueError;
use crate::frame::HEADER_LEN;

/// Settings of one queue (one category directory).
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Directory of the queue's segments and position files, e.g. `<workdir>/cache/queue/metric`.
    pub dir: PathBuf,
    /// The write segment is rotated once it reaches this size.
    pub segment_bytes: u64,
    /// Cap of all segments of this queue (`[dataway.wal] max_capacity_gb`).
    pub max_disk_bytes: u64,
    /// Never write when the filesystem would then be more than this fraction used (1.0 = no check).
    pub max_disk_ratio: f64,
    /// When full: refuse appends with [`QueueError::Full`] instead of evicting the oldest data.
    pub no_drop: bool,
    /// Group commit: longest wait for concurrent appends to join one fsync.
    pub commit_window: Duration,
    /// The most recent records kept in memory so consumers that keep up never read the disk.
    pub mem_cache_bytes: usize,
}

impl QueueConfig {
    /// Default segment size: 16 MiB.
    pub const DEFAULT_SEGMENT_BYTES: u64 = 16 << 20;
    /// Default disk cap: 2 GiB (Datakit's `max_capacity_gb = 2.0`).
    pub const DEFAULT_MAX_DISK_BYTES: u64 = 2 << 30;
    /// Default free-disk bound: never fill the filesystem above 95 %.
    pub const DEFAULT_MAX_DISK_RATIO: f64 = 0.95;
    /// Default group-commit window: 2 ms.
    pub const DEFAULT_COMMIT_WINDOW: Duration = Duration::from_millis(2);
    /// Default memory cache: 8 MiB.
    pub const DEFAULT_MEM_CACHE_BYTES: usize = 8 << 20;

    /// A configuration for `dir` with the defaults above.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        QueueConfig {
            dir: dir.into(),
            segment_bytes: Self::DEFAULT_SEGMENT_BYTES,
            max_disk_bytes: Self::DEFAULT_MAX_DISK_BYTES,
            max_disk_ratio: Self::DEFAULT_MAX_DISK_RATIO,
            no_drop: false,
            commit_window: Self::DEFAULT_COMMIT_WINDOW,
            mem_cache_bytes: Self::DEFAULT_MEM_CACHE_BYTES,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), QueueError> {
        if self.segment_bytes == 0 {
            return Err(QueueError::Config(
                "segment_bytes must be at least 1".into(),
            ));
        }
        if self.max_disk_bytes <= HEADER_LEN as u64 {
            return Err(QueueError::Config(format!(
                "max_disk_bytes ({}) must be larger than a record header ({HEADER_LEN} bytes); \
                 check [dataway.wal] max_capacity_gb",
                self.max_disk_bytes
            )));
        }
        if !(self.max_disk_ratio > 0.0 && self.max_disk_ratio <= 1.0) {
            return Err(QueueError::Config(format!(
                "max_disk_ratio ({}) must be in (0, 1]",
                self.max_disk_ratio
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_values_and_validate() {
        let c = QueueConfig::new("/x/metric");
        assert_eq!(c.segment_bytes, 16 << 20);
        assert_eq!(c.max_disk_bytes, 2 << 30);
        assert!((c.max_disk_ratio - 0.95).abs() < f64::EPSILON);
        assert!(!c.no_drop);
        assert_eq!(c.commit_window, Duration::from_millis(2));
        assert_eq!(c.mem_cache_bytes, 8 << 20);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn invalid_values_name_their_field() {
        let mut c = QueueConfig::new("/x");
        c.max_disk_ratio = 1.5;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("max_disk_ratio")
        );
        c.max_disk_ratio = f64::NAN;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("max_disk_ratio")
        );
        let mut c = QueueConfig::new("/x");
        c.max_disk_bytes = 10;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("max_disk_bytes")
        );
        let mut c = QueueConfig::new("/x");
        c.segment_bytes = 0;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("segment_bytes")
        );
    }
}
