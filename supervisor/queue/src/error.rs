//! The queue's error type.

use std::io;
use std::path::PathBuf;

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The queue may not drop (`no_drop`) and a cap is reached; the message names the cap and
    /// what to do. Nothing was written: retry later.
    #[error("{0}")]
    Full(String),
    /// The queue was closed; nothing was written.
    #[error("the queue is closed (the agent is shutting down)")]
    Closed,
    /// A filesystem operation failed (for an append: nothing was acknowledged, retry later).
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    /// `read` or `commit` named a consumer the queue was not opened with.
    #[error("unknown queue consumer {0:?}: open the queue with it in the consumer list")]
    UnknownConsumer(String),
    /// One record is larger than the whole disk cap of the queue: it can never be stored.
    #[error(
        "a record of {bytes} bytes (with its header) is larger than the queue cap of {cap} bytes: \
         split it into smaller records or raise [dataway.wal] max_capacity_gb"
    )]
    RecordTooLarge { bytes: u64, cap: u64 },
    /// The configuration cannot work; the message names the field.
    #[error("invalid queue configuration: {0}")]
    Config(String),
}

impl QueueError {
    pub(crate) fn io(path: impl Into<PathBuf>, action: &'static str, source: io::Error) -> Self {
        QueueError::Io {
            path: path.into(),
            action,
            source,
        }
    }

    /// True when the error is the filesystem being out of space (`ENOSPC`, `EDQUOT`).
    pub fn is_out_of_space(&self) -> bool {
        match self {
            QueueError::Io { source, .. } => {
                source.kind() == io::ErrorKind::StorageFull
                    || source.kind() == io::ErrorKind::QuotaExceeded
            }
            _ => false,
        }
    }
}

/// A copy of an I/O error for the second and later appenders of a failed batch.
pub(crate) fn copy_io(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}
