//! The running `[[inputs.logging]]` instance: TCP connections and UDP datagrams from the
//! sockets the supervisor bound, served by the input kit (connection cap, idle timeout, drain
//! on stop, kernel drops), turned into batches of `logging` points.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use dk_proto::clock::now_ns;
use dk_proto::{Category, Point};
use dk_worker::serve::{tcp, udp};
use dk_worker::telemetry::Telemetry;
use dk_worker::{Emitter, FeedOpts, Input, InputContext};
use futures::future::BoxFuture;
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::config::{LoggingConfig, Proto, SocketSpec};
use crate::metrics::{Metrics, SocketCounters};
use crate::points::LogTemplate;
use crate::record::{self, Counts, Shaping, StreamAssembler};
use crate::status;

/// The input name.
pub const INPUT_NAME: &str = "logging";

/// Bytes read from a socket at a time (Datakit's 64 KiB; a UDP datagram never exceeds it).
pub const READ_BUFFER: usize = 64 * 1024;

/// Most messages gathered from one socket before they are handed over.
pub const BATCH: usize = 1024;

/// Most points in one feed handed to the emitter.
pub const FEED_POINTS: usize = 64;

/// How long a joined record waits for continuation lines on an idle connection.
pub const IDLE_FLUSH: Duration = Duration::from_secs(1);

/// What every socket of an instance shares.
#[derive(Debug)]
struct Shared {
    shaping: Shaping,
    template: LogTemplate,
    feed: String,
    drop_all: bool,
    idle_flush: Duration,
    clock: AtomicI64,
}

impl Shared {
    /// `n` distinct, increasing receive times (ns): a batch received in the same nanosecond
    /// still gets one time per line, in order.
    fn stamp(&self, n: usize) -> i64 {
        let now = now_ns();
        let span = i64::try_from(n).unwrap_or(i64::MAX).max(1);
        let mut last = self.clock.load(Ordering::Relaxed);
        loop {
            let start = now.max(last.saturating_add(1));
            let end = start.saturating_add(span - 1);
            match self
                .clock
                .compare_exchange_weak(last, end, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return start,
                Err(v) => last = v,
            }
        }
    }

    /// Hands the messages over as points (or drops them for `ignore_status`); `false` when
    /// the runtime is gone.
    async fn feed(
        &self,
        emitter: &Emitter,
        counters: &SocketCounters,
        messages: &mut Vec<String>,
    ) -> bool {
        let n = messages.len();
        if n == 0 {
            return true;
        }
        if self.drop_all {
            counters.ignored.inc_by(n as u64);
            messages.clear();
            return true;
        }
        let t0 = self.stamp(n);
        counters.lines.inc_by(n as u64);
        let mut times = t0..;
        let mut rest = messages.drain(..);
        loop {
            // Small feeds: the runtime's channel holds a number of feeds, so their size bounds
            // the memory a slow supervisor lets pile up.
            let points: Vec<Point> = rest
                .by_ref()
                .take(FEED_POINTS)
                .zip(times.by_ref())
                .map(|(m, t)| self.template.point(m, t))
                .collect();
            if points.is_empty() {
                return true;
            }
            if !emitter
                .emit(Category::Logging, &self.feed, FeedOpts::default(), points)
                .await
            {
                return false;
            }
        }
    }
}

/// One `[[inputs.logging]]` instance, ready to run.
pub struct LoggingInput {
    shared: Arc<Shared>,
    sockets: Vec<SocketSpec>,
    warnings: Vec<String>,
    metrics: Arc<Metrics>,
    telemetry: Telemetry,
}

impl LoggingInput {
    /// Builds an instance from its checked config; `metrics` and `telemetry` are shared by
    /// the instances of one worker generation.
    pub fn new(cfg: LoggingConfig, metrics: Arc<Metrics>, telemetry: Telemetry) -> LoggingInput {
        LoggingInput::with_idle_flush(cfg, metrics, telemetry, IDLE_FLUSH)
    }

    /// As [`LoggingInput::new`] with another idle flush delay (tests).
    pub fn with_idle_flush(
        cfg: LoggingConfig,
        metrics: Arc<Metrics>,
        telemetry: Telemetry,
        idle_flush: Duration,
    ) -> LoggingInput {
        let mut warnings = cfg.warnings();
        let drop_all = status::is_ignored(status::DEFAULT_STATUS, &cfg.ignore_status);
        if drop_all {
            warnings.push(format!(
                "ignore_status contains {:?}: every socket line has that status, so all are dropped",
                status::DEFAULT_STATUS
            ));
        }
        let mut feed = format!("socketLog/{}", cfg.source);
        if !cfg.storage_index.is_empty() {
            feed = format!("{feed}/{}", cfg.storage_index);
        }
        let shaping = Shaping {
            charset: cfg.charset,
            strip_ansi: cfg.strip_ansi,
            patterns: cfg.patterns.clone(),
            ..Shaping::default()
        };
        LoggingInput {
            shared: Arc::new(Shared {
                shaping,
                template: LogTemplate::new(&cfg),
                feed,
                drop_all,
                idle_flush,
                clock: AtomicI64::new(0),
            }),
            sockets: cfg.sockets,
            warnings,
            metrics,
            telemetry,
        }
    }

    async fn run_loop(self, ctx: InputContext) {
        self.metrics.register(&ctx);
        self.telemetry.register(&ctx);
        let source = self.shared.template.measurement.clone();
        for w in &self.warnings {
            tracing::warn!(input = INPUT_NAME, source = %source, "{w}");
        }
        let decode_errors = self.telemetry.parse_error(INPUT_NAME, "decode");
        let mut tasks = JoinSet::new();
        for spec in &self.sockets {
            let reader = Reader {
                shared: self.shared.clone(),
                counters: self.metrics.socket(&source, spec.proto),
                decode_errors: decode_errors.clone(),
                emitter: ctx.emitter.clone(),
                messages: Vec::new(),
                counts: Counts::default(),
            };
            let tel = self.telemetry.listener(INPUT_NAME, &spec.address);
            let shutdown = ctx.shutdown.clone();
            let opened = match spec.proto {
                Proto::Tcp => dk_worker::listen::tcp(&ctx, &spec.address)
                    .map_err(|e| e.to_string())
                    .and_then(|l| TcpListener::from_std(l).map_err(|e| e.to_string()))
                    .map(|l| {
                        let opts = tcp::TcpOptions {
                            read_buffer: READ_BUFFER,
                            ..tcp::TcpOptions::default()
                        };
                        let make = move |_: SocketAddr| Connection {
                            assembler: StreamAssembler::new(&reader.shared.shaping),
                            reader: reader.clone(),
                        };
                        tasks.spawn(tcp::serve(l, opts, tel, shutdown, make));
                    }),
                Proto::Udp => dk_worker::listen::udp(&ctx, &spec.address)
                    .map_err(|e| e.to_string())
                    .map(|s| {
                        let sock = udp::DatagramSocket::Udp(s);
                        let opts = udp::UdpOptions::default();
                        tasks.spawn(udp::serve(sock, opts, tel, shutdown, reader));
                    }),
            };
            match opened {
                Ok(()) => {
                    tracing::info!(input = INPUT_NAME, source = %source, address = %spec.address, "Receiving socket logs.");
                }
                Err(e) => {
                    let message = format!("cannot serve {}: {e}", spec.address);
                    tracing::error!(input = INPUT_NAME, source = %source, "{message}");
                    ctx.emitter
                        .last_error(INPUT_NAME, &spec.address, Category::Logging, message)
                        .await;
                }
            }
        }
        ctx.shutdown.cancelled().await;
        // Every task watches the same token and hands over what it holds before it ends.
        while tasks.join_next().await.is_some() {}
    }
}

impl Input for LoggingInput {
    fn name(&self) -> &str {
        INPUT_NAME
    }

    fn run(self: Box<Self>, ctx: InputContext) -> BoxFuture<'static, ()> {
        Box::pin(self.run_loop(ctx))
    }
}

/// What one socket (a TCP connection or a UDP socket) has gathered.
#[derive(Clone)]
struct Reader {
    shared: Arc<Shared>,
    counters: SocketCounters,
    decode_errors: Counter,
    emitter: Emitter,
    messages: Vec<String>,
    counts: Counts,
}

impl Reader {
    async fn flush(&mut self) -> bool {
        let counts = std::mem::take(&mut self.counts);
        if counts.truncated > 0 {
            self.counters.truncated.inc_by(counts.truncated);
        }
        if counts.decode_errors > 0 {
            self.decode_errors.inc_by(counts.decode_errors);
        }
        self.shared
            .feed(&self.emitter, &self.counters, &mut self.messages)
            .await
    }
}

impl udp::Datagrams for Reader {
    fn datagram(&mut self, bytes: &[u8]) {
        record::datagram(
            &self.shared.shaping,
            bytes,
            &mut self.messages,
            &mut self.counts,
        );
    }

    fn full(&self) -> bool {
        self.messages.len() >= BATCH
    }

    async fn flush(&mut self) -> bool {
        Reader::flush(self).await
    }
}

/// One TCP connection: records joined across reads.
struct Connection {
    reader: Reader,
    assembler: StreamAssembler,
}

impl tcp::Connection for Connection {
    fn data(&mut self, bytes: &[u8]) {
        self.assembler.push(bytes, &mut self.reader.messages);
    }

    fn full(&self) -> bool {
        self.reader.messages.len() >= BATCH
    }

    fn linger(&self) -> Option<Duration> {
        self.assembler
            .has_pending()
            .then_some(self.reader.shared.idle_flush)
    }

    fn idle(&mut self) {
        self.assembler.flush_pending(&mut self.reader.messages);
    }

    fn finish(&mut self) {
        self.assembler.finish(&mut self.reader.messages);
    }

    async fn flush(&mut self) -> bool {
        let counts = self.assembler.take_counts();
        self.reader.counts.truncated += counts.truncated;
        self.reader.counts.decode_errors += counts.decode_errors;
        self.reader.flush().await
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsRawFd;

    use dk_proto::Value;
    use dk_proto::rpc::{InheritedListener, ListenerKind};
    use dk_worker::emitter::Message;
    use tokio::sync::mpsc;

    use std::time::Instant;

    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::config;

    struct Running {
        rx: mpsc::Receiver<Message>,
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<()>,
        tcp: std::net::SocketAddr,
        udp: std::net::SocketAddr,
        metrics: Arc<Metrics>,
        ctx: InputContext,
        _keep: (std::net::TcpListener, std::net::UdpSocket),
    }

    /// Starts an instance on fresh loopback sockets with `extra` config lines.
    fn start(extra: &str, idle: Duration) -> Running {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (ta, ua) = (tcp.local_addr().unwrap(), udp.local_addr().unwrap());
        let toml = format!("sockets = [\"tcp://{ta}\", \"udp://{ua}\"]\nsource = \"app\"\n{extra}");
        let cfg = config::parse(&toml).unwrap();
        let metrics = Arc::new(Metrics::default());
        let input = LoggingInput::with_idle_flush(cfg, metrics.clone(), Telemetry::new(), idle);
        let (emitter, rx) = Emitter::channel(64);
        let (mut ctx, shutdown, _pause) = InputContext::for_test(emitter);
        ctx.listeners = vec![
            InheritedListener {
                address: format!("tcp://{ta}"),
                kind: ListenerKind::Tcp,
                fd: tcp.as_raw_fd(),
            },
            InheritedListener {
                address: format!("udp://{ua}"),
                kind: ListenerKind::Udp,
                fd: udp.as_raw_fd(),
            },
        ];
        let task = tokio::spawn(Box::new(input).run(ctx.clone()));
        Running {
            ctx,
            rx,
            shutdown,
            task,
            tcp: ta,
            udp: ua,
            metrics,
            _keep: (tcp, udp),
        }
    }

    impl Running {
        /// A sample of the uniform telemetry.
        fn kit(&self, name: &str, labels: &str) -> f64 {
            dk_worker::telemetry::sample(&dk_worker::telemetry::encode(&self.ctx), name, labels)
        }
    }

    /// The next `n` messages (points checked for shape on the way).
    async fn messages(rx: &mut mpsc::Receiver<Message>, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        while out.len() < n {
            let msg = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("messages in time")
                .expect("channel open");
            let Message::Feed(feed) = msg else { continue };
            assert_eq!(feed.category, Category::Logging);
            assert_eq!(feed.input, "socketLog/app");
            for p in feed.points {
                assert_eq!(p.name, "app");
                assert_eq!(p.get_tag("log_source"), Some("socket"));
                assert_eq!(p.get_tag("service"), Some("app"));
                assert_eq!(p.get_field("status"), Some(&Value::S("info".into())));
                let Some(Value::S(m)) = p.get_field("message") else {
                    panic!("no message in {p:?}");
                };
                assert_eq!(
                    p.get_field("message_length"),
                    Some(&Value::I(m.len() as i64))
                );
                out.push(m.clone());
            }
        }
        out
    }

    /// Polls a counter condition (counters have no change notification), up to 10 s.
    async fn wait_until(mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "condition not reached in 10 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn tcp_lines_split_across_writes_and_an_unterminated_last_line_arrive() {
        let mut r = start("", Duration::from_secs(60));
        let mut c = std::net::TcpStream::connect(r.tcp).unwrap();
        c.set_nodelay(true).unwrap();
        for piece in [&b"hel"[..], b"lo\nwor", b"ld\n", b"no newline at the end"] {
            c.write_all(piece).unwrap();
            c.flush().unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(c);
        let got = messages(&mut r.rx, 3).await;
        assert_eq!(got, vec!["hello", "world", "no newline at the end"]);
        r.shutdown.cancel();
        r.task.await.unwrap();
    }

    #[tokio::test]
    async fn an_idle_connection_hands_over_its_last_record() {
        let mut r = start("", Duration::from_millis(50));
        let mut c = std::net::TcpStream::connect(r.tcp).unwrap();
        c.write_all(b"first\n\tcontinued\n").unwrap();
        // The connection stays open: the record must still arrive after the idle delay.
        let got = messages(&mut r.rx, 1).await;
        assert_eq!(got, vec!["first\n\tcontinued"]);
        c.write_all(b"second\n").unwrap();
        assert_eq!(messages(&mut r.rx, 1).await, vec!["second"]);
        r.shutdown.cancel();
        r.task.await.unwrap();
    }

    #[tokio::test]
    async fn shutdown_hands_over_a_partial_line_of_an_open_connection() {
        let mut r = start("", Duration::from_secs(60));
        let mut c = std::net::TcpStream::connect(r.tcp).unwrap();
        c.write_all(b"done\npartial").unwrap();
        // "done" waits in the joiner for the next record, "partial" for its newline.
        let bytes = format!("input=\"logging\",listener=\"tcp://{}\"", r.tcp);
        wait_until(|| r.kit("datakit_input_received_bytes_total", &bytes) == 12.0).await;
        r.shutdown.cancel();
        assert_eq!(messages(&mut r.rx, 2).await, vec!["done", "partial"]);
        r.task.await.unwrap();
        drop(c);
    }

    #[tokio::test]
    async fn udp_datagrams_are_split_on_newlines_without_carry() {
        let mut r = start("", Duration::from_secs(60));
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.send_to(b"one\ntwo", r.udp).unwrap();
        s.send_to(b"three\n", r.udp).unwrap();
        let got = messages(&mut r.rx, 3).await;
        assert_eq!(got, vec!["one", "two", "three"]);
        let c = r.metrics.socket("app", Proto::Udp);
        assert_eq!(c.lines.get(), 3);
        let udp = format!("input=\"logging\",listener=\"udp://{}\"", r.udp);
        assert_eq!(r.kit("datakit_input_received_bytes_total", &udp), 13.0);
        r.shutdown.cancel();
        r.task.await.unwrap();
    }

    #[tokio::test]
    async fn ignore_status_info_drops_every_line_and_counts_it() {
        let mut r = start("ignore_status = [\"INFO\"]", Duration::from_secs(60));
        let mut c = std::net::TcpStream::connect(r.tcp).unwrap();
        c.write_all(b"a\nb\nc\n").unwrap();
        drop(c);
        let counters = r.metrics.socket("app", Proto::Tcp);
        wait_until(|| counters.ignored.get() == 3).await;
        assert_eq!(counters.ignored.get(), 3);
        assert_eq!(counters.lines.get(), 0);
        let tcp = format!("input=\"logging\",listener=\"tcp://{}\"", r.tcp);
        assert_eq!(r.kit("datakit_input_connections_total", &tcp), 1.0);
        assert!(r.rx.try_recv().is_err());
        r.shutdown.cancel();
        r.task.await.unwrap();
    }

    #[test]
    fn stamps_are_distinct_and_increasing() {
        let cfg = config::parse("").unwrap();
        let input = LoggingInput::new(cfg, Arc::new(Metrics::default()), Telemetry::new());
        let a = input.shared.stamp(1000);
        let b = input.shared.stamp(1);
        assert!(b >= a + 1000, "{a} {b}");
    }
}
