//! The sender task: batches what inputs emit and pushes it to the supervisor.
//!
//! # Design
//!
//! Feeds are grouped by (category, feed name, options). A group is pushed when it reaches
//! [`MAX_BATCH_POINTS`] or [`MAX_BATCH_BYTES`] (estimated wire size, so a batch always fits
//! the RPC frame cap), or when [`LINGER`] has passed since a point started waiting (a timer
//! armed by that point: an idle sender does not wake up); a single point over
//! [`MAX_POINT_BYTES`] is dropped and counted. At most [`MAX_IN_FLIGHT`] pushes holding at
//! most [`MAX_IN_FLIGHT_BYTES`] are outstanding (the push reaching the byte bound still goes:
//! one large batch is never stuck); while they wait for acks, the task stops reading the
//! emitter channel, so back-pressure reaches the inputs. A batch answered with `Ack::Retry` (transient: queue busy,
//! shutting down) is pushed again with capped backoff (the `Arc` makes that copy-free); one
//! answered `Ack::Rejected` (permanent) is dropped and counted, with a rate-limited log line.
//! At most [`MAX_ERROR_REPORTS`] error reports are in flight; more are dropped and counted. A
//! transport error means the supervisor is gone: the task ends with an error and the worker
//! exits, unless the [`Link`] is held for a handover: then the batch waits for the new
//! supervisor, and up to [`MAX_HELD_BATCHES`] batches are cut meanwhile (inputs keep reading).
//!
//! Points handed over with [`crate::Emitter::emit_acked`] are pushed at once (no linger), and
//! every batch holding some of them carries a share of the caller's waiter: the caller hears
//! `true` once each of those batches was accepted, `false` as soon as one is rejected or
//! dropped unanswered (supervisor gone, worker stopping).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use dk_proto::rpc::{Ack, Batch, MAX_BATCH_BYTES, MAX_POINT_BYTES, wire_size};
use dk_proto::{Category, FeedOpts, Point};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot};

use crate::emitter::Message;
use crate::link::Link;
use crate::rpc::context_with_timeout;

/// Points per pushed batch, as Datakit's `max_cache_count`.
pub const MAX_BATCH_POINTS: usize = 1000;
/// Longest time a point waits in the worker before it is pushed.
pub const LINGER: Duration = Duration::from_millis(100);
/// Pushes awaiting an ack at once.
pub const MAX_IN_FLIGHT: usize = 4;
/// Estimated bytes ([`dk_proto::rpc::wire_size`]) of the pushes awaiting an ack past which the
/// sender stops reading: three batches of 1000 socket-log lines of 120 bytes (~330 kB each),
/// four of small metric points. A batch is kept until its ack (it may be pushed again), so this
/// bounds a busy worker's memory. Socket logs end to end were as fast with three log batches in
/// flight as with four, and 15-20 % slower with two (acks wait for the durable queue).
pub const MAX_IN_FLIGHT_BYTES: usize = 768 * 1024;
/// Batches kept while the link is held for a supervisor handover (at most this many times
/// [`MAX_BATCH_BYTES`], in practice a few MiB for the half second a swap takes).
pub const MAX_HELD_BATCHES: usize = 64;
/// Error reports (`last_error` calls) in flight at once; more are dropped and counted.
pub const MAX_ERROR_REPORTS: usize = 2;
/// Deadline of one push.
const PUSH_TIMEOUT: Duration = Duration::from_secs(30);
/// Least time between two log lines about rejected batches or dropped points.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Counters shared with the health check.
#[derive(Debug, Default)]
pub struct SenderStats {
    /// Points acknowledged by the supervisor.
    pub acked: AtomicU64,
    /// Points dropped (rejected by the supervisor).
    pub dropped: AtomicU64,
    /// Batches pushed and not yet acknowledged.
    pub pending: AtomicU64,
    /// Batch sequence numbers.
    pub seq: AtomicU64,
    /// Batches the supervisor rejected for good (dropped, not retried).
    pub rejected_batches: AtomicU64,
    /// Points dropped before sending because one alone is over [`MAX_POINT_BYTES`].
    pub oversize_points: AtomicU64,
    /// Error reports dropped because [`MAX_ERROR_REPORTS`] were already in flight.
    pub dropped_error_reports: AtomicU64,
    /// When a drop was last logged (milliseconds since the sender started, +1; 0 = never).
    last_log_ms: AtomicU64,
    started: std::sync::OnceLock<std::time::Instant>,
}

impl SenderStats {
    /// True at most once per [`LOG_EVERY`]: whether a drop should be logged now.
    fn should_log(&self) -> bool {
        let started = self.started.get_or_init(std::time::Instant::now);
        let now = started.elapsed().as_millis() as u64 + 1;
        let last = self.last_log_ms.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < LOG_EVERY.as_millis() as u64 {
            return false;
        }
        self.last_log_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

/// Why the sender stopped before its input channel closed.
#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    /// The supervisor connection failed.
    #[error(
        "lost the supervisor connection while pushing a batch: {0}; the worker exits and is restarted"
    )]
    Disconnected(String),
}

type Key = (Category, String, FeedOpts);

/// The points waiting for one key, their estimated wire size, and the
/// [`crate::Emitter::emit_acked`] callers waiting for some of them.
#[derive(Default)]
struct Group {
    points: Vec<Point>,
    bytes: usize,
    holds: Vec<Hold>,
}

impl Group {
    /// The points, their waiters and their estimated bytes; the group is left empty.
    fn take(&mut self) -> (Vec<Point>, Vec<Hold>, usize) {
        (
            std::mem::take(&mut self.points),
            std::mem::take(&mut self.holds),
            std::mem::take(&mut self.bytes),
        )
    }
}

/// One `emit_acked` caller: answered when the last batch holding its points is settled,
/// `true` only if every one of them was accepted.
struct Waiter {
    failed: AtomicBool,
    done: Option<oneshot::Sender<bool>>,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            let _ = done.send(!self.failed.load(Ordering::Relaxed));
        }
    }
}

/// A batch's share of a [`Waiter`]: dropped unsettled (batch rejected, supervisor gone,
/// worker stopping), it fails the waiter.
struct Hold(Option<Arc<Waiter>>);

impl Hold {
    /// The batch holding these points was accepted.
    fn settle(mut self) {
        self.0 = None;
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Some(w) = self.0.take() {
            w.failed.store(true, Ordering::Relaxed);
        }
    }
}

/// Runs until every [`crate::Emitter`] is dropped and everything buffered has been acknowledged.
///
/// # Errors
/// [`SenderError::Disconnected`] when the supervisor goes away.
pub async fn run(
    mut rx: mpsc::Receiver<Message>,
    link: Arc<Link>,
    stats: Arc<SenderStats>,
) -> Result<(), SenderError> {
    let mut groups: HashMap<Key, Group> = HashMap::new();
    let reports = Arc::new(tokio::sync::Semaphore::new(MAX_ERROR_REPORTS));
    let mut in_flight = FuturesUnordered::new();
    // Armed when a point starts waiting (and while closing), never ticking in vain: an idle
    // worker sleeps until something arrives.
    let linger = tokio::time::sleep(LINGER);
    tokio::pin!(linger);
    let mut armed = false;
    let mut open = true;
    // Estimated bytes of the batches in `in_flight`.
    let mut in_flight_bytes = 0usize;

    loop {
        let cap = if link.is_held() {
            MAX_HELD_BATCHES
        } else {
            MAX_IN_FLIGHT
        };
        let can_read = open
            && in_flight.len() < cap
            && (link.is_held() || in_flight_bytes < MAX_IN_FLIGHT_BYTES);
        tokio::select! {
            msg = rx.recv(), if can_read => match msg {
                Some(msg @ (Message::Feed(_) | Message::AckedFeed(..))) => {
                    let (feed, waiter) = match msg {
                        Message::AckedFeed(feed, done) => (feed, Some(Arc::new(Waiter { failed: AtomicBool::new(false), done: Some(done) }))),
                        Message::Feed(feed) => (feed, None),
                        Message::LastError(_) => continue,
                    };
                    let key = (feed.category, feed.input, feed.opts);
                    let group = groups.entry(key.clone()).or_default();
                    if let Some(w) = &waiter {
                        group.holds.push(Hold(Some(w.clone())));
                    }
                    for point in feed.points {
                        let size = wire_size(&point);
                        if size > MAX_POINT_BYTES {
                            stats.oversize_points.fetch_add(1, Ordering::Relaxed);
                            stats.dropped.fetch_add(1, Ordering::Relaxed);
                            if stats.should_log() {
                                tracing::warn!(input = %key.1, bytes = size, limit = MAX_POINT_BYTES, "Dropped a point too large to send to the supervisor (counted in points_dropped); shorten its fields.");
                            }
                            continue;
                        }
                        if group.bytes + size > MAX_BATCH_BYTES && !group.points.is_empty() {
                            let (points, holds, bytes) = group.take();
                            in_flight_bytes += bytes;
                            in_flight.push(push(link.clone(), make_batch(&stats, key.clone(), points), bytes, holds, stats.clone()));
                            if let Some(w) = &waiter {
                                group.holds.push(Hold(Some(w.clone())));
                            }
                        }
                        group.bytes += size;
                        group.points.push(point);
                        if group.points.len() >= MAX_BATCH_POINTS {
                            let (points, holds, bytes) = group.take();
                            in_flight_bytes += bytes;
                            in_flight.push(push(link.clone(), make_batch(&stats, key.clone(), points), bytes, holds, stats.clone()));
                            if let Some(w) = &waiter {
                                group.holds.push(Hold(Some(w.clone())));
                            }
                        }
                    }
                    if waiter.is_some() {
                        // Someone waits for these points: push them now, not after the linger.
                        let (points, holds, bytes) = group.take();
                        if points.is_empty() {
                            // Already in batches of their own (or dropped as oversize).
                            holds.into_iter().for_each(Hold::settle);
                        } else {
                            in_flight_bytes += bytes;
                            in_flight.push(push(link.clone(), make_batch(&stats, key.clone(), points), bytes, holds, stats.clone()));
                        }
                    }
                }
                Some(Message::LastError(e)) => {
                    if let (Ok(permit), Some(client)) = (reports.clone().try_acquire_owned(), link.client()) {
                        tokio::spawn(async move {
                            let _ = client.last_error(context_with_timeout(PUSH_TIMEOUT), e).await;
                            drop(permit);
                        });
                    } else {
                        stats.dropped_error_reports.fetch_add(1, Ordering::Relaxed);
                    }
                }
                None => {
                    open = false;
                    if !armed {
                        linger.as_mut().reset(tokio::time::Instant::now());
                        armed = true;
                    }
                }
            },
            done = in_flight.next(), if !in_flight.is_empty() => match done {
                Some(Ok(bytes)) => in_flight_bytes = in_flight_bytes.saturating_sub(bytes),
                Some(Err(e)) => return Err(e),
                None => {}
            },
            () = &mut linger, if armed => {
                armed = false;
                for (key, group) in groups.iter_mut() {
                    if !group.points.is_empty() {
                        let (points, holds, bytes) = group.take();
                        in_flight_bytes += bytes;
                        in_flight.push(push(link.clone(), make_batch(&stats, key.clone(), points), bytes, holds, stats.clone()));
                    }
                }
                groups.retain(|_, g| g.points.capacity() > 0 || !g.points.is_empty());
                if !open && in_flight.is_empty() && groups.values().all(|g| g.points.is_empty()) {
                    return Ok(());
                }
                if !open {
                    // Closing: look again until the last pushes are acknowledged.
                    linger.as_mut().reset(tokio::time::Instant::now() + LINGER);
                    armed = true;
                }
            }
        }
        if !armed && groups.values().any(|g| !g.points.is_empty()) {
            linger.as_mut().reset(tokio::time::Instant::now() + LINGER);
            armed = true;
        }
    }
}

fn make_batch(stats: &SenderStats, key: Key, points: Vec<Point>) -> Arc<Batch> {
    let (category, input, opts) = key;
    Arc::new(Batch {
        seq: stats.seq.fetch_add(1, Ordering::Relaxed),
        category,
        input,
        election: opts.election,
        no_global_tags: opts.no_global_tags,
        points,
    })
}

/// Pushes `batch` (of `bytes` estimated bytes) until it is settled; returns `bytes`.
async fn push(
    link: Arc<Link>,
    batch: Arc<Batch>,
    bytes: usize,
    holds: Vec<Hold>,
    stats: Arc<SenderStats>,
) -> Result<usize, SenderError> {
    stats.pending.fetch_add(1, Ordering::Relaxed);
    let mut backoff = Duration::from_millis(50);
    let result = loop {
        let (client, in_rpc) = link.begin().await;
        let answer = client
            .push(context_with_timeout(PUSH_TIMEOUT), batch.clone())
            .await;
        drop(in_rpc);
        match answer {
            Ok(Ack::Accepted { points, dropped }) => {
                stats.acked.fetch_add(u64::from(points), Ordering::Relaxed);
                stats
                    .dropped
                    .fetch_add(u64::from(dropped), Ordering::Relaxed);
                holds.into_iter().for_each(Hold::settle);
                break Ok(());
            }
            Ok(Ack::Retry(reason)) => {
                tracing::debug!(%reason, seq = batch.seq, "Supervisor asked to retry a batch.");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Ok(Ack::Rejected(reason)) => {
                stats.rejected_batches.fetch_add(1, Ordering::Relaxed);
                stats
                    .dropped
                    .fetch_add(batch.points.len() as u64, Ordering::Relaxed);
                if stats.should_log() {
                    tracing::warn!(%reason, seq = batch.seq, points = batch.points.len(), rejected_batches = stats.rejected_batches.load(Ordering::Relaxed), "The supervisor rejected a batch for good; its points are dropped (counted in points_dropped).");
                }
                break Ok(());
            }
            Err(tarpc::client::RpcError::DeadlineExceeded) => {
                tracing::warn!(seq = batch.seq, "Push timed out; retrying.");
            }
            // The old supervisor is gone during a handover: send it to the new one.
            Err(_) if link.is_held() => {}
            Err(e) => break Err(SenderError::Disconnected(e.to_string())),
        }
    };
    stats.pending.fetch_sub(1, Ordering::Relaxed);
    result.map(|()| bytes)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use dk_proto::rpc::{Hello, HelloReply, Ingest, IngestClient, LastError};
    use dk_proto::{Category, FeedOpts, Point};
    use futures::StreamExt;
    use tarpc::server::{BaseChannel, Channel};

    use super::*;
    use crate::Emitter;

    /// A supervisor that rejects batches holding a point named `bad`, accepts the rest and
    /// remembers the sizes of the batches it accepted.
    #[derive(Clone, Default)]
    struct Supervisor(Arc<std::sync::Mutex<Vec<usize>>>);

    impl Ingest for Supervisor {
        async fn hello(self, _: tarpc::context::Context, _: Hello) -> HelloReply {
            HelloReply::Refused("test".into())
        }
        async fn push(self, _: tarpc::context::Context, batch: Arc<Batch>) -> Ack {
            if batch.points.iter().any(|p| p.name == "bad") {
                return Ack::Rejected("bad point".into());
            }
            if let Ok(mut sizes) = self.0.lock() {
                sizes.push(batch.points.len());
            }
            Ack::Accepted {
                points: u32::try_from(batch.points.len()).unwrap_or(u32::MAX),
                dropped: 0,
            }
        }
        async fn last_error(self, _: tarpc::context::Context, _: LastError) {}
    }

    fn start(
        supervisor: Supervisor,
    ) -> (Emitter, tokio::task::JoinHandle<Result<(), SenderError>>) {
        let (client_side, server_side) = tarpc::transport::channel::unbounded();
        tokio::spawn(
            BaseChannel::with_defaults(server_side)
                .execute(supervisor.serve())
                .for_each(|f| async move {
                    tokio::spawn(f);
                }),
        );
        let client = IngestClient::new(tarpc::client::Config::default(), client_side).spawn();
        let (emitter, rx) = Emitter::channel(16);
        let task = tokio::spawn(run(
            rx,
            Arc::new(Link::new(client)),
            Arc::new(SenderStats::default()),
        ));
        (emitter, task)
    }

    /// A supervisor that counts the pushes it received and answers each only when the test
    /// hands it a permit.
    #[derive(Clone)]
    struct Gated {
        arrived: Arc<AtomicU64>,
        answers: Arc<tokio::sync::Semaphore>,
    }

    impl Ingest for Gated {
        async fn hello(self, _: tarpc::context::Context, _: Hello) -> HelloReply {
            HelloReply::Refused("test".into())
        }
        async fn push(self, _: tarpc::context::Context, batch: Arc<Batch>) -> Ack {
            self.arrived.fetch_add(1, Ordering::SeqCst);
            if let Ok(permit) = self.answers.acquire().await {
                permit.forget();
            }
            Ack::Accepted {
                points: u32::try_from(batch.points.len()).unwrap_or(u32::MAX),
                dropped: 0,
            }
        }
        async fn last_error(self, _: tarpc::context::Context, _: LastError) {}
    }

    /// Emits `feeds` feeds of 1000 points, each point `payload` bytes of message, from a task
    /// of its own (the emitter waits while the sender does not read); returns the pushes
    /// the gated supervisor has received once they stop growing for 200 ms.
    async fn pushes_in_flight(payload: usize, feeds: usize) -> (u64, Gated) {
        let gated = Gated {
            arrived: Arc::default(),
            answers: Arc::new(tokio::sync::Semaphore::new(0)),
        };
        let (client_side, server_side) = tarpc::transport::channel::unbounded();
        tokio::spawn(
            BaseChannel::with_defaults(server_side)
                .execute(gated.clone().serve())
                .for_each(|f| async move {
                    tokio::spawn(f);
                }),
        );
        let client = IngestClient::new(tarpc::client::Config::default(), client_side).spawn();
        let (emitter, rx) = Emitter::channel(16);
        tokio::spawn(run(
            rx,
            Arc::new(Link::new(client)),
            Arc::new(SenderStats::default()),
        ));
        tokio::spawn(async move {
            for f in 0..feeds {
                let pts = (0..1000)
                    .map(|i| {
                        let mut p = Point::new("m", (f * 1000 + i) as i64);
                        p.fields
                            .push(("message".into(), dk_proto::Value::S("x".repeat(payload))));
                        p
                    })
                    .collect();
                emitter
                    .emit(Category::Logging, "t", FeedOpts::default(), pts)
                    .await;
            }
        });
        // Settled: the count did not move for 200 ms (within a 10 s deadline).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut last = u64::MAX;
        loop {
            let now = gated.arrived.load(Ordering::SeqCst);
            if (now == last && now > 0) || std::time::Instant::now() > deadline {
                return (now, gated);
            }
            last = now;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    #[tokio::test]
    async fn batches_over_the_in_flight_byte_bound_wait_for_the_ack_of_the_one_before() {
        // 1000 points of 900 bytes: each batch alone is over MAX_IN_FLIGHT_BYTES.
        let (arrived, gated) = pushes_in_flight(900, 3).await;
        assert_eq!(arrived, 1, "pushes in flight at once");
        gated.answers.add_permits(1);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while gated.arrived.load(Ordering::SeqCst) < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "the next push never went"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        gated.answers.add_permits(2);
        while gated.arrived.load(Ordering::SeqCst) < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "the last push never went"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn small_batches_still_go_max_in_flight_at_once() {
        // 1000 points of 20 bytes: four batches stay under the byte bound.
        let (arrived, gated) = pushes_in_flight(20, 6).await;
        assert_eq!(arrived, MAX_IN_FLIGHT as u64, "pushes in flight at once");
        gated.answers.add_permits(6);
    }

    fn points(name: &str, n: usize) -> Vec<Point> {
        (0..n).map(|i| Point::new(name, i as i64)).collect()
    }

    /// Polls (with a deadline) until the supervisor has accepted `n` batches.
    async fn wait_batches(supervisor: &Supervisor, n: usize) -> Vec<usize> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let sizes = supervisor.0.lock().map(|s| s.clone()).unwrap_or_default();
            if sizes.len() >= n || std::time::Instant::now() > deadline {
                return sizes;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_lone_point_is_pushed_one_linger_after_it_arrived_also_after_an_idle_gap() {
        let supervisor = Supervisor::default();
        let (emitter, _task) = start(supervisor.clone());
        for round in 1..=2 {
            let t0 = std::time::Instant::now();
            emitter
                .emit(
                    Category::Metric,
                    "lone",
                    FeedOpts::default(),
                    points("ok", 1),
                )
                .await;
            let sizes = wait_batches(&supervisor, round).await;
            assert_eq!(sizes, vec![1; round]);
            // The linger starts with the point (not with some earlier tick), and an idle
            // sender is armed again by the next point.
            assert!(t0.elapsed() >= LINGER, "round {round}: {:?}", t0.elapsed());
            tokio::time::sleep(LINGER * 3).await;
        }
    }

    #[tokio::test]
    async fn emit_acked_resolves_true_once_every_batch_of_its_points_is_accepted() {
        let supervisor = Supervisor::default();
        let (emitter, _task) = start(supervisor.clone());
        // 2,500 points are cut into three batches; the answer waits for all of them.
        let done = emitter
            .emit_acked(
                Category::Logging,
                "beats_output",
                FeedOpts::default(),
                points("ok", 2500),
            )
            .await;
        let acked = tokio::time::timeout(Duration::from_secs(5), done).await;
        assert_eq!(acked, Ok(true));
        let sizes = supervisor.0.lock().map(|s| s.clone()).unwrap_or_default();
        assert_eq!(sizes.iter().sum::<usize>(), 2500, "{sizes:?}");
        assert_eq!(sizes.len(), 3, "{sizes:?}");
    }

    #[tokio::test]
    async fn emit_acked_resolves_false_when_a_batch_of_its_points_is_rejected() {
        let (emitter, _task) = start(Supervisor::default());
        let mut pts = points("ok", 3);
        pts.push(Point::new("bad", 0));
        let done = emitter
            .emit_acked(Category::Logging, "beats_output", FeedOpts::default(), pts)
            .await;
        let acked = tokio::time::timeout(Duration::from_secs(5), done).await;
        assert_eq!(acked, Ok(false));
        // An empty hand-over is acknowledged at once.
        let empty = emitter
            .emit_acked(Category::Logging, "x", FeedOpts::default(), Vec::new())
            .await;
        assert!(empty.await);
    }

    #[tokio::test]
    async fn emit_acked_resolves_false_when_the_sender_is_gone() {
        let (emitter, rx) = Emitter::channel(4);
        let done = emitter
            .emit_acked(
                Category::Logging,
                "beats_output",
                FeedOpts::default(),
                points("ok", 1),
            )
            .await;
        drop(rx);
        assert!(!done.await, "points never pushed were reported durable");
    }
}
