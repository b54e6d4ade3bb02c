//! The contract between delivery and the sinks: the `Sink` trait, where batches of normalised
//! points read from the durable queue go, and its error. Sinks (`dk-sinks`) implement it and
//! delivery (`dk-delivery`) drives them; neither depends on the other.

use std::path::PathBuf;

use crate::{Category, Point};
use futures::future::BoxFuture;
use prometheus_client::registry::Registry;

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

/// A destination for batches of normalised points (local files; later Dataway, InfluxDB).
///
/// Delivery calls a sink from one uploader task per sink and category. Calls for one category
/// overlap only for a sink whose [`Sink::concurrent_writes`] is above 1 (then up to that many
/// `write_lines`/`write_protobuf` calls run at once and may end in any order); calls for
/// different categories may run concurrently. Each sink reads the durable queue at its own
/// position: a slow or failing sink never delays another.
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

    /// What the sink takes from the durable queue, given `[io] max_cache_count`; delivery
    /// asks once per uploader, when it starts. The default is [`SinkInput::Points`].
    fn input(&self, max_cache_count: usize) -> SinkInput {
        let _ = max_cache_count;
        SinkInput::Points
    }

    /// [`Sink::input`] for the uploader of one category (delivery asks this); the default is
    /// the same for every category.
    fn input_for(&self, category: Category, max_cache_count: usize) -> SinkInput {
        let _ = category;
        self.input(max_cache_count)
    }

    /// Writes `points` normalised points of one category given as line protocol, one line per
    /// point in queue order, each ending in `\n` (a point with no writable field is an empty
    /// line). The contract is that of [`Sink::write`]. Called only when [`Sink::input`] is
    /// [`SinkInput::Lines`]; the default refuses.
    fn write_lines<'a>(
        &'a self,
        category: Category,
        lines: &'a [u8],
        points: usize,
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        let _ = (category, lines, points);
        refuse(self.name(), "line protocol")
    }

    /// Writes `points` normalised points of one category given as one `PBPoints` message:
    /// the points' entries copied from the queued records in queue order (see
    /// `dk_proto::pb::entries`; every point was decoded once, so the message is valid and
    /// holds exactly `points` points). The contract is that of [`Sink::write`]. Called only
    /// when [`Sink::input`] is [`SinkInput::Protobuf`]; the default refuses.
    fn write_protobuf<'a>(
        &'a self,
        category: Category,
        message: &'a [u8],
        points: usize,
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        let _ = (category, message, points);
        refuse(self.name(), "protobuf")
    }

    /// How many [`Sink::write_lines`] or [`Sink::write_protobuf`] calls of one category
    /// delivery may have in flight at once: above 1, the next batch is encoded and sent while
    /// the sink still waits on the one before (a remote sink's round trip is hidden). Delivery
    /// moves the queue position past a group of batches only once every call of it is done, so
    /// the calls may end in any order. The default, 1, never overlaps calls.
    fn concurrent_writes(&self) -> usize {
        1
    }

    /// Registers the sink's own metrics; called once by [`crate::Delivery::start`].
    fn register_metrics(&self, registry: &mut Registry) {
        let _ = registry;
    }
}

/// What a sink takes from the durable queue ([`Sink::input`]) and how much per write.
///
/// Queued records are `PBPoints` messages. [`SinkInput::Points`] decodes them into owned
/// points; the other two hand the sink bytes made straight from the records, with no owned
/// point in between: cheaper for a sink whose output is one of those encodings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinkInput {
    /// Owned points through [`Sink::write`], at most `max_cache_count` per call.
    Points,
    /// Line protocol through [`Sink::write_lines`].
    Lines {
        /// The most points one call carries.
        points: usize,
        /// About the most line bytes one call carries (a call closes at the first line that
        /// reaches it).
        bytes: usize,
    },
    /// `PBPoints` messages through [`Sink::write_protobuf`].
    Protobuf {
        /// The most points one call carries.
        points: usize,
        /// About the most message bytes one call carries (a call closes at the first point
        /// that reaches it).
        bytes: usize,
    },
}

/// The answer of a sink asked for an input it did not declare.
fn refuse<'a>(sink: &str, what: &str) -> BoxFuture<'a, Result<(), SinkError>> {
    let err = SinkError::Unavailable {
        sink: sink.to_string(),
        message: format!("this sink does not take {what}"),
    };
    Box::pin(async move { Err(err) })
}
