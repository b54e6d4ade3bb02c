//! The running `statsd` input: socket threads batch datagrams to a parse thread; a task flushes every interval.
//!
//! ```text
//!  UDP socket  --recvmmsg--> [receiver thread] --+
//!                                                +--bounded queue--> [parse thread] -> Aggregator
//!  Unix socket --recvmmsg--> [receiver thread] --+                                        |
//!                                                     tokio task: every interval, flush --+--> emitter
//! ```
//!
//! Receiver threads copy datagrams into recycled batch buffers (no allocation per packet once
//! warm) and never block on the parser: when `allowed_pending_messages` datagrams are already
//! queued, new ones are dropped and counted, as Datakit drops them.

use dk_proto::clock::now_ns;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dk_proto::{Category, Point};
use dk_worker::{FeedOpts, Input, InputContext};
use futures::future::BoxFuture;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::aggregate::{Aggregator, Outcome};
use crate::config::{DEFAULT_READ_BUFFER, StatsdConfig, clamp_interval};
use crate::parser::{Item, ParseError, ParseOptions, parse_datagram};
use dk_worker::serve::udp::{self, DatagramSocket, MultiRecv};
use dk_worker::telemetry::{Telemetry, reason};

/// The input and feed name.
pub const INPUT_NAME: &str = "statsd";
/// Datagrams taken per `recvmmsg` call.
pub const RECV_SLOTS: usize = 32;
/// Datagrams gathered before a batch is handed to the parser.
pub const BATCH_TARGET: usize = 128;
/// Longest time a received datagram waits in its receiver before being handed over.
pub const LINGER: Duration = Duration::from_millis(1);
/// Datagrams in one drain that mark traffic as steady (see [`Next::Coalesce`]).
const COALESCE_MIN: usize = 8;
/// Sleep between drains under steady traffic.
const COALESCE_SLEEP: Duration = Duration::from_micros(200);
/// How long a receiver thread blocks before checking for shutdown.
const RECV_TIMEOUT: Duration = Duration::from_millis(200);
/// Batches in flight to the parse thread at most (the byte limit usually binds first).
const MAX_QUEUED_BATCHES: usize = 4096;
/// Points per emitter call (as Datakit's feed batches).
const FEED_BATCH: usize = 1024;
/// Points per feed of a flush. The emitter's channel holds a fixed number of feeds whatever
/// their size, so small feeds bound what a large flush leaves waiting there (the sender
/// regroups feeds into batches of 1000 points for the supervisor, so the wire is unchanged).
const FLUSH_FEED: usize = 128;
/// Feeds a flush prepares ahead of the emitter.
const FLUSH_AHEAD: usize = 8;
/// Minimum time between two warnings of the same kind.
const LOG_EVERY: Duration = Duration::from_secs(60);

type Labels = Vec<(String, String)>;

/// The family's self-monitoring metrics, shared by every instance of one build and
/// registered once.
/// Datagrams, bytes, drops (`queue_full`: `allowed_pending_messages` reached; `truncated`:
/// longer than 64 KiB; `kernel`: receive buffer full) and parse errors are in the kit's uniform
/// telemetry.
#[derive(Clone, Debug, Default)]
pub struct StatsdMetrics {
    points: Family<Labels, Counter>,
    series: Family<Labels, Gauge>,
    series_dropped: Family<Labels, Counter>,
    telemetry: Telemetry,
}

impl StatsdMetrics {
    /// The same counters reporting into the generation's uniform `telemetry`.
    #[must_use]
    pub fn with_telemetry(mut self, telemetry: Telemetry) -> StatsdMetrics {
        self.telemetry = telemetry;
        self
    }

    fn register(&self, ctx: &InputContext) {
        self.telemetry.register(ctx);
        ctx.register_metric(
            "datakit_statsd_points",
            "Points handed to the agent (metrics and events)",
            self.points.clone(),
        );
        ctx.register_metric(
            "datakit_statsd_series",
            "Series held by the aggregator after the last flush",
            self.series.clone(),
        );
        ctx.register_metric(
            "datakit_statsd_series_dropped",
            "Samples dropped because they would start a new series (or set member) while max_series are held",
            self.series_dropped.clone(),
        );
    }
}

/// The counter of `family` for `pairs`. The family's lock guard is released before
/// returning, so several series of one family can be resolved in one expression.
fn counter(family: &Family<Labels, Counter>, pairs: &[(&str, &str)]) -> Counter {
    family.get_or_create(&labels(pairs)).clone()
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// One `[[inputs.statsd]]` instance, ready to run.
pub struct StatsdInput {
    cfg: StatsdConfig,
    interval: Duration,
    metrics: StatsdMetrics,
    register_metrics: bool,
}

impl StatsdInput {
    /// Builds an instance from its checked config, clamping the interval into 1 s–60 s with a
    /// logged warning as Datakit does. `register_metrics` is true for exactly one instance
    /// of a build (the metrics are shared).
    pub fn new(cfg: StatsdConfig, metrics: StatsdMetrics, register_metrics: bool) -> StatsdInput {
        let interval = match clamp_interval(cfg.interval) {
            Ok(d) => d,
            Err((configured, used)) => {
                tracing::warn!(
                    input = INPUT_NAME,
                    "interval {} is outside 1s-60s; using {}",
                    dk_proto::duration::format(configured),
                    dk_proto::duration::format(used)
                );
                used
            }
        };
        StatsdInput {
            cfg,
            interval,
            metrics,
            register_metrics,
        }
    }

    /// The same input with an exact flush interval (tests).
    #[doc(hidden)]
    pub fn with_interval(mut self, interval: Duration) -> StatsdInput {
        self.interval = interval;
        self
    }
}

impl Input for StatsdInput {
    fn name(&self) -> &str {
        INPUT_NAME
    }

    fn run(self: Box<Self>, ctx: InputContext) -> BoxFuture<'static, ()> {
        Box::pin(run(*self, ctx))
    }
}

/// A received datagram batch, packed into one reused buffer.
struct Packed {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    time_ns: i64,
    home: SyncSender<Packed>,
}

impl Packed {
    fn new(home: SyncSender<Packed>) -> Packed {
        Packed {
            bytes: Vec::with_capacity(BATCH_TARGET * 256),
            ends: Vec::with_capacity(BATCH_TARGET + RECV_SLOTS),
            time_ns: 0,
            home,
        }
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn push(&mut self, d: &[u8]) {
        self.bytes.extend_from_slice(d);
        self.ends.push(self.bytes.len());
    }

    fn datagrams(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let d = &self.bytes[start..end];
            start = end;
            d
        })
    }

    /// Back to its receiver's free list (or freed when that list is full or gone).
    fn recycle(mut self) {
        self.bytes.clear();
        self.ends.clear();
        // Very large buffers (a burst of 64 KiB datagrams) are not kept around.
        if self.bytes.capacity() > BATCH_TARGET * 8 * 1024 {
            self.bytes = Vec::with_capacity(BATCH_TARGET * 256);
        }
        let home = self.home.clone();
        let _ = home.try_send(self);
    }
}

/// Per-listener counters, resolved once.
#[derive(Clone)]
struct ListenerCounters {
    packets: Counter,
    bytes: Counter,
    queue_full: Counter,
    truncated: Counter,
}

impl ListenerCounters {
    fn new(m: &StatsdMetrics, listener: &str) -> ListenerCounters {
        let l = m.telemetry.listener(INPUT_NAME, listener);
        ListenerCounters {
            queue_full: l.dropped("queue_full"),
            truncated: l.dropped(reason::TRUNCATED),
            packets: l.events,
            bytes: l.bytes,
        }
    }
}

/// What a receiver thread shares with the rest of the input.
struct ReceiverCtx {
    listener: String,
    to_parser: SyncSender<Packed>,
    /// Bytes of datagrams queued to the parser (shared by the instance's receivers).
    pending: Arc<AtomicUsize>,
    /// Most bytes queued before datagrams are dropped.
    limit: usize,
    stop: Arc<AtomicBool>,
    counters: ListenerCounters,
}

/// The queue bound for `allowed_pending_messages`: as many bytes as that many messages take
/// at most in Datakit (64 KiB each), so small datagrams are not limited by count. Capped at
/// 1 GiB.
pub fn queue_limit_bytes(allowed_pending_messages: usize) -> usize {
    allowed_pending_messages
        .saturating_mul(udp::SLOT_SIZE)
        .min(1 << 30)
}

/// What the receiver thread does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    /// Wait for the next datagram (or the end of the current batch's linger time).
    Wait,
    /// Read again at once: the last read filled every slot, more is queued.
    Again,
    /// Traffic is steady: sleep a little, then take everything queued meanwhile.
    Coalesce,
}

/// The receiver thread: `recvmmsg` batches, packed and queued to the parser without blocking.
///
/// Under steady traffic it does not wake per datagram: after draining the socket it sleeps
/// [`COALESCE_SLEEP`] and then takes what queued up in one call (the kernel buffer holds far
/// more than that), which keeps the CPU cost per datagram low on small machines. A batch is
/// handed to the parser when it holds [`BATCH_TARGET`] datagrams or its first datagram is
/// [`LINGER`] old (or the socket went quiet that long): the parser wakes about once per
/// millisecond under load. Aggregation does not care about a millisecond.
fn receive_loop(socket: DatagramSocket, rc: ReceiverCtx) {
    if let Err(e) = socket.set_blocking_timeout(RECV_TIMEOUT) {
        tracing::error!(input = INPUT_NAME, listener = %rc.listener, "cannot set up the socket: {e}");
        return;
    }
    let mut mr = MultiRecv::new(RECV_SLOTS);
    let (free_tx, free_rx) = sync_channel::<Packed>(64);
    let mut sender = BatchSender {
        rc: &rc,
        last_warn: None,
        dropped_since_warn: 0,
    };
    let mut batch: Option<(Packed, Instant)> = None;
    let mut next = Next::Wait;
    loop {
        if rc.stop.load(Ordering::Relaxed) {
            if let Some((b, _)) = batch.take() {
                sender.hand_over(b);
            }
            return;
        }
        let received = match (next, &batch) {
            (Next::Again, _) => mr.recv(socket.as_fd(), true),
            (Next::Coalesce, _) => {
                std::thread::sleep(COALESCE_SLEEP);
                mr.recv(socket.as_fd(), true)
            }
            (Next::Wait, None) => mr.recv(socket.as_fd(), false),
            (Next::Wait, Some((_, started))) => {
                let left = LINGER.saturating_sub(started.elapsed());
                match udp::wait_readable(socket.as_fd(), left) {
                    Ok(true) => mr.recv(socket.as_fd(), true),
                    Ok(false) => {
                        if let Some((b, _)) = batch.take() {
                            sender.hand_over(b);
                        }
                        continue;
                    }
                    Err(e) => Err(e),
                }
            }
        };
        let n = match received {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                next = Next::Wait;
                if batch
                    .as_ref()
                    .is_some_and(|(_, started)| started.elapsed() >= LINGER)
                    && let Some((b, _)) = batch.take()
                {
                    sender.hand_over(b);
                }
                continue;
            }
            Err(e) => {
                tracing::error!(input = INPUT_NAME, listener = %rc.listener, "receive failed: {e}");
                next = Next::Wait;
                std::thread::sleep(RECV_TIMEOUT);
                continue;
            }
        };
        next = if n == RECV_SLOTS {
            Next::Again
        } else if n >= COALESCE_MIN {
            Next::Coalesce
        } else {
            Next::Wait
        };
        let (b, _) = batch.get_or_insert_with(|| {
            let mut b = free_rx
                .try_recv()
                .unwrap_or_else(|_| Packed::new(free_tx.clone()));
            b.time_ns = now_ns();
            (b, Instant::now())
        });
        let mut bytes = 0u64;
        let mut truncated = 0u64;
        for i in 0..n {
            let Some((d, cut)) = mr.datagram(i) else {
                break;
            };
            bytes += d.len() as u64;
            if cut {
                truncated += 1;
            } else {
                b.push(d);
            }
        }
        rc.counters.packets.inc_by(n as u64);
        rc.counters.bytes.inc_by(bytes);
        if truncated > 0 {
            rc.counters.truncated.inc_by(truncated);
        }
        let full = b.len() >= BATCH_TARGET;
        let old = batch
            .as_ref()
            .is_some_and(|(_, started)| started.elapsed() >= LINGER);
        if (full || old)
            && let Some((b, _)) = batch.take()
        {
            sender.hand_over(b);
        }
    }
}

/// Queues batches to the parser, dropping (and counting) what does not fit.
struct BatchSender<'a> {
    rc: &'a ReceiverCtx,
    last_warn: Option<Instant>,
    dropped_since_warn: u64,
}

impl BatchSender<'_> {
    fn hand_over(&mut self, batch: Packed) {
        let rc = self.rc;
        let count = batch.len();
        if count == 0 {
            batch.recycle();
            return;
        }
        let size = batch.bytes.len();
        // A batch is accepted while less than the limit is queued (it may overshoot).
        let queued_before = rc.pending.fetch_add(size, Ordering::AcqRel);
        let refused = if queued_before >= rc.limit {
            Some(batch)
        } else {
            match rc.to_parser.try_send(batch) {
                Ok(()) => None,
                Err(TrySendError::Full(b) | TrySendError::Disconnected(b)) => Some(b),
            }
        };
        let Some(b) = refused else {
            return;
        };
        rc.pending.fetch_sub(size, Ordering::AcqRel);
        rc.counters.queue_full.inc_by(count as u64);
        self.dropped_since_warn += count as u64;
        b.recycle();
        if self.last_warn.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            tracing::warn!(
                input = INPUT_NAME,
                listener = %rc.listener,
                dropped = self.dropped_since_warn,
                "statsd queue full: datagrams dropped; raise allowed_pending_messages"
            );
            self.last_warn = Some(Instant::now());
            self.dropped_since_warn = 0;
        }
    }
}

/// Per-instance parse counters, resolved once.
struct ParseCounters {
    errors: Vec<Counter>,
    empty_name: Counter,
    events_dropped: Counter,
    series_cap: Counter,
}

impl ParseCounters {
    fn new(m: &StatsdMetrics, instance: &str) -> ParseCounters {
        let c = |reason: &str| m.telemetry.parse_error(INPUT_NAME, reason);
        ParseCounters {
            errors: ParseError::REASONS.iter().map(|r| c(r)).collect(),
            empty_name: c("empty_measurement_or_field"),
            events_dropped: c("too_many_events"),
            series_cap: counter(&m.series_dropped, &[("instance", instance)]),
        }
    }
}

fn reason_index(e: ParseError) -> usize {
    ParseError::REASONS
        .iter()
        .position(|r| *r == e.reason())
        .unwrap_or(0)
}

/// The parse thread: every queued batch goes through the parser into the aggregator.
fn parse_loop(
    rx: Receiver<Packed>,
    agg: Arc<Mutex<Aggregator>>,
    pending: Arc<AtomicUsize>,
    opts: ParseOptions,
    counters: ParseCounters,
    instance: String,
) {
    let mut errors = vec![0u64; ParseError::REASONS.len()];
    let mut window_errors = 0u64;
    let mut sample: Option<String> = None;
    let mut last_warn: Option<Instant> = None;
    let mut cap_window = 0u64;
    let mut cap_warned: Option<Instant> = None;
    for batch in rx.iter() {
        let mut empty_name = 0u64;
        let mut events_dropped = 0u64;
        let mut series_cap = 0u64;
        let max_series;
        {
            let Ok(mut agg) = agg.lock() else {
                return;
            };
            max_series = agg.config().max_series;
            for d in batch.datagrams() {
                parse_datagram(d, opts, &mut |item| match item {
                    Item::Error(e, line) => {
                        errors[reason_index(e)] += 1;
                        if sample.is_none() {
                            sample = Some(format!("{e}: {line}"));
                        }
                    }
                    item => match agg.ingest(&item, batch.time_ns) {
                        Outcome::EmptyName => empty_name += 1,
                        Outcome::EventOverflow => events_dropped += 1,
                        Outcome::SeriesCap => series_cap += 1,
                        Outcome::Added | Outcome::Ignored => {}
                    },
                });
            }
        }
        pending.fetch_sub(batch.bytes.len(), Ordering::AcqRel);
        batch.recycle();
        for (n, c) in errors.iter_mut().zip(&counters.errors) {
            if *n > 0 {
                c.inc_by(*n);
                window_errors += *n;
                *n = 0;
            }
        }
        if empty_name > 0 {
            counters.empty_name.inc_by(empty_name);
            window_errors += empty_name;
            if sample.is_none() {
                sample = Some("a metric name gives an empty measurement or field".into());
            }
        }
        if events_dropped > 0 {
            counters.events_dropped.inc_by(events_dropped);
        }
        if series_cap > 0 {
            counters.series_cap.inc_by(series_cap);
            cap_window += series_cap;
            if cap_warned.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                tracing::warn!(
                    input = INPUT_NAME,
                    instance = %instance,
                    dropped = cap_window,
                    max_series,
                    "statsd holds max_series series: samples of new series or set members are dropped \
                     (datakit_statsd_series_dropped_total); raise max_series if they are wanted, \
                     or find the sender of many distinct names or tag values"
                );
                cap_warned = Some(Instant::now());
                cap_window = 0;
            }
        }
        if window_errors > 0 && last_warn.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            tracing::warn!(
                input = INPUT_NAME,
                instance = %instance,
                skipped = window_errors,
                "statsd lines skipped or partly ignored; e.g. {}",
                sample.take().unwrap_or_default()
            );
            last_warn = Some(Instant::now());
            window_errors = 0;
        }
    }
}

/// Applies `read_buffer_size` (the supervisor gave the Unix socket its mode when binding it).
fn prepare_socket(socket: &DatagramSocket, cfg: &StatsdConfig, address: &str) {
    dk_worker::listen::apply_read_buffer(
        socket.as_fd(),
        cfg.read_buffer_size,
        cfg.read_buffer_size == DEFAULT_READ_BUFFER,
        INPUT_NAME,
        address,
    );
}

async fn run(input: StatsdInput, ctx: InputContext) {
    let StatsdInput {
        cfg,
        interval,
        metrics,
        register_metrics,
    } = input;
    if register_metrics {
        metrics.register(&ctx);
    }
    let instance = cfg.instance_label();
    let stop = Arc::new(AtomicBool::new(false));
    let pending = Arc::new(AtomicUsize::new(0));
    let agg = Arc::new(Mutex::new(Aggregator::new(cfg.aggregate.clone())));
    let queue_batches = cfg.allowed_pending_messages.clamp(2, MAX_QUEUED_BATCHES);
    let (to_parser, from_receivers) = sync_channel::<Packed>(queue_batches);

    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    for spec in cfg.listeners() {
        let sockets = match spec.kind {
            dk_proto::rpc::ListenerKind::Udp => dk_worker::listen::udp_all(&ctx, &spec.address)
                .map(|v| v.into_iter().map(DatagramSocket::Udp).collect::<Vec<_>>()),
            _ => dk_worker::listen::unix_datagram(&ctx, &spec.address)
                .map(|s| vec![DatagramSocket::Unix(s)]),
        };
        let sockets = match sockets {
            Ok(s) => s,
            // The agent could not bind an optional socket and has said so already.
            Err(dk_worker::listen::ListenError::Missing(_)) if spec.optional => {
                tracing::info!(input = INPUT_NAME, listener = %spec.address, "not listening on this address (the agent could not bind it)");
                continue;
            }
            Err(e) => {
                tracing::error!(input = INPUT_NAME, "{e}");
                ctx.emitter
                    .last_error(INPUT_NAME, &cfg.source, Category::Metric, e.to_string())
                    .await;
                continue;
            }
        };
        let path = spec.address.clone();
        for socket in sockets {
            prepare_socket(&socket, &cfg, &path);
            if let DatagramSocket::Udp(s) = &socket {
                udp::watch_kernel_drops(
                    s.as_raw_fd(),
                    metrics.telemetry.dropped(INPUT_NAME, reason::KERNEL),
                    INPUT_NAME.to_string(),
                    ctx.shutdown.clone(),
                );
            }
            let rc = ReceiverCtx {
                listener: spec.address.clone(),
                to_parser: to_parser.clone(),
                pending: pending.clone(),
                limit: queue_limit_bytes(cfg.allowed_pending_messages),
                stop: stop.clone(),
                counters: ListenerCounters::new(&metrics, &spec.address),
            };
            match std::thread::Builder::new()
                .name("statsd-recv".into())
                .spawn(move || receive_loop(socket, rc))
            {
                Ok(h) => threads.push(h),
                Err(e) => {
                    ctx.emitter
                        .last_error(
                            INPUT_NAME,
                            &cfg.source,
                            Category::Metric,
                            format!("cannot start a receiver thread for {}: {e}", spec.address),
                        )
                        .await;
                }
            }
        }
    }
    drop(to_parser);
    let parser = {
        let agg = agg.clone();
        let pending = pending.clone();
        let opts = ParseOptions {
            datadog_extensions: cfg.datadog_extensions,
        };
        let counters = ParseCounters::new(&metrics, &instance);
        let instance = instance.clone();
        std::thread::Builder::new()
            .name("statsd-parse".into())
            .spawn(move || parse_loop(from_receivers, agg, pending, opts, counters, instance))
    };
    let parser = match parser {
        Ok(h) => Some(h),
        Err(e) => {
            ctx.emitter
                .last_error(
                    INPUT_NAME,
                    &cfg.source,
                    Category::Metric,
                    format!("cannot start the parse thread: {e}"),
                )
                .await;
            None
        }
    };
    tracing::info!(
        input = INPUT_NAME,
        instance = %instance,
        interval = %dk_proto::duration::format(interval),
        listeners = threads.len(),
        "statsd input started"
    );

    let series = metrics
        .series
        .get_or_create(&labels(&[("instance", &instance)]))
        .clone();
    let flusher = Flusher {
        agg: agg.clone(),
        points: counter(&metrics.points, &[("instance", &instance)]),
        series,
    };
    let mut flush_tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    flush_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = ctx.shutdown.cancelled() => break,
            _ = flush_tick.tick() => {
                if !flusher.flush(&ctx).await {
                    break;
                }
            }
        }
    }

    // Stop receiving, let the parser drain what was queued, then flush once more.
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
        if let Some(p) = parser {
            let _ = p.join();
        }
    })
    .await;
    flusher.flush(&ctx).await;
    tracing::info!(input = INPUT_NAME, instance = %instance, "statsd input stopped");
}

/// Turns the aggregator's state into points every interval.
struct Flusher {
    agg: Arc<Mutex<Aggregator>>,
    points: Counter,
    series: Gauge,
}

impl Flusher {
    /// Flushes and emits; `false` when the runtime is gone.
    ///
    /// The series are taken from the aggregator at once (the parse thread goes on with fresh
    /// ones) and turned into points [`FLUSH_FEED`] at a time on a blocking thread, at most
    /// [`FLUSH_AHEAD`] batches ahead of the emitter, so a flush of a million series neither
    /// stalls the async thread (health checks) nor holds all its points in memory at once.
    async fn flush(&self, ctx: &InputContext) -> bool {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Point>>(FLUSH_AHEAD);
        let agg = self.agg.clone();
        let work = tokio::task::spawn_blocking(move || -> Option<(Vec<Point>, usize)> {
            let mut drain = agg.lock().ok()?.take(now_ns());
            let events = drain.take_events();
            loop {
                let mut chunk = Vec::with_capacity(FLUSH_FEED.min(drain.remaining()));
                let more = drain.next_chunk(FLUSH_FEED, &mut chunk);
                if !chunk.is_empty() && tx.blocking_send(chunk).is_err() {
                    break;
                }
                if !more {
                    break;
                }
            }
            let kept = drain.finish();
            let mut agg = agg.lock().ok()?;
            agg.restore(kept);
            Some((events, agg.series_len()))
        });
        let mut ok = true;
        while let Some(chunk) = rx.recv().await {
            self.points.inc_by(chunk.len() as u64);
            if !ctx
                .emitter
                .emit(Category::Metric, INPUT_NAME, FeedOpts::default(), chunk)
                .await
            {
                ok = false;
                break;
            }
        }
        drop(rx);
        let Ok(Some((events, series))) = work.await else {
            return false;
        };
        self.series.set(i64::try_from(series).unwrap_or(i64::MAX));
        self.points.inc_by(events.len() as u64);
        ok && emit_chunks(ctx, Category::KeyEvent, events).await
    }
}

/// Emits `points` in feed batches, each in its own exactly sized vector (a batch split off a
/// larger vector would keep the whole allocation alive while it waits in the emitter).
async fn emit_chunks(ctx: &InputContext, category: Category, points: Vec<Point>) -> bool {
    let mut rest = points.into_iter();
    loop {
        let batch: Vec<Point> = rest.by_ref().take(FEED_BATCH).collect();
        if batch.is_empty() {
            return true;
        }
        if !ctx
            .emitter
            .emit(category, INPUT_NAME, FeedOpts::default(), batch)
            .await
        {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use dk_proto::Value;
    use dk_proto::rpc::{InheritedListener, ListenerKind};
    use dk_worker::Emitter;
    use dk_worker::emitter::Message;

    use super::*;

    fn unix_path(tag: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!(
            "dk-statsd-{tag}-{}-{}.sock",
            std::process::id(),
            now_ns()
        ))
    }

    /// Receives feeds until `done` says the collected points are complete.
    async fn collect(
        rx: &mut tokio::sync::mpsc::Receiver<Message>,
        mut done: impl FnMut(&[(Category, Point)]) -> bool,
    ) -> Vec<(Category, Point)> {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !done(&got) {
            let msg = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .expect("points in time")
                .expect("channel open");
            if let Message::Feed(f) = msg {
                assert_eq!(f.input, INPUT_NAME);
                got.extend(f.points.into_iter().map(|p| (f.category, p)));
            }
        }
        got
    }

    fn sum_counter(points: &[(Category, Point)], name: &str, field: &str) -> f64 {
        points
            .iter()
            .filter(|(_, p)| p.name == name)
            .filter_map(|(_, p)| match p.get_field(field) {
                Some(Value::F(v)) => Some(*v),
                _ => None,
            })
            .sum()
    }

    #[tokio::test]
    async fn receives_udp_and_unix_datagrams_and_flushes_every_interval() {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let udp_addr = udp.local_addr().expect("addr").to_string();
        let path = unix_path("run");
        let unix = std::os::unix::net::UnixDatagram::bind(&path).expect("bind unix");
        let path_text = path.to_string_lossy().to_string();
        let bound_mode = {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777
        };

        let (emitter, mut rx) = Emitter::channel(64);
        let (mut ctx, shutdown, _pause) = InputContext::for_test(emitter);
        ctx.listeners = vec![
            InheritedListener {
                address: udp_addr.clone(),
                kind: ListenerKind::Udp,
                fd: udp.as_raw_fd(),
            },
            InheritedListener {
                address: path_text.clone(),
                kind: ListenerKind::UnixDatagram,
                fd: unix.as_raw_fd(),
            },
        ];
        let toml = format!(
            "service_address = \"{udp_addr}\"\nservice_unix_address = \"{path_text}\"\n\
             datadog_extensions = true\npercentiles = [50.0]\nread_buffer_size = 1048576"
        );
        let cfg = crate::config::parse(&toml).expect("valid");
        let input = StatsdInput::new(cfg, StatsdMetrics::default(), true)
            .with_interval(Duration::from_millis(200));
        let registry = ctx.metrics.clone();
        let task = tokio::spawn(Box::new(input).run(ctx));

        let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        tx.send_to(b"app.hits:1|c\napp.hits:2|c|@0.5\nbad line", &udp_addr)
            .expect("send");
        tx.send_to(
            b"app.lat:10|ms|#env:prod\napp.lat:30|ms|#env:prod",
            &udp_addr,
        )
        .expect("send");
        let utx = std::os::unix::net::UnixDatagram::unbound().expect("unbound");
        utx.send_to(b"app.hits:10|c\n_e{2,3}:hi|all|t:warning", &path)
            .expect("send unix");

        let got = collect(&mut rx, |pts| {
            sum_counter(pts, "app", "hits") >= 15.0
                && pts.iter().any(|(_, p)| p.get_field("lat_count").is_some())
                && pts.iter().any(|(c, _)| *c == Category::KeyEvent)
        })
        .await;
        assert_eq!(sum_counter(&got, "app", "hits"), 15.0);
        let lat = got
            .iter()
            .find(|(_, p)| p.get_field("lat_count").is_some())
            .map(|(_, p)| p.clone())
            .expect("timing point");
        assert_eq!(lat.get_field("lat_count"), Some(&Value::I(2)));
        assert_eq!(lat.get_field("lat_mean"), Some(&Value::F(20.0)));
        assert_eq!(lat.get_field("lat_50_percentile"), Some(&Value::F(30.0)));
        assert_eq!(lat.get_tag("env"), Some("prod"));
        let (_, event) = got
            .iter()
            .find(|(c, _)| *c == Category::KeyEvent)
            .expect("event");
        assert_eq!(event.get_tag("df_status"), Some("warning"));

        // The worker leaves the socket's mode alone (the supervisor sets it when binding).
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(
            mode & 0o777,
            bound_mode,
            "the worker changed the socket's mode"
        );

        // Counters: 3 datagrams, one parse error.
        let mut text = String::new();
        {
            let r = registry.lock().expect("registry");
            prometheus_client::encoding::text::encode(&mut text, &r).expect("encode");
        }
        assert!(
            text.contains(&format!(
                "datakit_input_received_events_total{{input=\"statsd\",listener=\"{udp_addr}\"}} 2"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "datakit_input_received_events_total{{input=\"statsd\",listener=\"{path_text}\"}} 1"
            )),
            "{text}"
        );
        assert!(
            text.contains(
                "datakit_input_parse_errors_total{input=\"statsd\",reason=\"no_value\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("datakit_input_dropped_total{input=\"statsd\",reason=\"kernel\"} 0"),
            "{text}"
        );

        // Data received just before shutdown is flushed on the way out.
        tx.send_to(b"late.x:7|c", &udp_addr).expect("send");
        tokio::time::sleep(Duration::from_millis(50)).await;
        shutdown.cancel();
        let rest = collect(&mut rx, |pts| sum_counter(pts, "late", "x") >= 7.0).await;
        assert_eq!(sum_counter(&rest, "late", "x"), 7.0);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("input stops")
            .expect("no panic");
        let _ = std::fs::remove_file(&path);
    }

    #[tokio::test]
    async fn a_large_flush_streams_its_points_and_leaves_the_async_thread_free() {
        const SERIES: usize = 300_000;
        let mut agg = Aggregator::new(crate::aggregate::AggregatorConfig {
            max_series: SERIES,
            ..crate::aggregate::AggregatorConfig::default()
        });
        let mut line = String::new();
        for i in 0..SERIES {
            line.clear();
            line.push_str(&format!("big.s{i}:{i}|c|#env:prod"));
            parse_datagram(line.as_bytes(), ParseOptions::default(), &mut |item| {
                agg.ingest(&item, 1);
            });
        }
        assert_eq!(agg.series_len(), SERIES);
        let (emitter, mut rx) = Emitter::channel(4);
        let (ctx, _shutdown, _pause) = InputContext::for_test(emitter);
        let flusher = Flusher {
            agg: Arc::new(Mutex::new(agg)),
            points: Counter::default(),
            series: Gauge::default(),
        };
        // The health check runs on this same (single) thread: a ticker stands in for it.
        let done = Arc::new(AtomicBool::new(false));
        let (running_tx, running) = tokio::sync::oneshot::channel();
        let ticker = {
            let done = done.clone();
            tokio::spawn(async move {
                let mut last = Instant::now();
                let mut worst = Duration::ZERO;
                let mut running_tx = Some(running_tx);
                while !done.load(Ordering::Relaxed) {
                    if let Some(tx) = running_tx.take() {
                        let _ = tx.send(());
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    worst = worst.max(last.elapsed());
                    last = Instant::now();
                }
                worst
            })
        };
        running.await.expect("the ticker runs");
        let consumer = tokio::spawn(async move {
            let (mut points, mut feeds, mut largest, mut sum) = (0usize, 0usize, 0usize, 0.0);
            while let Some(msg) = rx.recv().await {
                if let Message::Feed(f) = msg {
                    feeds += 1;
                    largest = largest.max(f.points.len());
                    points += f.points.len();
                    for p in &f.points {
                        if let Some(Value::F(v)) = p.fields.first().map(|f| &f.1) {
                            sum += v;
                        }
                    }
                }
            }
            (points, feeds, largest, sum)
        });
        let started = Instant::now();
        assert!(flusher.flush(&ctx).await);
        let took = started.elapsed();
        done.store(true, Ordering::Relaxed);
        drop(ctx);
        let worst = ticker.await.expect("ticker");
        let (points, feeds, largest, sum) = consumer.await.expect("consumer");
        assert_eq!(points, SERIES);
        assert_eq!(flusher.points.get(), SERIES as u64);
        assert_eq!(sum, (0..SERIES).map(|i| i as f64).sum::<f64>());
        // Building (and, before, sorting) 300k points takes far longer than this in a debug
        // build (the whole flush about 0.6 s; the thread's longest stall here about 10 ms).
        assert!(
            worst < Duration::from_millis(200),
            "the async thread was blocked {worst:?} during a {took:?} flush"
        );
        assert!(
            largest <= FLUSH_FEED && feeds >= SERIES / FLUSH_FEED,
            "{feeds} feeds, largest {largest}"
        );
        assert_eq!(flusher.series.get(), 0);
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = udp.local_addr().expect("addr").to_string();
        let (emitter, _rx) = Emitter::channel(64);
        let (ctx, _shutdown, _pause) = InputContext::for_test(emitter);
        let metrics = StatsdMetrics::default();
        let (to_parser, from_receivers) = sync_channel::<Packed>(16);
        let pending = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let rc = ReceiverCtx {
            listener: addr.clone(),
            to_parser,
            pending: pending.clone(),
            limit: 15,
            stop: stop.clone(),
            counters: ListenerCounters::new(&metrics, &addr),
        };
        metrics.register(&ctx);
        let sock = DatagramSocket::Udp(udp);
        let recv_thread = std::thread::spawn(move || receive_loop(sock, rc));
        // Nobody parses: once 15 bytes are queued (3 datagrams of 7 bytes) the rest is dropped.
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        for i in 0..20 {
            tx.send_to(format!("a.b:{i}|c").as_bytes(), &addr)
                .expect("send");
            std::thread::sleep(Duration::from_millis(3));
        }
        let counters = ListenerCounters::new(&metrics, &addr);
        let deadline = Instant::now() + Duration::from_secs(5);
        while counters.packets.get() < 20 {
            assert!(
                Instant::now() < deadline,
                "received {}",
                counters.packets.get()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.store(true, Ordering::Relaxed);
        recv_thread.join().expect("receiver ends");
        let batches: Vec<Packed> = from_receivers.try_iter().collect();
        let queued: usize = batches.iter().map(Packed::len).sum();
        let queued_bytes: usize = batches.iter().map(|b| b.bytes.len()).sum();
        assert_eq!(pending.load(Ordering::Acquire), queued_bytes);
        assert_eq!(queued as u64 + counters.queue_full.get(), 20);
        // Batches are accepted while less than the limit is queued (the last may overshoot).
        assert!(
            queued_bytes >= 15 && (3..20).contains(&queued),
            "queued {queued}"
        );
        assert!(counters.queue_full.get() > 0);
    }
}
