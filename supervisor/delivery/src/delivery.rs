//! The delivery engine: global tags, normalisation, the durable queue, and one uploader per
//! sink and category.
//!
//! # Design
//!
//! `feed` attaches global tags and normalises outside any lock, encodes the points as one
//! protobuf record and appends it to the category's [`dk_queue::Queue`]; it resolves only when
//! the record is fsynced (group commit), so *accepted means on disk*. Each sink has its own
//! consumer position in every category's queue: an uploader task reads records after that
//! position, writes at most `max_cache_count` points per call to its sink (or what the sink's
//! [`SinkInput`] asks for: owned points, or line protocol or protobuf made straight from the
//! records) and commits the position once every point of the records read is written. A sink
//! whose [`Sink::concurrent_writes`] is above 1 (Dataway: 2) gets the next write of a group
//! while the one before is unanswered; the position still moves only past a group all of whose
//! writes are done, in whatever order they ended. A sink that fails is retried with
//! capped exponential backoff from the queue; a sink that rejects a batch (a Dataway 4xx) has
//! it dropped and counted. At shutdown uploaders drain for `shutdown_grace` and are then
//! stopped; what is left stays on disk for the next start.

use crate::chunks::{Chunks, Form};
use crate::clock::{Clock, ClockSync};
use crate::config::{DeliveryConfig, DeliveryTuning, GlobalTags, QueueSettings};
use crate::error::DeliveryError;
use crate::metrics::{
    AdjustLabels, CategoryLabels, DropLabels, FeedLabels, FeedTimer, Metrics, PathLabels,
    QueueLabels, SinkLabels,
};
use bytes::Bytes;
use dk_proto::normalize::{Limits, attach_global_tags, normalize};
use dk_proto::sink::SinkError;
use dk_proto::sink::{Sink, SinkInput};
use dk_proto::{Category, FeedOpts, Point};
use dk_queue::{Queue, QueueConfig, QueueError, Record};
use futures::{FutureExt, StreamExt};
use prometheus_client::registry::Registry;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What happened to the points of one feed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeedOutcome {
    /// Points accepted (fsynced in the durable queue).
    pub accepted: u32,
    /// Points dropped by normalisation (counted in `datakit_io_dropped_point_total`).
    pub dropped: u32,
}

/// The supervisor's delivery: feed points in, they reach every sink. Cheap to clone.
///
/// Call [`Delivery::shutdown`] before dropping the last clone: dropping without it stops the
/// uploaders at once (nothing accepted is lost, it is delivered after the next start).
#[derive(Clone)]
pub struct Delivery {
    inner: Arc<Inner>,
}

struct Inner {
    /// One per category, in the order of [`Category::ALL`]; emptied by shutdown so the queue
    /// directories are released.
    queues: RwLock<Vec<Queue>>,
    tags: RwLock<Arc<GlobalTags>>,
    limits: Limits,
    time_correction: Option<Duration>,
    /// The logical clock (`[dataway.ntp]` offset): the "now" of the time correction.
    clock: Clock,
    metrics: Metrics,
    /// Cancelled when shutdown begins: feeds are refused and uploaders drain.
    closing: CancellationToken,
    /// Cancelled once the uploaders are done: the reporter publishes once more and stops.
    stats_stop: CancellationToken,
    uploaders: Mutex<Vec<JoinHandle<()>>>,
    reporter: Mutex<Option<JoinHandle<()>>>,
    tuning: DeliveryTuning,
    shutdown_done: tokio::sync::Mutex<bool>,
    /// Told when the disk under the queue becomes full.
    disk_alert: Arc<Mutex<Option<DiskAlert>>>,
}

/// Called with a message when the disk under the queue goes above `max_disk_ratio` (the
/// agent records it for `/v1/lasterror`).
pub type DiskAlert = Arc<dyn Fn(&str) + Send + Sync>;

impl Drop for Inner {
    /// Dropped without shutdown: stop the background tasks so they release the queues.
    fn drop(&mut self) {
        self.closing.cancel();
        self.stats_stop.cancel();
        for task in self
            .uploaders
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            task.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn category_index(category: Category) -> usize {
    Category::ALL
        .iter()
        .position(|c| *c == category)
        .unwrap_or_default()
}

/// The field in which a corrected point keeps its original time (ns), as in Datakit.
pub(crate) const ORIG_TIME_FIELD: &str = "__orig_time";

/// Datakit's `auto_timestamp_correction`: a point more than `window` away from `now` (either
/// way) gets `now` and its original time in the int field `__orig_time`. Returns whether it
/// was corrected.
fn correct_time(point: &mut Point, now: i64, window: Duration) -> bool {
    let window = i128::try_from(window.as_nanos()).unwrap_or(i128::MAX);
    if (i128::from(now) - i128::from(point.time)).abs() <= window {
        return false;
    }
    point.set_field(ORIG_TIME_FIELD, dk_proto::Value::I(point.time));
    point.time = now;
    true
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Datakit caps `object` and `custom_object` at 128 MiB whatever `max_capacity_gb` says.
fn disk_cap(settings: &QueueSettings, category: Category) -> u64 {
    match category {
        Category::Object | Category::CustomObject => settings.max_disk_bytes.min(128 << 20),
        _ => settings.max_disk_bytes,
    }
}

/// Segments are an eighth of the cap (at most the queue's default size): a full queue then
/// evicts an eighth at a time, and a `no_drop` queue whose sink caught up always has room
/// again (only the segment being written survives a full drain).
fn segment_bytes(cap: u64) -> u64 {
    (cap / 8).clamp(1, QueueConfig::DEFAULT_SEGMENT_BYTES)
}

fn open_queue(
    settings: &QueueSettings,
    category: Category,
    consumers: &[&str],
) -> Result<Queue, DeliveryError> {
    let mut cfg = QueueConfig::new(settings.dir.join(category.name()));
    cfg.max_disk_bytes = disk_cap(settings, category);
    cfg.segment_bytes = segment_bytes(cfg.max_disk_bytes);
    cfg.max_disk_ratio = settings.max_disk_ratio;
    cfg.no_drop = settings.no_drop.contains(&category);
    cfg.mem_cache_bytes = settings.mem_cache_bytes;
    cfg.commit_window = settings.commit_window;
    let (queue, recovery) = Queue::open(cfg, consumers)
        .map_err(|e| DeliveryError::Queue(format!("{} queue: {e}", category.name())))?;
    if recovery.truncated_bytes > 0 || recovery.corrupt_segments > 0 {
        tracing::warn!(
            category = category.name(),
            truncated_bytes = recovery.truncated_bytes,
            corrupt_segments = recovery.corrupt_segments,
            skipped_records = recovery.skipped_records,
            "Recovered the queue after a crash; torn or corrupt records were dropped."
        );
    }
    if recovery.records > 0 {
        tracing::info!(
            category = category.name(),
            records = recovery.records,
            "Resuming delivery of queued data."
        );
    }
    Ok(queue)
}

impl Delivery {
    /// Opens the durable queues, registers the metrics and starts one uploader per sink and
    /// category (needs a tokio runtime), with the default [`DeliveryTuning`].
    ///
    /// # Errors
    /// [`DeliveryError::NoRuntime`] outside tokio; [`DeliveryError::Io`] when the local-files
    /// sink cannot use its directory; [`DeliveryError::Queue`] when a queue cannot be opened
    /// (unwritable directory, already in use, two sinks with the same name).
    pub fn start(
        config: DeliveryConfig,
        sinks: Vec<Arc<dyn Sink>>,
        registry: &mut Registry,
    ) -> Result<Delivery, DeliveryError> {
        Self::start_tuned(config, DeliveryTuning::default(), sinks, registry)
    }

    /// [`Delivery::start`] with explicit retry, shutdown and reporting timings.
    ///
    /// # Errors
    /// As [`Delivery::start`].
    pub fn start_tuned(
        config: DeliveryConfig,
        tuning: DeliveryTuning,
        sinks: Vec<Arc<dyn Sink>>,
        registry: &mut Registry,
    ) -> Result<Delivery, DeliveryError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| DeliveryError::NoRuntime)?;
        if sinks.is_empty() {
            tracing::warn!(
                "Delivery has no sink: accepted points stay in the queue until one is configured."
            );
        }
        let names: Vec<&str> = sinks.iter().map(|s| s.name()).collect();
        // Opening reads and recovers segments: tell a multi-thread runtime this thread blocks.
        let open_all = || {
            Category::ALL
                .into_iter()
                .map(|category| open_queue(&config.queue, category, &names))
                .collect::<Result<Vec<_>, _>>()
        };
        let queues = match runtime.runtime_flavor() {
            tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(open_all)?,
            _ => open_all()?,
        };
        let metrics = Metrics::default();
        metrics.register(registry);
        for sink in &sinks {
            sink.register_metrics(registry);
        }
        let closing = CancellationToken::new();
        let stats_stop = CancellationToken::new();
        let mut uploaders = Vec::with_capacity(queues.len() * sinks.len());
        let max_points = config.max_cache_count.max(1);
        for (category, queue) in Category::ALL.into_iter().zip(&queues) {
            for sink in &sinks {
                let uploader = Uploader {
                    category,
                    queue: queue.clone(),
                    sink: Arc::clone(sink),
                    metrics: metrics.clone(),
                    tuning: tuning.clone(),
                    max_points,
                    closing: closing.clone(),
                };
                uploaders.push(runtime.spawn(uploader.run()));
            }
        }
        let disk_alert: Arc<Mutex<Option<DiskAlert>>> = Arc::default();
        let reporter = Reporter {
            queues: queues.clone(),
            sinks: names.iter().map(|n| n.to_string()).collect(),
            metrics: metrics.clone(),
            seen_dropped: vec![Vec::new(); queues.len()],
            disk: DiskWatch {
                dir: config.queue.dir.clone(),
                ratio: config.queue.max_disk_ratio,
                full: false,
                alert: Arc::clone(&disk_alert),
                checked: None,
                queued: 0,
                queued_at_check: 0,
            },
        };
        let reporter = runtime.spawn(reporter.run(tuning.stats_interval, stats_stop.clone()));
        Ok(Delivery {
            inner: Arc::new(Inner {
                queues: RwLock::new(queues),
                tags: RwLock::new(Arc::new(config.global_tags)),
                limits: config.limits,
                time_correction: config.time_correction,
                clock: Clock::default(),
                metrics,
                closing,
                stats_stop,
                uploaders: Mutex::new(uploaders),
                reporter: Mutex::new(Some(reporter)),
                tuning,
                shutdown_done: tokio::sync::Mutex::new(false),
                disk_alert,
            }),
        })
    }

    /// Attaches global tags (host or election per `opts`, only keys absent on the point; none if
    /// `opts.no_global_tags`), normalises per category, drops and counts invalid points, and
    /// appends the rest to the category's durable queue. Resolves once they are fsynced.
    ///
    /// # Errors
    /// [`DeliveryError::Busy`] when the category's queue is full and may not drop (nothing was
    /// taken: retry later); [`DeliveryError::Queue`] when the disk write failed (nothing was
    /// taken); [`DeliveryError::Rejected`] when the points can never fit the queue (one record
    /// over its cap); [`DeliveryError::Closed`] once shutdown has begun.
    pub async fn feed(
        &self,
        category: Category,
        input: &str,
        opts: FeedOpts,
        points: Vec<Point>,
    ) -> Result<FeedOutcome, DeliveryError> {
        self.feed_with(category, input, opts, points, true).await
    }

    /// [`Delivery::feed`] for points that keep the time they were recorded with (data replayed
    /// from another agent's queue): `auto_timestamp_correction` is not applied.
    ///
    /// # Errors
    /// As [`Delivery::feed`].
    pub async fn feed_as_recorded(
        &self,
        category: Category,
        input: &str,
        opts: FeedOpts,
        points: Vec<Point>,
    ) -> Result<FeedOutcome, DeliveryError> {
        self.feed_with(category, input, opts, points, false).await
    }

    async fn feed_with(
        &self,
        category: Category,
        input: &str,
        opts: FeedOpts,
        mut points: Vec<Point>,
        correct_times: bool,
    ) -> Result<FeedOutcome, DeliveryError> {
        let inner = &*self.inner;
        if inner.closing.is_cancelled() {
            return Err(DeliveryError::Closed);
        }
        let cat_name = category.name();
        let _timer = FeedTimer::start(&inner.metrics, cat_name, input);
        let fed = points.len();
        inner
            .metrics
            .feed_points
            .get_or_create(&FeedLabels {
                name: input.to_string(),
                category: cat_name,
            })
            .inc_by(fed as u64);
        let tags = (!opts.no_global_tags).then(|| inner.global_tags());
        let tag_list = tags
            .as_deref()
            .map(|t| if opts.election { &t.election } else { &t.host });
        let mut drops: Vec<(&'static str, usize)> = Vec::new();
        points.retain_mut(|point| {
            if let Some(list) = tag_list {
                // Global tags win at the tag cap (the point's own tail tags go).
                let _ = attach_global_tags(point, list, &inner.limits);
            }
            match normalize(point, category, &inner.limits) {
                Ok(_) => true,
                Err(warns) => {
                    // The fatal warn is the last one; earlier ones are fixes made before it.
                    let reason = warns.last().map_or("invalid_point", |w| w.kind);
                    match drops.iter_mut().find(|(r, _)| *r == reason) {
                        Some(slot) => slot.1 += 1,
                        None => drops.push((reason, 1)),
                    }
                    false
                }
            }
        });
        for (reason, n) in drops {
            inner.count_dropped(cat_name, reason, n);
        }
        if let Some(window) = inner.time_correction.filter(|_| correct_times) {
            let now = inner.clock.now_ns();
            let mut adjusted = 0u64;
            for p in &mut points {
                adjusted += u64::from(correct_time(p, now, window));
            }
            if adjusted > 0 {
                inner
                    .metrics
                    .time_adjusted
                    .get_or_create(&AdjustLabels {
                        category: cat_name,
                        name: input.to_string(),
                    })
                    .inc_by(adjusted);
            }
        }
        let outcome = FeedOutcome {
            accepted: to_u32(points.len()),
            dropped: to_u32(fed - points.len()),
        };
        if points.is_empty() {
            return Ok(outcome);
        }
        let queue = inner.queue(category).ok_or(DeliveryError::Closed)?;
        let record = Record {
            points: outcome.accepted,
            payload: Bytes::from(dk_proto::pb::encode(&points)),
        };
        // Not needed while the append waits for its fsync.
        drop(points);
        match queue.append(record).await {
            Ok(_) => Ok(outcome),
            Err(QueueError::Full(why)) => {
                inner.count_dropped(cat_name, "busy", outcome.accepted as usize);
                Err(DeliveryError::Busy(why))
            }
            Err(QueueError::Closed) => Err(DeliveryError::Closed),
            Err(e @ QueueError::RecordTooLarge { .. }) => {
                inner.count_dropped(cat_name, "too_large", outcome.accepted as usize);
                Err(DeliveryError::Rejected(format!("{cat_name} queue: {e}")))
            }
            Err(e) => {
                // Nothing was stored (e.g. ENOSPC): refused like a full queue.
                inner.count_dropped(cat_name, "busy", outcome.accepted as usize);
                Err(DeliveryError::Queue(format!("{cat_name} queue: {e}")))
            }
        }
    }

    /// Sets who is told (besides the log and `datakit_io_disk_full`) when the disk under the
    /// queue goes above `max_disk_ratio`; an already full disk is reported at the next check.
    pub fn on_disk_full(&self, alert: DiskAlert) {
        *lock(&self.inner.disk_alert) = Some(alert);
    }

    /// The `[dataway.ntp]` offset added to the host clock, in seconds (0 until a sync measured
    /// a difference over the threshold).
    pub fn clock_offset_secs(&self) -> i64 {
        self.inner.clock.offset_secs()
    }

    /// Takes one measured difference between Dataway's clock and the host's (Dataway − host,
    /// in seconds): at least `threshold` either way, it becomes the clock offset, else the
    /// offset goes back to 0. Sets `datakit_ntp_time_diff`; a changed offset is logged and
    /// counted in `datakit_ntp_sync_total`. Returns the offset now in force.
    pub fn apply_time_diff(&self, measured_secs: i64, threshold: Duration) -> i64 {
        let inner = &*self.inner;
        inner.metrics.ntp_time_diff.set(measured_secs);
        let offset = crate::clock::offset_for(measured_secs, threshold);
        let previous = inner.clock.set_offset_secs(offset);
        // Points this process stamps "now" (API writes without a time) and, through procman,
        // the workers' points carry it too.
        dk_proto::clock::set_offset_ns(offset.saturating_mul(1_000_000_000));
        if previous != offset {
            inner.metrics.ntp_sync.inc();
            inner.metrics.ntp_offset.set(offset);
            if offset == 0 {
                tracing::info!(
                    previous_secs = previous,
                    measured_secs,
                    "[dataway.ntp] the host clock agrees with Dataway's again: no more offset"
                );
            } else {
                tracing::info!(
                    offset_secs = offset,
                    previous_secs = previous,
                    "[dataway.ntp] Dataway's clock is {offset:+}s from the host's: \"now\" for point times is corrected by it"
                );
            }
        }
        offset
    }

    /// Syncs the logical clock with a time source until shutdown begins: `measure` (Dataway
    /// time − host time, in seconds) runs at once and then every `sync.interval`, and each
    /// answer goes through [`Delivery::apply_time_diff`]. A failing source keeps the current
    /// offset and is logged once per failure streak.
    pub fn spawn_clock_sync<F, Fut, E>(&self, sync: ClockSync, measure: F) -> JoinHandle<()>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<i64, E>> + Send,
        E: std::fmt::Display + Send,
    {
        // Weak: the task must not keep a dropped delivery's queues open.
        let weak = Arc::downgrade(&self.inner);
        crate::clock::spawn_sync(
            sync,
            measure,
            move |diff| {
                if let Some(inner) = weak.upgrade() {
                    Delivery { inner }.apply_time_diff(diff, sync.threshold);
                }
            },
            self.inner.closing.clone(),
        )
    }

    /// Replaces the global tags at runtime (global-tags API, election); later feeds use them.
    pub fn set_global_tags(&self, tags: GlobalTags) {
        *self
            .inner
            .tags
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(tags);
    }

    /// The delivery metrics (for the Datakit migration's counters).
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The global tags currently attached.
    pub fn global_tags(&self) -> GlobalTags {
        (*self.inner.global_tags()).clone()
    }

    /// Stops accepting feeds, lets the uploaders drain the queues for `shutdown_grace`, then
    /// stops them (even in the middle of a hanging sink write), publishes the queue metrics a
    /// last time and closes the queues, releasing their directories. Nothing accepted is lost:
    /// what was not uploaded stays on disk and is delivered after the next start. Idempotent.
    ///
    /// # Errors
    /// Never today; kept for sinks that may report a final flush failure.
    pub async fn shutdown(&self) -> Result<(), DeliveryError> {
        let inner = &*self.inner;
        let mut done = inner.shutdown_done.lock().await;
        if *done {
            return Ok(());
        }
        *done = true;
        inner.closing.cancel();
        let uploaders = std::mem::take(&mut *lock(&inner.uploaders));
        let aborts: Vec<_> = uploaders.iter().map(JoinHandle::abort_handle).collect();
        let grace = inner.tuning.shutdown_grace;
        let mut all = futures::future::join_all(uploaders);
        if tokio::time::timeout(grace, &mut all).await.is_err() {
            tracing::warn!(
                ?grace,
                "Sinks did not drain the queues in time; the rest stays on disk for the next start."
            );
            for task in &aborts {
                task.abort();
            }
            all.await;
        }
        inner.stats_stop.cancel();
        let reporter = lock(&inner.reporter).take();
        if let Some(reporter) = reporter {
            let _ = reporter.await;
        }
        let queues =
            std::mem::take(&mut *inner.queues.write().unwrap_or_else(PoisonError::into_inner));
        // Closing waits for each writer thread's last fsync: keep it off the async threads.
        let closed = tokio::task::spawn_blocking(move || {
            for queue in &queues {
                queue.close();
            }
        })
        .await;
        if let Err(e) = closed {
            tracing::warn!(error = %e, "Closing the queues failed; they are closed when the process exits.");
        }
        Ok(())
    }
}

impl Inner {
    fn global_tags(&self) -> Arc<GlobalTags> {
        Arc::clone(&self.tags.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The category's queue, `None` once shutdown has closed it.
    fn queue(&self, category: Category) -> Option<Queue> {
        self.queues
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(category_index(category))
            .cloned()
    }

    fn count_dropped(&self, category: &'static str, reason: &'static str, n: usize) {
        self.metrics
            .dropped_points
            .get_or_create(&DropLabels { category, reason })
            .inc_by(n as u64);
    }
}

/// Reads one category's queue for one sink and writes what it reads.
struct Uploader {
    category: Category,
    queue: Queue,
    sink: Arc<dyn Sink>,
    metrics: Metrics,
    tuning: DeliveryTuning,
    max_points: usize,
    closing: CancellationToken,
}

/// Records read per queue call.
const READ_RECORDS: usize = 64;

/// Payload bytes read per queue call (the record reaching it is the last): 64 records of a
/// log worker's batches were ~15 MiB copied from the segments per read, and the allocator
/// kept that churn resident (supervisor peak RSS ~100 MiB under socket logs). A group of
/// records bigger than this (1000 points of over 1 KiB each) is written in more calls.
const READ_BYTES: usize = 1 << 20;

/// Payload bytes one read may take for a sink whose groups of records hold at most
/// `group_bytes`: [`READ_BYTES`], or one whole group where the sink caps them higher (up to
/// [`MAX_KEPT_CHUNKS`]). A sink with no byte cap (Dataway) groups by points only: it reads
/// within [`READ_BYTES`] (it read 8 MiB before, the cap taken for a group).
fn read_budget(group_bytes: usize) -> usize {
    if group_bytes == usize::MAX {
        READ_BYTES
    } else {
        READ_BYTES.max(group_bytes.min(MAX_KEPT_CHUNKS))
    }
}

/// The most sink writes of one uploader in flight, whatever a sink asks.
const MAX_CONCURRENT_WRITES: usize = 8;

/// A chunk buffer grown past this by a huge record is not kept for reuse.
const MAX_KEPT_CHUNKS: usize = 8 << 20;

/// The most points and bytes one sink write carries.
#[derive(Clone, Copy)]
struct WriteLimits {
    points: usize,
    /// Chunk bytes per write; payload bytes per group of records read.
    bytes: usize,
}

/// One sink write, in the sink's [`SinkInput`].
#[derive(Clone, Copy)]
enum Batch<'a> {
    Points(&'a [Point]),
    /// A chunk of [`Chunks`] and how many points it holds.
    Chunk(Form, &'a [u8], usize),
}

impl Batch<'_> {
    fn points(&self) -> usize {
        match self {
            Batch::Points(p) => p.len(),
            Batch::Chunk(_, _, n) => *n,
        }
    }
}

/// How far [`Uploader::deliver`] got.
enum Delivered {
    /// Written or rejected: the points are done with.
    Done,
    /// Shutdown while the sink kept failing: stop without committing.
    Stopped,
}

impl Uploader {
    async fn run(self) {
        let name = self.sink.name().to_string();
        let mut read_backoff = self.tuning.retry_initial;
        let (form, limits) = match self.sink.input_for(self.category, self.max_points) {
            SinkInput::Points => (None, (self.max_points, usize::MAX)),
            SinkInput::Lines { points, bytes } => (Some(Form::Lines), (points, bytes)),
            SinkInput::Protobuf { points, bytes } => (Some(Form::Protobuf), (points, bytes)),
        };
        let limits = WriteLimits {
            points: limits.0.max(1),
            bytes: limits.1.max(1),
        };
        let mut chunks = form.map(Chunks::new);
        let in_flight = self
            .sink
            .concurrent_writes()
            .clamp(1, MAX_CONCURRENT_WRITES);
        // At least one group of records a read.
        let read_bytes = read_budget(limits.bytes);
        loop {
            let read = if self.closing.is_cancelled() {
                // Draining: an empty queue means done.
                self.queue
                    .try_read_within(&name, READ_RECORDS, read_bytes)
                    .await
            } else {
                tokio::select! {
                    r = self.queue.read_within(&name, READ_RECORDS, read_bytes) => r,
                    () = self.closing.cancelled() => continue,
                }
            };
            let records = match read {
                // Drained (while closing) or the queue was closed.
                Ok(r) if r.is_empty() => return,
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(category = self.category.name(), sink = %name, error = %e, retry_in = ?read_backoff, "Cannot read the queue; retrying.");
                    if self.pause(read_backoff).await {
                        return;
                    }
                    read_backoff = read_backoff.saturating_mul(2).min(self.tuning.retry_max);
                    continue;
                }
            };
            read_backoff = self.tuning.retry_initial;
            let mut rest = records.as_slice();
            while !rest.is_empty() {
                // Records up to max_points (and max_bytes of payload) in all, at least one
                // record per group.
                let mut end = 1;
                let mut pts = rest[0].1.points as usize;
                let mut bytes = rest[0].1.payload.len();
                while end < rest.len()
                    && pts + rest[end].1.points as usize <= limits.points
                    && bytes + rest[end].1.payload.len() <= limits.bytes
                {
                    pts += rest[end].1.points as usize;
                    bytes += rest[end].1.payload.len();
                    end += 1;
                }
                let (group, tail) = rest.split_at(end);
                rest = tail;
                let last_seq = group[group.len() - 1].0;
                // A record can hold more than max_points: it is written in several calls.
                if let Some(chunks) = &mut chunks {
                    self.encode_chunks(group, limits, chunks);
                    // Up to `concurrent_writes` writes in flight: the next body is encoded and
                    // compressed while the sink still waits for the answer to the one before.
                    // The group is committed once every write of it is done, whatever order
                    // they end in.
                    let form = chunks.form();
                    let mut pending = chunks.iter();
                    let mut writes = futures::stream::FuturesUnordered::new();
                    loop {
                        while writes.len() < in_flight {
                            let Some((bytes, n)) = pending.next() else {
                                break;
                            };
                            writes.push(self.deliver(&name, Batch::Chunk(form, bytes, n)));
                        }
                        match writes.next().await {
                            None => break,
                            Some(Delivered::Stopped) => return,
                            Some(Delivered::Done) => {}
                        }
                    }
                    drop(writes);
                    drop(pending);
                    if chunks.buf.capacity() > MAX_KEPT_CHUNKS {
                        *chunks = Chunks::new(chunks.form());
                    }
                } else {
                    let points = self.decode(group);
                    for chunk in points.chunks(self.max_points) {
                        if let Delivered::Stopped = self.deliver(&name, Batch::Points(chunk)).await
                        {
                            return;
                        }
                    }
                }
                if let Err(e) = self.queue.commit(&name, last_seq).await {
                    tracing::error!(category = self.category.name(), sink = %name, error = %e, "Cannot save the queue position; records may be sent twice.");
                }
            }
        }
    }

    fn decode(&self, group: &[(u64, Record)]) -> Vec<Point> {
        let mut points = Vec::with_capacity(group.iter().map(|(_, r)| r.points as usize).sum());
        for (seq, record) in group {
            match dk_proto::pb::decode(&record.payload) {
                Ok(mut p) => points.append(&mut p),
                Err(e) => self.corrupt(*seq, record, &e),
            }
        }
        points
    }

    /// Writes the group's records into `chunks`, in chunks within `limits`.
    fn encode_chunks(&self, group: &[(u64, Record)], limits: WriteLimits, chunks: &mut Chunks) {
        chunks.clear();
        for (seq, record) in group {
            if let Err(e) = chunks.push_record(&record.payload, limits.points, limits.bytes) {
                self.corrupt(*seq, record, &e);
            }
        }
        chunks.finish();
    }

    /// Logs and counts a queued record that does not decode (it is skipped).
    fn corrupt(&self, seq: u64, record: &Record, e: &dk_proto::pb::PbError) {
        tracing::error!(category = self.category.name(), seq, error = %e, "A queued record does not decode; it is skipped.");
        self.metrics
            .dropped_points
            .get_or_create(&DropLabels {
                category: self.category.name(),
                reason: "corrupt",
            })
            .inc_by(u64::from(record.points));
    }

    /// Sleeps `wait`, cut short when shutdown begins; returns `true` if shutdown had already
    /// begun (the caller stops).
    async fn pause(&self, wait: Duration) -> bool {
        if self.closing.is_cancelled() {
            return true;
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = self.closing.cancelled() => {}
        }
        false
    }

    /// Writes until the sink confirms or rejects the batch; stops (without the points being
    /// done) once shutdown has begun and the sink failed `shutdown_attempts` more times.
    async fn deliver(&self, name: &str, batch: Batch<'_>) -> Delivered {
        let cat_name = self.category.name();
        let n = batch.points() as u64;
        let mut backoff = self.tuning.retry_initial;
        let mut failures = 0u32;
        let mut failures_while_closing = 0u32;
        loop {
            let write = match batch {
                Batch::Points(points) => self.sink.write(self.category, points),
                Batch::Chunk(Form::Lines, lines, n) => {
                    self.sink.write_lines(self.category, lines, n)
                }
                Batch::Chunk(Form::Protobuf, message, n) => {
                    self.sink.write_protobuf(self.category, message, n)
                }
            };
            let result = AssertUnwindSafe(write)
                .catch_unwind()
                .await
                .unwrap_or_else(|_| {
                    Err(SinkError::Unavailable {
                        sink: name.to_string(),
                        message: "the sink panicked while writing".into(),
                    })
                });
            let status = match &result {
                Ok(()) => "ok",
                Err(SinkError::Rejected { .. }) => "rejected",
                Err(_) => "failed",
            };
            self.metrics
                .sink_points
                .get_or_create(&SinkLabels {
                    sink: name.to_string(),
                    category: cat_name,
                    status,
                })
                .inc_by(n);
            match result {
                Ok(()) => {
                    self.metrics
                        .flushes
                        .get_or_create(&CategoryLabels { category: cat_name })
                        .inc();
                    if failures > 0 {
                        tracing::info!(
                            category = cat_name,
                            sink = name,
                            failures,
                            "Sink writes succeed again."
                        );
                    }
                    return Delivered::Done;
                }
                Err(e @ SinkError::Rejected { .. }) => {
                    tracing::warn!(category = cat_name, sink = name, points = n, error = %e, "Batch rejected by the sink; dropped.");
                    self.metrics
                        .dropped_points
                        .get_or_create(&DropLabels {
                            category: cat_name,
                            reason: "rejected",
                        })
                        .inc_by(n);
                    return Delivered::Done;
                }
                Err(e) => {
                    failures += 1;
                    self.metrics
                        .retries
                        .get_or_create(&QueueLabels {
                            category: cat_name,
                            sink: name.to_string(),
                        })
                        .inc();
                    let closing = self.closing.is_cancelled();
                    if closing {
                        failures_while_closing += 1;
                        if failures_while_closing >= self.tuning.shutdown_attempts.max(1) {
                            tracing::warn!(category = cat_name, sink = name, points = n, error = %e, "Sink still failing at shutdown; the batch stays queued on disk.");
                            return Delivered::Stopped;
                        }
                    }
                    let wait = if closing {
                        self.tuning.retry_initial
                    } else {
                        backoff
                    };
                    // One warning per outage, not per attempt.
                    if failures == 1 {
                        tracing::warn!(category = cat_name, sink = name, points = n, retry_in = ?wait, error = %e, "Sink write failed; the batch stays queued and is retried.");
                    } else {
                        tracing::debug!(category = cat_name, sink = name, failures, retry_in = ?wait, error = %e, "Sink write failed again.");
                    }
                    if closing {
                        tokio::time::sleep(wait).await;
                    } else {
                        self.pause(wait).await;
                    }
                    backoff = backoff.saturating_mul(2).min(self.tuning.retry_max);
                }
            }
        }
    }
}

/// Publishes the queue gauges and the queues' own drops (evictions, corruption).
struct Reporter {
    queues: Vec<Queue>,
    sinks: Vec<String>,
    metrics: Metrics,
    /// Per queue, the dropped points by reason already added to the counter.
    seen_dropped: Vec<Vec<(String, u64)>>,
    disk: DiskWatch,
}

/// Watches the file system of the queue for the full-disk report.
struct DiskWatch {
    dir: std::path::PathBuf,
    ratio: f64,
    /// Above the ratio at the last check (and reported).
    full: bool,
    alert: Arc<Mutex<Option<DiskAlert>>>,
    /// When the file system was last read: at most once a second while the queues hold more
    /// than at that read, every [`DISK_IDLE_CHECK`] otherwise.
    checked: Option<std::time::Instant>,
    /// The queues' bytes on disk at the last report, and at the last read of the file system.
    queued: u64,
    queued_at_check: u64,
}

/// How often the queue's file system is read while the queues do not change (others may fill
/// or free the disk meanwhile).
const DISK_IDLE_CHECK: Duration = Duration::from_secs(5);

impl DiskWatch {
    /// Whether the file system is to be read at `now`: first thing, then a second after the
    /// last read while the queues hold more than they did then, else [`DISK_IDLE_CHECK`] after.
    fn due(&self, now: std::time::Instant) -> bool {
        let gap = if self.queued > self.queued_at_check {
            Duration::from_secs(1)
        } else {
            DISK_IDLE_CHECK
        };
        self.checked
            .is_none_or(|t| now.saturating_duration_since(t) >= gap)
    }
}

impl Reporter {
    /// Reports every `interval` until `stop`, then once more.
    async fn run(mut self, interval: Duration, stop: CancellationToken) {
        let interval = interval.max(Duration::from_millis(1));
        // On the shared grid, so an idle supervisor wakes once for this and its other ticks.
        let mut tick =
            tokio::time::interval_at(dk_proto::clock::grid_start(interval).into(), interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    self.report();
                    self.check_disk().await;
                }
                () = stop.cancelled() => break,
            }
        }
        self.report();
    }

    /// Reads the queue's file-system usage (off the async threads) and reports a change
    /// between below and above `max_disk_ratio`: log, `datakit_io_disk_full`, the alert.
    async fn check_disk(&mut self) {
        let now = std::time::Instant::now();
        if !self.disk.due(now) {
            return;
        }
        self.disk.checked = Some(now);
        self.disk.queued_at_check = self.disk.queued;
        let dir = self.disk.dir.clone();
        let Ok(Ok(usage)) = tokio::task::spawn_blocking(move || dk_queue::fs_usage(&dir)).await
        else {
            return;
        };
        let used = usage.ratio_with(0);
        let full = used > self.disk.ratio;
        let path = self.disk.dir.display().to_string();
        self.metrics
            .disk_full
            .get_or_create(&PathLabels { path: path.clone() })
            .set(i64::from(full));
        if full == self.disk.full {
            return;
        }
        self.disk.full = full;
        if full {
            let message = format!(
                "the disk holding {path} is {:.1}% used, above the {:.0}% the queue may use: writes that cannot be stored are refused (503 datakit.ioBusy) and the local-files sink deletes its oldest files; free disk space",
                used * 100.0,
                self.disk.ratio * 100.0
            );
            tracing::error!("{message}");
            let alert = lock(&self.disk.alert).clone();
            if let Some(alert) = alert {
                alert(&message);
            }
        } else {
            tracing::info!(
                path,
                used = format!("{:.1}%", used * 100.0),
                "The disk has room again."
            );
        }
    }

    fn report(&mut self) {
        let mut queued = 0u64;
        for (i, (category, queue)) in Category::ALL.into_iter().zip(&self.queues).enumerate() {
            let stats = queue.stats();
            queued = queued.saturating_add(stats.disk_bytes);
            let cat = category.name();
            self.metrics
                .queue_bytes
                .get_or_create(&CategoryLabels { category: cat })
                .set(i64::try_from(stats.disk_bytes).unwrap_or(i64::MAX));
            for sink in &self.sinks {
                let labels = QueueLabels {
                    category: cat,
                    sink: sink.clone(),
                };
                let pending = stats.pending_points(sink);
                self.metrics
                    .queue_points
                    .get_or_create(&labels)
                    .set(i64::try_from(pending).unwrap_or(i64::MAX));
                self.metrics
                    .queue_oldest
                    .get_or_create(&labels)
                    .set(stats.oldest_pending_secs(sink));
            }
            let seen = &mut self.seen_dropped[i];
            for (reason, total) in stats.dropped_points_by_reason() {
                let delta = match seen.iter_mut().find(|(r, _)| *r == reason) {
                    Some(slot) => {
                        let d = total.saturating_sub(slot.1);
                        slot.1 = total;
                        d
                    }
                    None => {
                        seen.push((reason.clone(), total));
                        total
                    }
                };
                if delta > 0 {
                    let reason = match reason.as_str() {
                        "evicted_cap" => "evicted_cap",
                        "evicted_disk_ratio" => "evicted_disk_ratio",
                        "corrupt" => "corrupt",
                        _ => "queue_other",
                    };
                    self.metrics
                        .dropped_points
                        .get_or_create(&DropLabels {
                            category: cat,
                            reason,
                        })
                        .inc_by(delta);
                }
            }
        }
        self.disk.queued = queued;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_disk_is_read_every_second_while_the_queues_grow_and_every_five_seconds_otherwise() {
        use super::{DISK_IDLE_CHECK, DiskWatch};
        use std::time::{Duration, Instant};
        let t0 = Instant::now();
        let mut w = DiskWatch {
            dir: std::path::PathBuf::new(),
            ratio: 0.95,
            full: false,
            alert: Default::default(),
            checked: None,
            queued: 0,
            queued_at_check: 0,
        };
        assert!(w.due(t0), "first thing");
        w.checked = Some(t0);
        let second = t0 + Duration::from_secs(1);
        assert!(!w.due(second), "idle queues: not after a second");
        assert!(!w.due(t0 + DISK_IDLE_CHECK - Duration::from_millis(1)));
        assert!(w.due(t0 + DISK_IDLE_CHECK));
        // The queues grew past what they held at the read: every second again.
        w.queued = 4096;
        assert!(!w.due(t0 + Duration::from_millis(999)));
        assert!(w.due(second));
        // Read then; shrinking (uploads) or holding steady goes back to the idle period.
        w.checked = Some(second);
        w.queued_at_check = 4096;
        w.queued = 1024;
        assert!(!w.due(second + Duration::from_secs(2)));
        assert!(w.due(second + DISK_IDLE_CHECK));
    }

    use super::*;

    const NOW: i64 = 1_764_700_000_000_000_000;
    const HOUR: i64 = 3_600_000_000_000;
    const WINDOW: Duration = crate::config::TIME_CORRECTION_WINDOW;

    fn corrected(time: i64) -> (bool, Point) {
        let mut p = Point::new("m", time).field("f", dk_proto::Value::I(1));
        let changed = correct_time(&mut p, NOW, WINDOW);
        (changed, p)
    }

    #[test]
    fn points_further_than_two_hours_from_now_get_now_and_keep_their_time_in_orig_time() {
        let fifty_years = 50 * 365 * 24 * HOUR;
        for time in [1, NOW + fifty_years, NOW + 3 * HOUR, NOW - 3 * HOUR] {
            let (changed, p) = corrected(time);
            assert!(changed, "{time}");
            assert_eq!(p.time, NOW, "{time}");
            assert_eq!(
                p.get_field(ORIG_TIME_FIELD),
                Some(&dk_proto::Value::I(time))
            );
            assert_eq!(p.get_field("f"), Some(&dk_proto::Value::I(1)));
        }
    }

    #[test]
    fn a_sink_without_a_byte_cap_reads_within_one_mebibyte_and_a_capped_one_a_whole_group() {
        assert_eq!(read_budget(usize::MAX), 1 << 20);
        assert_eq!(read_budget(1000), 1 << 20);
        assert_eq!(read_budget(4 << 20), 4 << 20);
        assert_eq!(read_budget(64 << 20), MAX_KEPT_CHUNKS);
    }

    #[test]
    fn points_within_two_hours_of_now_are_left_as_they_are() {
        for time in [NOW, NOW + HOUR, NOW - HOUR, NOW + 2 * HOUR, NOW - 2 * HOUR] {
            let (changed, p) = corrected(time);
            assert!(!changed, "{time}");
            assert_eq!(p.time, time);
            assert_eq!(p.get_field(ORIG_TIME_FIELD), None);
        }
    }
}
