//! The running `graphite` input: the I/O shell around [`Processor`] — a UDP receiver, a TCP
//! acceptor with one task per connection, and a batcher that hands points to the emitter.
//!
//! # Design
//!
//! Readers turn each read (a datagram, a burst of datagrams, or a TCP read) into a `Vec` of
//! points with the pure [`Processor`] and send it over a bounded channel to the batcher, which
//! flushes once `buffer_size` points are buffered or every `interval` (Datakit's flush rules).
//! The bounded channel and the emitter's back-pressure reach the readers: a slow agent slows
//! TCP clients down (flow control) and lets the kernel queue datagrams. Counters are updated
//! once per read; malformed lines are logged at most once per [`REPORT_EVERY`] per input.
//! TCP lines split across reads are joined by a [`LineFramer`]; a last line without newline is
//! kept when the client closes.

use dk_proto::clock::now_ns;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dk_proto::{Category, Point};
use dk_worker::{FeedOpts, Input, InputContext};
use futures::future::BoxFuture;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::config::{GraphiteConfig, tcp_address, udp_address};
use crate::line::{LineError, LineFramer, MAX_LINE};
use crate::metrics::{Handles, Metrics};
use crate::process::{Counts, Processor};

/// The input and feed name.
pub const INPUT_NAME: &str = "graphite";

/// Most often malformed lines (or socket errors) are logged and reported, per input.
pub const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Size of a TCP read (per connection).
const READ_BUF: usize = 32 * 1024;
/// Largest UDP datagram.
const DATAGRAM_BUF: usize = 64 * 1024;
/// Datagrams drained without waiting before their points are handed on.
const DATAGRAM_BURST: usize = 64;
/// Reads in flight between the readers and the batcher.
const CHANNEL_DEPTH: usize = 16;

/// One `[[inputs.graphite]]` instance, ready to run.
pub struct GraphiteInput {
    cfg: GraphiteConfig,
    processor: Arc<Processor>,
    metrics: Metrics,
    register_metrics: bool,
}

impl GraphiteInput {
    /// An instance from its checked config and compiled processor. The instances of one worker
    /// share `metrics`; exactly one of them (`register_metrics`) registers it.
    pub fn new(
        cfg: GraphiteConfig,
        processor: Processor,
        metrics: Metrics,
        register_metrics: bool,
    ) -> GraphiteInput {
        GraphiteInput {
            cfg,
            processor: Arc::new(processor),
            metrics,
            register_metrics,
        }
    }
}

impl Input for GraphiteInput {
    fn name(&self) -> &str {
        INPUT_NAME
    }

    fn run(self: Box<Self>, ctx: InputContext) -> BoxFuture<'static, ()> {
        Box::pin(serve(*self, ctx))
    }
}

/// Rate limit for reports of malformed lines and socket errors.
#[derive(Debug)]
struct Reporter {
    address: String,
    /// Malformed lines and socket errors.
    problems: Tally,
    /// Kernel drops, reported on their own schedule.
    drops: Tally,
}

/// A count of events reported at most every [`REPORT_EVERY`]: (last report, count since).
#[derive(Debug, Default)]
struct Tally(Mutex<(Option<Instant>, u64)>);

impl Tally {
    /// Adds `n` events; returns how many happened since the last report when one is due.
    fn due(&self, n: u64) -> Option<u64> {
        let mut s = self.0.lock().ok()?;
        s.1 += n;
        let now = Instant::now();
        if s.0.is_some_and(|t| now.duration_since(t) < REPORT_EVERY) {
            return None;
        }
        s.0 = Some(now);
        Some(std::mem::take(&mut s.1))
    }
}

impl Reporter {
    fn new(address: &str) -> Reporter {
        Reporter {
            address: address.to_string(),
            problems: Tally::default(),
            drops: Tally::default(),
        }
    }

    async fn malformed(&self, ctx: &InputContext, n: u64, peer: &str, err: &LineError) {
        if n == 0 {
            return;
        }
        if let Some(count) = self.problems.due(n) {
            let message = format!(
                "graphite {}: skipped {count} malformed line(s) since the last report; last from {peer}: {err}",
                self.address
            );
            tracing::warn!(input = INPUT_NAME, "{message}");
            ctx.emitter
                .last_error(INPUT_NAME, "graphite", Category::Metric, message)
                .await;
        }
    }

    async fn kernel_drops(&self, ctx: &InputContext, n: u64) {
        if let Some(count) = self.drops.due(n) {
            let message = format!(
                "graphite {}: the kernel dropped {count} UDP datagram(s) since the last report (receive buffer full); raise read_buffer_size (and net.core.rmem_max) or send over TCP",
                self.address
            );
            tracing::warn!(input = INPUT_NAME, "{message}");
            ctx.emitter
                .last_error(INPUT_NAME, "graphite", Category::Metric, message)
                .await;
        }
    }

    async fn socket_error(&self, ctx: &InputContext, what: &str, err: &std::io::Error) {
        if let Some(count) = self.problems.due(0) {
            let message = format!(
                "graphite {}: {what}: {err} ({count} malformed lines pending report)",
                self.address
            );
            tracing::warn!(input = INPUT_NAME, "{message}");
            ctx.emitter
                .last_error(INPUT_NAME, "graphite", Category::Metric, message)
                .await;
        }
    }
}

/// What every reader task shares.
#[derive(Clone)]
struct Shared {
    ctx: InputContext,
    processor: Arc<Processor>,
    handles: Handles,
    reporter: Arc<Reporter>,
    tx: mpsc::Sender<Vec<Point>>,
}

impl Shared {
    /// Counts one read's tally, reports its errors and hands its points on. `false` when the
    /// batcher is gone.
    async fn deliver(
        &self,
        counts: &Counts,
        now: i64,
        points: Vec<Point>,
        peer: &str,
        last: Option<LineError>,
    ) -> bool {
        self.handles.add(counts, now as f64 / 1e9);
        if let Some(e) = last {
            self.reporter
                .malformed(&self.ctx, counts.parse_errors, peer, &e)
                .await;
        }
        points.is_empty() || self.tx.send(points).await.is_ok()
    }
}

async fn serve(input: GraphiteInput, ctx: InputContext) {
    let GraphiteInput {
        cfg,
        processor,
        metrics,
        register_metrics,
    } = input;
    if register_metrics {
        metrics.register(&ctx);
    }
    if let Some(from) = cfg.interval_clamped_from {
        tracing::warn!(
            input = INPUT_NAME,
            "interval {} is outside 1s-120s; using {}",
            dk_proto::duration::format(from),
            dk_proto::duration::format(cfg.interval)
        );
    }
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let shared = Shared {
        ctx: ctx.clone(),
        processor,
        handles: metrics.handles(&cfg.address),
        reporter: Arc::new(Reporter::new(&cfg.address)),
        tx,
    };
    let mut readers = JoinSet::new();
    let udp = dk_worker::listen::udp(&ctx, &udp_address(&cfg.address))
        .map_err(|e| e.to_string())
        .inspect(|s| {
            dk_worker::listen::apply_read_buffer(
                std::os::fd::AsFd::as_fd(s),
                cfg.read_buffer_size,
                false,
                INPUT_NAME,
                &cfg.address,
            );
        })
        .and_then(|s| UdpSocket::from_std(s).map_err(|e| e.to_string()));
    match udp {
        Ok(sock) => {
            readers.spawn(udp_loop(sock, shared.clone()));
        }
        Err(e) => startup_error(&ctx, &cfg.address, "UDP", &e).await,
    }
    let tcp = dk_worker::listen::tcp(&ctx, &tcp_address(&cfg.address))
        .map_err(|e| e.to_string())
        .and_then(|l| TcpListener::from_std(l).map_err(|e| e.to_string()));
    match tcp {
        Ok(listener) => {
            readers.spawn(accept_loop(listener, shared.clone()));
        }
        Err(e) => startup_error(&ctx, &cfg.address, "TCP", &e).await,
    }
    drop(shared);
    tracing::info!(
        input = INPUT_NAME,
        address = cfg.address,
        "Graphite input listening on TCP and UDP."
    );
    // The batcher ends once every reader has stopped (on shutdown) and dropped its sender.
    batcher(rx, ctx.emitter.clone(), cfg.interval, cfg.buffer_size).await;
    while readers.join_next().await.is_some() {}
}

async fn startup_error(ctx: &InputContext, address: &str, what: &str, err: &str) {
    let message = format!("graphite {address}: cannot serve {what}: {err}");
    tracing::error!(input = INPUT_NAME, "{message}");
    ctx.emitter
        .last_error(INPUT_NAME, "graphite", Category::Metric, message)
        .await;
}

/// Buffers points and hands them over `buffer_size` at a time, the remainder every
/// `interval`, and everything once the readers are gone.
async fn batcher(
    mut rx: mpsc::Receiver<Vec<Point>>,
    emitter: dk_worker::Emitter,
    interval: Duration,
    buffer_size: usize,
) {
    let mut buf: Vec<Point> = Vec::new();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(points) => {
                    if buf.is_empty() {
                        buf = points;
                    } else {
                        buf.extend(points);
                    }
                    // As Datakit, hand over exactly `buffer_size` points at a time; the rest
                    // waits for more or for the tick. Small hand-overs also bound what
                    // waits in the emitter's queue when the agent is slower than the clients.
                    if buf.len() >= buffer_size {
                        let rest = buf.split_off(buf.len() / buffer_size * buffer_size);
                        let mut full = std::mem::replace(&mut buf, rest).into_iter();
                        loop {
                            let chunk: Vec<Point> = full.by_ref().take(buffer_size).collect();
                            if chunk.is_empty() {
                                break;
                            }
                            if !emitter.emit(Category::Metric, INPUT_NAME, FeedOpts::default(), chunk).await {
                                return;
                            }
                        }
                    }
                }
                None => {
                    flush(&emitter, &mut buf).await;
                    return;
                }
            },
            _ = tick.tick() => {
                if !buf.is_empty() && !flush(&emitter, &mut buf).await {
                    return;
                }
            }
        }
    }
}

async fn flush(emitter: &dk_worker::Emitter, buf: &mut Vec<Point>) -> bool {
    let points = std::mem::take(buf);
    emitter
        .emit(Category::Metric, INPUT_NAME, FeedOpts::default(), points)
        .await
}

/// Receives datagrams until shutdown; each datagram is split into lines.
async fn udp_loop(sock: UdpSocket, shared: Shared) {
    let mut buf = vec![0u8; DATAGRAM_BUF];
    let cancel = shared.ctx.shutdown.clone();
    let mut drops = dk_worker::listen::procnet::UdpDrops::new(sock.as_raw_fd());
    let mut drop_tick = tokio::time::interval(Duration::from_secs(1));
    drop_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let first = tokio::select! {
            _ = cancel.cancelled() => return,
            _ = drop_tick.tick() => {
                let new = drops.as_mut().map_or(0, dk_worker::listen::procnet::UdpDrops::poll);
                if new > 0 {
                    shared.handles.kernel_drops.inc_by(new);
                    shared.reporter.kernel_drops(&shared.ctx, new).await;
                }
                continue;
            }
            r = sock.recv_from(&mut buf) => r,
        };
        let now = now_ns();
        let mut out = Vec::new();
        let mut counts = Counts::default();
        let mut last = None;
        let mut peer = String::new();
        let mut datagrams = 0u64;
        let mut next = Some(first);
        // Drain what is already queued (without waiting) before handing the points on.
        while let Some(r) = next.take() {
            match r {
                Ok((n, from)) => {
                    datagrams += 1;
                    if let Some(e) =
                        shared
                            .processor
                            .datagram(&buf[..n], now, &mut out, &mut counts)
                    {
                        last = Some(e);
                        peer = from.to_string();
                    }
                }
                Err(e) => {
                    shared
                        .reporter
                        .socket_error(&shared.ctx, "UDP receive failed", &e)
                        .await;
                    // A persistent error must not spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    break;
                }
            }
            if datagrams < DATAGRAM_BURST as u64 {
                match sock.try_recv_from(&mut buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    r => next = Some(r),
                }
            }
        }
        shared.handles.datagrams.inc_by(datagrams);
        if !shared.deliver(&counts, now, out, &peer, last).await {
            return;
        }
    }
}

/// Accepts connections until shutdown; then waits for the connection tasks, which stop too.
async fn accept_loop(listener: TcpListener, shared: Shared) {
    let cancel = shared.ctx.shutdown.clone();
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    shared.handles.connections.inc();
                    conns.spawn(connection(stream, peer.to_string(), shared.clone()));
                }
                Err(e) => {
                    shared.reporter.socket_error(&shared.ctx, "TCP accept failed", &e).await;
                    // Out of descriptors and the like: do not spin.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    while conns.join_next().await.is_some() {}
}

/// Reads one TCP connection until the client closes it (or shutdown), joining lines split
/// across reads; a final line without newline is kept at close.
async fn connection(mut stream: TcpStream, peer: String, shared: Shared) {
    let cancel = shared.ctx.shutdown.clone();
    let mut framer = LineFramer::new(MAX_LINE);
    let mut buf = vec![0u8; READ_BUF];
    loop {
        let read = tokio::select! {
            _ = cancel.cancelled() => return,
            r = stream.read(&mut buf) => r,
        };
        let n = match read {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(input = INPUT_NAME, peer, "graphite connection error: {e}");
                0
            }
        };
        let now = now_ns();
        let mut out = Vec::new();
        let mut counts = Counts::default();
        let mut last = None;
        let mut each = |line: &[u8]| {
            if let Err(e) = shared.processor.line(line, now, &mut out, &mut counts) {
                last = Some(e);
            }
        };
        let too_long = if n == 0 {
            framer.finish(&mut each)
        } else {
            framer.feed(&buf[..n], &mut each)
        } as u64;
        if too_long > 0 {
            counts.lines += too_long;
            counts.parse_errors += too_long;
            last = Some(LineError::TooLong);
        }
        if !shared.deliver(&counts, now, out, &peer, last).await || n == 0 {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::SocketAddr;
    use std::os::fd::AsRawFd;

    use dk_proto::Value;
    use dk_proto::rpc::{InheritedListener, ListenerKind};
    use dk_worker::Emitter;
    use dk_worker::emitter::Message;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::config;

    struct Running {
        tcp: SocketAddr,
        udp: SocketAddr,
        address: String,
        rx: mpsc::Receiver<Message>,
        cancel: CancellationToken,
        task: tokio::task::JoinHandle<()>,
        ctx: InputContext,
        _sockets: (std::net::TcpListener, std::net::UdpSocket),
    }

    impl Running {
        /// Feeds until `n` points arrived (10 s at most).
        async fn points(&mut self, n: usize) -> Vec<Point> {
            let mut got = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while got.len() < n {
                match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                    Ok(Some(Message::Feed(f))) => {
                        assert_eq!(
                            (f.category, f.input.as_str()),
                            (Category::Metric, "graphite")
                        );
                        got.extend(f.points);
                    }
                    Ok(Some(Message::LastError(_))) => {}
                    Ok(None) => break,
                    Err(_) => panic!("timed out with {} of {n} points: {got:?}", got.len()),
                }
            }
            got
        }

        fn metrics_text(&self) -> String {
            let mut text = String::new();
            let registry = self.ctx.metrics.lock().unwrap();
            prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
            text
        }

        fn counter(&self, name: &str) -> u64 {
            let series = format!("{name}_total{{address=\"{}\"}} ", self.address);
            self.metrics_text()
                .lines()
                .find_map(|l| l.strip_prefix(&series).map(|v| v.trim().parse().unwrap()))
                .unwrap_or(0)
        }

        async fn wait_counter(&self, name: &str, want: u64) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.counter(name) < want {
                assert!(Instant::now() < deadline, "{name} stayed below {want}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    fn start(extra: &str) -> Running {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tcp_addr = tcp.local_addr().unwrap();
        let udp_addr = udp.local_addr().unwrap();
        // The instance's address is only a key here: its two sockets are bound separately.
        let address = tcp_addr.to_string();
        let (cfg, mapper) = config::parse(&format!("address = \"{address}\"\n{extra}")).unwrap();
        let (emitter, rx) = Emitter::channel(64);
        let (mut ctx, cancel, _pause) = InputContext::for_test(emitter);
        ctx.listeners = vec![
            InheritedListener {
                address: tcp_address(&address),
                kind: ListenerKind::Tcp,
                fd: tcp.as_raw_fd(),
            },
            InheritedListener {
                address: udp_address(&address),
                kind: ListenerKind::Udp,
                fd: udp.as_raw_fd(),
            },
        ];
        let processor = Processor::new(mapper, cfg.strict_match, cfg.tags.clone());
        let input = Box::new(GraphiteInput::new(cfg, processor, Metrics::default(), true));
        let task = tokio::spawn(input.run(ctx.clone()));
        Running {
            tcp: tcp_addr,
            udp: udp_addr,
            address,
            rx,
            cancel,
            task,
            ctx,
            _sockets: (tcp, udp),
        }
    }

    #[test]
    fn a_tally_reports_at_once_then_at_most_every_period_with_the_count() {
        let r = Tally::default();
        assert_eq!(r.due(2), Some(2));
        assert_eq!(r.due(3), None);
        assert_eq!(r.due(4), None);
        // Pretend the period is over: the count since the last report comes out.
        if let Ok(mut s) = r.0.lock() {
            s.0 = Some(Instant::now() - REPORT_EVERY);
        }
        assert_eq!(r.due(1), Some(8));
    }

    fn field(p: &Point) -> (&str, f64) {
        match &p.fields[0] {
            (k, Value::F(v)) => (k.as_str(), *v),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn tcp_lines_split_across_writes_and_an_unterminated_last_line_arrive() {
        let mut r = start("buffer_size = 3\n[tags]\nteam = \"ops\"");
        let mut c = std::net::TcpStream::connect(r.tcp).unwrap();
        c.set_nodelay(true).unwrap();
        c.write_all(b"a.b 1.5 1700000000\nc.d;dc=eu 2 17").unwrap();
        r.wait_counter("datakit_input_graphite_lines", 1).await;
        c.write_all(b"00000001.25\r\nlast.line 3 1700000002")
            .unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let pts = r.points(3).await;
        let got: Vec<(&str, f64, i64)> = pts
            .iter()
            .map(|p| (field(p).0, field(p).1, p.time))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a_b", 1.5, 1_700_000_000_000_000_000),
                ("c_d", 2.0, 1_700_000_001_250_000_000),
                ("last_line", 3.0, 1_700_000_002_000_000_000),
            ]
        );
        assert_eq!(pts[1].get_tag("dc"), Some("eu"));
        assert!(pts.iter().all(|p| p.get_tag("team") == Some("ops")));
        assert_eq!(r.counter("datakit_input_graphite_connections"), 1);
        assert_eq!(r.counter("datakit_input_graphite_points"), 3);
    }

    #[tokio::test]
    async fn a_datagram_of_several_lines_is_split_and_malformed_lines_are_counted() {
        let mut r = start("buffer_size = 2");
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.send_to(
            b"x.one 1 1700000000\r\nnot a valid graphite line\nx.two 2\n",
            r.udp,
        )
        .unwrap();
        let before = now_ns();
        let pts = r.points(2).await;
        assert_eq!(field(&pts[0]), ("x_one", 1.0));
        assert_eq!(pts[0].time, 1_700_000_000_000_000_000);
        assert_eq!(field(&pts[1]), ("x_two", 2.0));
        // No timestamp: the receive time.
        assert!(pts[1].time >= before - 1_000_000_000 && pts[1].time <= now_ns());
        r.wait_counter("datakit_input_graphite_parse_errors", 1)
            .await;
        assert_eq!(r.counter("datakit_input_graphite_lines"), 3);
        assert_eq!(r.counter("datakit_input_graphite_datagrams"), 1);
        assert_eq!(r.counter("datakit_input_graphite_mapping_misses"), 2);
    }

    #[tokio::test]
    async fn shutdown_flushes_what_is_buffered() {
        let mut r = start("interval = \"120s\"\nbuffer_size = 1000");
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.send_to(b"held.back 7 1700000000\n", r.udp).unwrap();
        r.wait_counter("datakit_input_graphite_points", 1).await;
        r.cancel.cancel();
        let pts = r.points(1).await;
        assert_eq!(field(&pts[0]), ("held_back", 7.0));
        tokio::time::timeout(Duration::from_secs(5), &mut r.task)
            .await
            .expect("the input stops")
            .unwrap();
    }

    #[tokio::test]
    async fn many_connections_at_once_lose_nothing() {
        let mut r = start("buffer_size = 100");
        let tcp = r.tcp;
        let writers: Vec<_> = (0..8)
            .map(|c| {
                std::thread::spawn(move || {
                    let mut s = std::net::TcpStream::connect(tcp).unwrap();
                    let mut body = String::new();
                    for i in 0..500 {
                        body.push_str(&format!("conn{c}.metric {i} 1700000000\n"));
                    }
                    s.write_all(body.as_bytes()).unwrap();
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let pts = r.points(4000).await;
        assert_eq!(pts.len(), 4000);
        let sum: f64 = pts.iter().map(|p| field(p).1).sum();
        assert_eq!(sum, 8.0 * (0..500).sum::<i32>() as f64);
    }
}
