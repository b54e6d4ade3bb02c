//! The delivery engine: global tags, normalisation, per-category buffers and their flush tasks.
//!
//! Design: each category has a mutex-protected buffer and one flush task. `feed` normalises
//! outside the lock, appends to the buffer under it and wakes the task (a `Notify`) once the
//! buffer holds `max_cache_count` points; the task also wakes every `flush_interval` and on
//! shutdown. The task takes the whole buffer and writes it to every sink, retrying failing sinks
//! with capped exponential backoff while the batch stays in memory (and counts against the byte
//! budget). Feeding therefore never waits on a sink; it only fails with `Busy` when the budget of
//! buffered bytes over all categories is used up.

use crate::config::{DeliveryConfig, DeliveryTuning, GlobalTags};
use crate::error::{DeliveryError, SinkError};
use crate::local::LocalFileSink;
use crate::metrics::{CategoryLabels, DropLabels, FeedLabels, Metrics, SinkLabels};
use crate::sink::Sink;
use dk_proto::normalize::{Limits, normalize};
use dk_proto::{Category, FeedOpts, Point};
use futures::FutureExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

/// What happened to the points of one feed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeedOutcome {
    /// Points accepted (buffered; delivered to the sinks later).
    pub accepted: u32,
    /// Points dropped by normalisation (counted in `datakit_io_dropped_point_total`).
    pub dropped: u32,
}

/// The supervisor's delivery: feed points in, they reach every sink. Cheap to clone.
#[derive(Clone)]
pub struct Delivery {
    inner: Arc<Inner>,
}

struct Inner {
    /// One per category, in the order of [`Category::ALL`].
    cats: Vec<Arc<CatState>>,
    tags: RwLock<Arc<GlobalTags>>,
    limits: Limits,
    max_cache_count: usize,
    max_buffer_bytes: usize,
    buffered_bytes: Arc<AtomicUsize>,
    metrics: Metrics,
    /// `true` once shutdown has begun; dropping it (last `Delivery` gone) also stops the tasks.
    shutdown_tx: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<FlushReport>>>,
    /// The outcome of the first shutdown, replayed by later calls.
    shutdown_result: tokio::sync::Mutex<Option<Result<(), (u64, String)>>>,
}

/// The buffer of one category and the signal that wakes its flush task.
struct CatState {
    category: Category,
    buf: Mutex<CatBuf>,
    notify: Notify,
    /// `datakit_io_queue_points{category}`.
    queue: Gauge,
    /// `datakit_io_flush_total{category}`.
    flushes: Counter,
}

#[derive(Default)]
struct CatBuf {
    pending: Vec<Point>,
    bytes: usize,
    /// Set by the flush task when it takes the final batch; feeds then get `Closed`.
    closed: bool,
}

/// What a flush task could not deliver before it stopped.
#[derive(Default)]
struct FlushReport {
    undelivered: u64,
    details: Vec<String>,
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

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Delivery {
    /// Registers its metrics and starts the per-category flush tasks (needs a tokio runtime),
    /// with the default [`DeliveryTuning`] (64 MiB buffer budget, retries from 100 ms to 30 s).
    ///
    /// # Errors
    /// [`DeliveryError::NoRuntime`] outside tokio; [`DeliveryError::Io`] when the local-files
    /// sink of `config.local` cannot use its directory.
    pub fn start(
        config: DeliveryConfig,
        sinks: Vec<Arc<dyn Sink>>,
        registry: &mut Registry,
    ) -> Result<Delivery, DeliveryError> {
        Self::start_tuned(config, DeliveryTuning::default(), sinks, registry)
    }

    /// [`Delivery::start`] with explicit buffer budget and retry timings.
    ///
    /// # Errors
    /// As [`Delivery::start`].
    pub fn start_tuned(
        config: DeliveryConfig,
        tuning: DeliveryTuning,
        mut sinks: Vec<Arc<dyn Sink>>,
        registry: &mut Registry,
    ) -> Result<Delivery, DeliveryError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| DeliveryError::NoRuntime)?;
        if let Some(local) = config.local {
            sinks.push(Arc::new(LocalFileSink::new(local)?));
        }
        if sinks.is_empty() {
            tracing::warn!("delivery has no sink: accepted points are discarded after flushing");
        }
        let metrics = Metrics::default();
        metrics.register(registry);
        for sink in &sinks {
            sink.register_metrics(registry);
        }
        let sinks: Arc<[Arc<dyn Sink>]> = sinks.into();
        let buffered_bytes = Arc::new(AtomicUsize::new(0));
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let interval = config.flush_interval.max(Duration::from_millis(1));

        let mut cats = Vec::with_capacity(Category::ALL.len());
        let mut tasks = Vec::with_capacity(Category::ALL.len());
        for category in Category::ALL {
            let label = CategoryLabels {
                category: category.name(),
            };
            let cat = Arc::new(CatState {
                category,
                buf: Mutex::new(CatBuf::default()),
                notify: Notify::new(),
                queue: metrics.queue_points.get_or_create(&label).clone(),
                flushes: metrics.flushes.get_or_create(&label).clone(),
            });
            let flusher = Flusher {
                cat: Arc::clone(&cat),
                sinks: Arc::clone(&sinks),
                metrics: metrics.clone(),
                buffered_bytes: Arc::clone(&buffered_bytes),
                interval,
                tuning: tuning.clone(),
                shutdown: shutdown_rx.clone(),
                spare: Vec::new(),
            };
            tasks.push(runtime.spawn(flusher.run()));
            cats.push(cat);
        }

        Ok(Delivery {
            inner: Arc::new(Inner {
                cats,
                tags: RwLock::new(Arc::new(config.global_tags)),
                limits: config.limits,
                max_cache_count: config.max_cache_count.max(1),
                max_buffer_bytes: tuning.max_buffer_bytes,
                buffered_bytes,
                metrics,
                shutdown_tx,
                tasks: Mutex::new(tasks),
                shutdown_result: tokio::sync::Mutex::new(None),
            }),
        })
    }

    /// Attaches global tags (host or election per `opts`, only keys absent on the point; none if
    /// `opts.no_global_tags`), normalises per category, drops and counts invalid points, and
    /// buffers the rest. Resolves when the points are accepted (today: buffered in memory).
    ///
    /// # Errors
    /// [`DeliveryError::Busy`] while the buffer budget is used up (nothing was taken: retry
    /// later); [`DeliveryError::Closed`] once shutdown has begun.
    pub async fn feed(
        &self,
        category: Category,
        input: &str,
        opts: FeedOpts,
        mut points: Vec<Point>,
    ) -> Result<FeedOutcome, DeliveryError> {
        let inner = &*self.inner;
        let cat_name = category.name();
        let fed = points.len();
        inner
            .metrics
            .feed_points
            .get_or_create(&FeedLabels {
                name: input.to_string(),
                category: cat_name,
            })
            .inc_by(fed as u64);
        if *inner.shutdown_tx.borrow() {
            return Err(DeliveryError::Closed);
        }
        let used = inner.buffered_bytes.load(Ordering::Relaxed);
        if used >= inner.max_buffer_bytes {
            inner.count_dropped(cat_name, "busy", fed);
            return Err(DeliveryError::Busy(format!(
                "{used} bytes are buffered for slow or failing sinks (budget {} bytes); retry later",
                inner.max_buffer_bytes
            )));
        }

        let tags = (!opts.no_global_tags).then(|| inner.global_tags());
        let tag_list = tags
            .as_deref()
            .map(|t| if opts.election { &t.election } else { &t.host });
        let mut drops: Vec<(&'static str, usize)> = Vec::new();
        points.retain_mut(|point| {
            if let Some(list) = tag_list {
                for (key, value) in list {
                    point.add_tag_if_absent(key, value);
                }
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
        let outcome = FeedOutcome {
            accepted: to_u32(points.len()),
            dropped: to_u32(fed - points.len()),
        };
        if points.is_empty() {
            return Ok(outcome);
        }

        let bytes: usize = points.iter().map(Point::approx_size).sum();
        let accepted = points.len();
        let cat = &inner.cats[category_index(category)];
        let flush_now = {
            let mut buf = lock(&cat.buf);
            if buf.closed {
                return Err(DeliveryError::Closed);
            }
            buf.pending.append(&mut points);
            buf.bytes += bytes;
            // Under the lock, so the flush task cannot release these bytes before they are added.
            inner.buffered_bytes.fetch_add(bytes, Ordering::Relaxed);
            cat.queue
                .inc_by(i64::try_from(accepted).unwrap_or(i64::MAX));
            buf.pending.len() >= inner.max_cache_count
        };
        if flush_now {
            cat.notify.notify_one();
        }
        Ok(outcome)
    }

    /// Replaces the global tags at runtime (global-tags API, election); later feeds use them.
    pub fn set_global_tags(&self, tags: GlobalTags) {
        let mut slot = self
            .inner
            .tags
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        *slot = Arc::new(tags);
    }

    /// The global tags currently attached.
    pub fn global_tags(&self) -> GlobalTags {
        (*self.inner.global_tags()).clone()
    }

    /// Flushes every buffered point to every sink and waits for the sinks to sync. Idempotent:
    /// later and concurrent calls wait for the first and return its outcome.
    ///
    /// # Errors
    /// [`DeliveryError::Undelivered`] when a sink still failed after
    /// [`DeliveryTuning::shutdown_attempts`] attempts; those points are lost and counted.
    pub async fn shutdown(&self) -> Result<(), DeliveryError> {
        let mut result = self.inner.shutdown_result.lock().await;
        if result.is_none() {
            self.inner.shutdown_tx.send_replace(true);
            let tasks = std::mem::take(&mut *lock(&self.inner.tasks));
            let mut undelivered = 0;
            let mut details = Vec::new();
            for task in tasks {
                match task.await {
                    Ok(report) => {
                        undelivered += report.undelivered;
                        details.extend(report.details);
                    }
                    Err(e) => details.push(format!("a flush task stopped abnormally: {e}")),
                }
            }
            *result = Some(if details.is_empty() {
                Ok(())
            } else {
                Err((undelivered, details.join("; ")))
            });
        }
        match &*result {
            Some(Err((points, detail))) => Err(DeliveryError::Undelivered {
                points: *points,
                detail: detail.clone(),
            }),
            _ => Ok(()),
        }
    }
}

impl Inner {
    fn global_tags(&self) -> Arc<GlobalTags> {
        Arc::clone(&self.tags.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn count_dropped(&self, category: &'static str, reason: &'static str, n: usize) {
        self.metrics
            .dropped_points
            .get_or_create(&DropLabels { category, reason })
            .inc_by(n as u64);
    }
}

/// The flush task of one category.
struct Flusher {
    cat: Arc<CatState>,
    sinks: Arc<[Arc<dyn Sink>]>,
    metrics: Metrics,
    buffered_bytes: Arc<AtomicUsize>,
    interval: Duration,
    tuning: DeliveryTuning,
    shutdown: watch::Receiver<bool>,
    /// The previous batch's vector, kept to reuse its capacity.
    spare: Vec<Point>,
}

/// Resolves once shutdown has begun or every `Delivery` handle is gone.
async fn shutdown_begun(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|closing| *closing).await;
}

impl Flusher {
    async fn run(mut self) -> FlushReport {
        let mut report = FlushReport::default();
        let mut tick = tokio::time::interval_at(Instant::now() + self.interval, self.interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let closing = tokio::select! {
                biased;
                () = shutdown_begun(&mut self.shutdown) => true,
                () = self.cat.notify.notified() => false,
                _ = tick.tick() => false,
            };
            let (mut batch, bytes) = self.take(closing);
            if !batch.is_empty() {
                self.deliver(&batch, closing, &mut report).await;
                self.buffered_bytes.fetch_sub(bytes, Ordering::Relaxed);
                self.cat
                    .queue
                    .dec_by(i64::try_from(batch.len()).unwrap_or(i64::MAX));
                batch.clear();
                if batch.capacity() <= 1 << 16 {
                    self.spare = batch;
                }
            }
            if closing {
                return report;
            }
        }
    }

    /// Takes the whole buffer (and closes it for good when `closing`).
    fn take(&mut self, closing: bool) -> (Vec<Point>, usize) {
        let mut buf = lock(&self.cat.buf);
        if closing {
            buf.closed = true;
        }
        let bytes = std::mem::take(&mut buf.bytes);
        let batch = std::mem::replace(&mut buf.pending, std::mem::take(&mut self.spare));
        (batch, bytes)
    }

    /// Writes a batch to every sink, retrying failing ones until they succeed (or, once
    /// shutdown has begun, until `shutdown_attempts` attempts have failed).
    async fn deliver(&mut self, batch: &[Point], mut closing: bool, report: &mut FlushReport) {
        let category = self.cat.category;
        let cat_name = category.name();
        let n = batch.len() as u64;
        self.cat.flushes.inc();
        let mut done = vec![false; self.sinks.len()];
        let mut backoff = self.tuning.retry_initial;
        let mut failed_while_closing = 0u32;
        loop {
            let mut last_error: Option<(usize, String)> = None;
            for (i, sink) in self.sinks.iter().enumerate() {
                if done[i] {
                    continue;
                }
                let result = AssertUnwindSafe(sink.write(category, batch))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| {
                        Err(SinkError::Unavailable {
                            sink: sink.name().to_string(),
                            message: "the sink panicked while writing".into(),
                        })
                    });
                let status = match result {
                    Ok(()) => {
                        done[i] = true;
                        "ok"
                    }
                    Err(e @ SinkError::Rejected { .. }) => {
                        tracing::warn!(category = cat_name, points = n, error = %e, "batch rejected by sink");
                        done[i] = true;
                        "rejected"
                    }
                    Err(e) => {
                        last_error = Some((i, e.to_string()));
                        "failed"
                    }
                };
                self.metrics
                    .sink_points
                    .get_or_create(&SinkLabels {
                        sink: sink.name().to_string(),
                        category: cat_name,
                        status,
                    })
                    .inc_by(n);
            }
            let Some((failed, error)) = last_error else {
                return;
            };
            let sink = self.sinks[failed].name();
            if closing {
                failed_while_closing += 1;
                if failed_while_closing >= self.tuning.shutdown_attempts.max(1) {
                    tracing::error!(category = cat_name, sink, points = n, %error, "giving up a batch at shutdown");
                    self.metrics
                        .dropped_points
                        .get_or_create(&DropLabels {
                            category: cat_name,
                            reason: "undelivered",
                        })
                        .inc_by(n);
                    report.undelivered += n;
                    report.details.push(format!(
                        "{n} {cat_name} points not written by sink {sink}: {error}"
                    ));
                    return;
                }
            }
            let wait = if closing {
                self.tuning.retry_initial
            } else {
                backoff
            };
            tracing::warn!(category = cat_name, sink, points = n, retry_in = ?wait, %error, "sink write failed; batch kept for retry");
            if closing {
                tokio::time::sleep(wait).await;
            } else {
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = shutdown_begun(&mut self.shutdown) => closing = true,
                }
            }
            backoff = backoff.saturating_mul(2).min(self.tuning.retry_max);
        }
    }
}
