//! The running `graphite` input: the I/O shell around [`Processor`] on the input kit's TCP
//! and UDP serving, and a batcher that hands points to the emitter.
//!
//! # Design
//!
//! The kit reads the sockets (connection cap, idle timeout, drain on stop, kernel drops); each
//! TCP connection joins lines split across reads with a [`LineFramer`] (a last line without
//! newline is kept at close) and each datagram is split into lines. Every round of reads
//! becomes a `Vec` of points from the pure [`Processor`], sent over a bounded channel to the
//! batcher, which flushes once `buffer_size` points are buffered or every `interval`
//! (Datakit's flush rules). The bounded channel and the emitter's back-pressure reach the
//! readers: a slow agent slows TCP clients down (flow control) and lets the kernel queue
//! datagrams. Counters are updated once per round; malformed lines are reported at most once
//! per [`dk_worker::serve::REPORT_EVERY`] per input.

use std::net::SocketAddr;
use std::sync::Arc;

use dk_proto::clock::now_ns;
use dk_proto::{Category, Point};
use dk_worker::batch;
use dk_worker::serve::{Tally, tcp, udp};
use dk_worker::telemetry::{ListenerTelemetry, Telemetry};
use dk_worker::{FeedOpts, Input, InputContext};
use futures::future::BoxFuture;
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::config::{GraphiteConfig, tcp_address, udp_address};
use crate::line::{LineError, LineFramer, MAX_LINE};
use crate::metrics::{Handles, Metrics};
use crate::process::{Counts, Processor};

/// The input and feed name.
pub const INPUT_NAME: &str = "graphite";

/// Reads in flight between the readers and the batcher.
const CHANNEL_DEPTH: usize = 16;

/// Points gathered by one reader before they are handed on (what waits in the channel is
/// at most `CHANNEL_DEPTH` times this plus one read's worth).
const READER_POINTS: usize = 512;

/// Bytes of one TCP read (about 800 lines of 40 bytes).
const READ_BUFFER: usize = 32 * 1024;

/// One `[[inputs.graphite]]` instance, ready to run.
pub struct GraphiteInput {
    cfg: GraphiteConfig,
    processor: Arc<Processor>,
    metrics: Metrics,
    telemetry: Telemetry,
}

impl GraphiteInput {
    /// An instance from its checked config and compiled processor. The instances of one worker
    /// share `metrics` and `telemetry`; the first to run registers them.
    pub fn new(
        cfg: GraphiteConfig,
        processor: Processor,
        metrics: Metrics,
        telemetry: Telemetry,
    ) -> GraphiteInput {
        GraphiteInput {
            cfg,
            processor: Arc::new(processor),
            metrics,
            telemetry,
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

/// What every reader of an instance shares.
#[derive(Clone)]
struct Shared {
    ctx: InputContext,
    processor: Arc<Processor>,
    handles: Handles,
    malformed: Counter,
    too_long: Counter,
    address: Arc<str>,
    report: Arc<Tally>,
    tx: mpsc::Sender<Vec<Point>>,
}

/// What one reader (a connection or a datagram socket) gathered since its last hand-over.
struct Gathered {
    shared: Shared,
    out: Vec<Point>,
    counts: Counts,
    last: Option<LineError>,
    /// Lines over 64 KiB since the last hand-over (also in `counts.parse_errors`).
    too_long: u64,
    peer: String,
}

impl Gathered {
    fn new(shared: Shared, peer: String) -> Gathered {
        Gathered {
            shared,
            out: Vec::new(),
            counts: Counts::default(),
            last: None,
            too_long: 0,
            peer,
        }
    }

    /// Counts the round, reports its errors and hands its points on. `false` when the
    /// batcher is gone.
    async fn deliver(&mut self) -> bool {
        let s = &self.shared;
        let counts = std::mem::take(&mut self.counts);
        s.handles.add(&counts, now_ns() as f64 / 1e9);
        let too_long = std::mem::take(&mut self.too_long);
        s.too_long.inc_by(too_long);
        s.malformed.inc_by(counts.parse_errors - too_long);
        if let Some(err) = self.last.take()
            && let Some(n) = s.report.due(counts.parse_errors)
        {
            let message = format!(
                "graphite {}: skipped {n} malformed line(s) since the last report; last from {}: {err}",
                s.address, self.peer
            );
            tracing::warn!(input = INPUT_NAME, "{message}");
            s.ctx
                .emitter
                .last_error(INPUT_NAME, "graphite", Category::Metric, message)
                .await;
        }
        let points = std::mem::take(&mut self.out);
        points.is_empty() || s.tx.send(points).await.is_ok()
    }

    fn line(&mut self, line: &[u8], now: i64) {
        if let Err(e) = self
            .shared
            .processor
            .line(line, now, &mut self.out, &mut self.counts)
        {
            self.last = Some(e);
        }
    }
}

/// One TCP connection: lines joined across reads.
struct Connection {
    g: Gathered,
    framer: LineFramer,
}

impl Connection {
    fn lines(&mut self, bytes: Option<&[u8]>) {
        let now = now_ns();
        let g = &mut self.g;
        let mut each = |line: &[u8]| g.line(line, now);
        let too_long = match bytes {
            Some(b) => self.framer.feed(b, &mut each),
            None => self.framer.finish(&mut each),
        } as u64;
        if too_long > 0 {
            g.counts.lines += too_long;
            g.counts.parse_errors += too_long;
            g.too_long += too_long;
            g.last = Some(LineError::TooLong);
        }
    }
}

impl tcp::Connection for Connection {
    fn data(&mut self, bytes: &[u8]) {
        self.lines(Some(bytes));
    }

    fn full(&self) -> bool {
        self.g.out.len() >= READER_POINTS
    }

    fn finish(&mut self) {
        self.lines(None);
    }

    async fn flush(&mut self) -> bool {
        self.g.deliver().await
    }
}

/// One UDP socket: each datagram split into lines.
struct Datagrams(Gathered);

impl udp::Datagrams for Datagrams {
    fn datagram(&mut self, bytes: &[u8]) {
        let g = &mut self.0;
        if let Some(e) = g
            .shared
            .processor
            .datagram(bytes, now_ns(), &mut g.out, &mut g.counts)
        {
            g.last = Some(e);
        }
    }

    fn full(&self) -> bool {
        self.0.out.len() >= READER_POINTS
    }

    async fn flush(&mut self) -> bool {
        self.0.deliver().await
    }
}

async fn serve(input: GraphiteInput, ctx: InputContext) {
    let GraphiteInput {
        cfg,
        processor,
        metrics,
        telemetry,
    } = input;
    metrics.register(&ctx);
    telemetry.register(&ctx);
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
        malformed: telemetry.parse_error(INPUT_NAME, "malformed"),
        too_long: telemetry.parse_error(INPUT_NAME, "too_long"),
        address: cfg.address.as_str().into(),
        report: Arc::new(Tally::default()),
        tx,
    };
    let mut readers = JoinSet::new();
    let (udp_at, tcp_at) = (udp_address(&cfg.address), tcp_address(&cfg.address));
    match dk_worker::listen::udp(&ctx, &udp_at) {
        Ok(sock) => {
            let fd = std::os::fd::AsFd::as_fd(&sock);
            dk_worker::listen::apply_read_buffer(
                fd,
                cfg.read_buffer_size,
                false,
                INPUT_NAME,
                &cfg.address,
            );
            readers.spawn(udp::serve(
                udp::DatagramSocket::Udp(sock),
                udp::UdpOptions::default(),
                telemetry.listener(INPUT_NAME, &udp_at),
                ctx.shutdown.clone(),
                Datagrams(Gathered::new(shared.clone(), udp_at.clone())),
            ));
        }
        Err(e) => startup_error(&ctx, &cfg.address, "UDP", &e.to_string()).await,
    }
    match dk_worker::listen::tcp(&ctx, &tcp_at).map(TcpListener::from_std) {
        Ok(Ok(listener)) => {
            let conn_shared = shared.clone();
            let tel: ListenerTelemetry = telemetry.listener(INPUT_NAME, &tcp_at);
            readers.spawn(tcp::serve(
                listener,
                tcp::TcpOptions {
                    read_buffer: READ_BUFFER,
                    ..tcp::TcpOptions::default()
                },
                tel,
                ctx.shutdown.clone(),
                move |peer: SocketAddr| Connection {
                    g: Gathered::new(conn_shared.clone(), peer.to_string()),
                    framer: LineFramer::new(MAX_LINE),
                },
            ));
        }
        Ok(Err(e)) => startup_error(&ctx, &cfg.address, "TCP", &e.to_string()).await,
        Err(e) => startup_error(&ctx, &cfg.address, "TCP", &e.to_string()).await,
    }
    drop(shared);
    tracing::info!(
        input = INPUT_NAME,
        address = cfg.address,
        "Graphite input listening on TCP and UDP."
    );
    // The batcher ends once every reader has stopped (on shutdown) and dropped its sender.
    let feed = batch::Feed {
        emitter: ctx.emitter.clone(),
        category: Category::Metric,
        name: INPUT_NAME.to_string(),
        opts: FeedOpts::default(),
    };
    batch::batcher(rx, feed, cfg.interval, cfg.buffer_size).await;
    while readers.join_next().await.is_some() {}
}

async fn startup_error(ctx: &InputContext, address: &str, what: &str, err: &str) {
    let message = format!("graphite {address}: cannot serve {what}: {err}");
    ctx.startup_error(INPUT_NAME, Category::Metric, message)
        .await;
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::SocketAddr;
    use std::os::fd::AsRawFd;

    use std::time::{Duration, Instant};

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
                    Ok(Some(Message::LastError(_) | Message::AckedFeed(..))) => {}
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

        /// A uniform kit counter of this input (`labels` after `input="graphite",`).
        fn kit(&self, name: &str, labels: &str) -> f64 {
            dk_worker::telemetry::sample(
                &self.metrics_text(),
                name,
                &format!("input=\"graphite\",{labels}"),
            )
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
        let input = Box::new(GraphiteInput::new(
            cfg,
            processor,
            Metrics::default(),
            Telemetry::new(),
        ));
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
        let tcp = format!("listener=\"{}\"", tcp_address(&r.address));
        assert_eq!(r.kit("datakit_input_connections_total", &tcp), 1.0);
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
        r.wait_counter("datakit_input_graphite_lines", 3).await;
        assert_eq!(
            r.kit("datakit_input_parse_errors_total", "reason=\"malformed\""),
            1.0
        );
        assert_eq!(r.counter("datakit_input_graphite_lines"), 3);
        let udp = format!("listener=\"{}\"", udp_address(&r.address));
        assert_eq!(r.kit("datakit_input_received_events_total", &udp), 1.0);
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
