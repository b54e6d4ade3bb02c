//! The running `cat` input: NT1 connections on the kit's TCP serving.
//!
//! Each connection cuts its bytes into packets ([`Framer`]) and maps each packet as it
//! completes (pure [`nt1::decode`] and [`mapping::output`]); the points wait in the
//! connection until the kit's flush hands them over (spans as tracing, heartbeats as
//! metrics, both under the feed `cat`); a connection hands over its next points only once the
//! supervisor holds the previous ones, so the worker never piles up what a fast client sends.
//! Bad input is counted in
//! `datakit_input_parse_errors_total{input="cat"}` and reported at most once per
//! [`dk_worker::serve::REPORT_EVERY`]: a packet over the 200 KiB cap closes its connection
//! (the stream cannot be re-synchronised, as in Datakit); a truncated packet, a `T` without
//! its `t` or an unreadable heartbeat only loses that packet's points.

use std::net::SocketAddr;
use std::sync::Arc;

use dk_proto::clock::now_ns;
use dk_proto::{Category, Point};
use dk_worker::http::{HttpRoute, Method};
use dk_worker::serve::{Tally, tcp};
use dk_worker::telemetry::Telemetry;
use dk_worker::{FeedOpts, Input, InputContext};
use futures::future::BoxFuture;
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpListener;

use crate::config::CatConfig;
use crate::mapping::{self, Output};
use crate::nt1::{self, Framer, Nt1Error};

/// The input name (also the feed name).
pub const INPUT_NAME: &str = "cat";

/// Points a connection gathers before the kit hands them over.
const FLUSH_AT: usize = 1024;

/// One `[[inputs.cat]]` instance, ready to run.
pub struct CatInput {
    cfg: CatConfig,
    telemetry: Telemetry,
}

impl CatInput {
    /// An instance from its checked config; the instances of one worker share `telemetry`.
    pub fn new(cfg: CatConfig, telemetry: Telemetry) -> CatInput {
        CatInput { cfg, telemetry }
    }
}

impl Input for CatInput {
    fn name(&self) -> &str {
        INPUT_NAME
    }

    fn routes(&self) -> Vec<HttpRoute> {
        let kvs = self.cfg.kvs.clone();
        vec![HttpRoute::new(
            Method::Get,
            crate::ROUTER_PATH,
            INPUT_NAME,
            move |req| crate::router_answer(&kvs, req),
        )]
    }

    fn run(self: Box<Self>, ctx: InputContext) -> BoxFuture<'static, ()> {
        Box::pin(serve(*self, ctx))
    }
}

/// The local UTC offset (seconds east) at Unix time `secs`, from the process's time zone.
pub fn local_utc_offset(secs: i64) -> i64 {
    let t: libc::time_t = secs;
    // SAFETY: all-zero is a valid `tm` (integers and a null zone pointer).
    #[allow(unsafe_code)]
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: `t` and `tm` are live for the call; localtime_r is the re-entrant variant and
    // writes only into `tm`.
    #[allow(unsafe_code)]
    let ok = unsafe { !libc::localtime_r(&raw const t, &raw mut tm).is_null() };
    if ok { tm.tm_gmtoff } else { 0 }
}

/// The counters of one instance.
struct Counters {
    too_large: Counter,
    malformed: Counter,
    stray_end: Counter,
    heartbeat: Counter,
    unknown_id: Counter,
}

/// What the connections of one instance share.
struct Shared {
    ctx: InputContext,
    tags: Vec<(String, String)>,
    listen: String,
    counters: Counters,
    report: Tally,
}

/// One client connection.
struct Connection {
    shared: Arc<Shared>,
    framer: Framer,
    pending: Pending,
    /// Whether the stream cannot be read on (the connection closes at the next flush).
    fatal: bool,
    /// The last hand-overs, until the supervisor holds them.
    handed: Vec<BoxFuture<'static, bool>>,
    peer: SocketAddr,
}

/// What a connection gathered since its last flush.
#[derive(Default)]
struct Pending {
    spans: Vec<Point>,
    metrics: Vec<Point>,
    /// The last problem seen since the last flush.
    problem: Option<String>,
}

impl Pending {
    fn take(&mut self, shared: &Shared, body: &[u8]) {
        let c = &shared.counters;
        let msg = match nt1::decode(body) {
            Ok(m) => m,
            Err(e) => {
                c.malformed.inc();
                self.problem = Some(e.to_string());
                return;
            }
        };
        if msg.stray_ends > 0 {
            c.stray_end.inc_by(u64::from(msg.stray_ends));
            self.problem = Some(format!(
                "{} transaction end(s) (T) without a start (t) skipped",
                msg.stray_ends
            ));
        }
        c.unknown_id.inc_by(u64::from(msg.unknown_ids));
        match mapping::output(&msg, &shared.tags, now_ns(), local_utc_offset) {
            Output::Nothing => {}
            Output::Span(p) => self.spans.push(p),
            Output::Metrics(points, errors) => {
                self.metrics.extend(points);
                if let Some(e) = errors.last() {
                    c.heartbeat.inc_by(errors.len() as u64);
                    self.problem = Some(e.to_string());
                }
            }
        }
    }
}

impl tcp::Connection for Connection {
    fn data(&mut self, bytes: &[u8]) {
        if self.fatal {
            return;
        }
        self.framer.push(bytes);
        loop {
            match self.framer.next_body() {
                Ok(Some(body)) => self.pending.take(&self.shared, body),
                Ok(None) => return,
                Err(e @ Nt1Error::TooLarge(_)) => {
                    self.shared.counters.too_large.inc();
                    self.pending.problem = Some(e.to_string());
                    self.fatal = true;
                    return;
                }
                Err(e) => {
                    self.shared.counters.malformed.inc();
                    self.pending.problem = Some(e.to_string());
                    self.fatal = true;
                    return;
                }
            }
        }
    }

    fn full(&self) -> bool {
        self.fatal || self.pending.spans.len() + self.pending.metrics.len() >= FLUSH_AT
    }

    fn finish(&mut self) {}

    async fn flush(&mut self) -> bool {
        let s = self.shared.clone();
        let opts = FeedOpts::default();
        let Pending {
            spans,
            metrics,
            problem,
        } = std::mem::take(&mut self.pending);
        // One hand-over in flight per connection: the previous one must be in the
        // supervisor's queue before the next goes, so a fast client is slowed to what the
        // agent stores instead of piling points up in the worker.
        for handed in self.handed.drain(..) {
            handed.await;
        }
        for (category, points) in [(Category::Tracing, spans), (Category::Metric, metrics)] {
            if !points.is_empty() {
                let acked = s.ctx.emitter.emit_acked(category, INPUT_NAME, opts, points);
                self.handed.push(Box::pin(acked.await));
            }
        }
        if let Some(problem) = problem
            && let Some(n) = s.report.due(1)
        {
            let what = if self.fatal {
                "; the connection was closed"
            } else {
                ""
            };
            let message = format!(
                "cat {}: {n} bad packet(s); last from {}: {problem}{what}",
                s.listen, self.peer
            );
            tracing::warn!(input = INPUT_NAME, "{message}");
            s.ctx
                .emitter
                .last_error(INPUT_NAME, INPUT_NAME, Category::Tracing, message)
                .await;
        }
        !self.fatal
    }
}

async fn serve(input: CatInput, ctx: InputContext) {
    let CatInput { cfg, telemetry } = input;
    telemetry.register(&ctx);
    let listen = cfg.listen();
    let listener = match dk_worker::listen::tcp(&ctx, &listen).map(TcpListener::from_std) {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => return startup_error(&ctx, &listen, &e.to_string()).await,
        Err(e) => return startup_error(&ctx, &listen, &e.to_string()).await,
    };
    let counters = Counters {
        too_large: telemetry.parse_error(INPUT_NAME, "too_large"),
        malformed: telemetry.parse_error(INPUT_NAME, "malformed"),
        stray_end: telemetry.parse_error(INPUT_NAME, "stray_end"),
        heartbeat: telemetry.parse_error(INPUT_NAME, "heartbeat"),
        unknown_id: telemetry.parse_error(INPUT_NAME, "unknown_record"),
    };
    let shared = Arc::new(Shared {
        ctx: ctx.clone(),
        tags: cfg.tags.clone(),
        listen: listen.clone(),
        counters,
        report: Tally::default(),
    });
    tracing::info!(input = INPUT_NAME, listen, "CAT (NT1) input listening.");
    tcp::serve(
        listener,
        tcp::TcpOptions::default(),
        telemetry.listener(INPUT_NAME, &listen),
        ctx.shutdown.clone(),
        move |peer| Connection {
            shared: shared.clone(),
            framer: Framer::new(),
            pending: Pending::default(),
            fatal: false,
            handed: Vec::new(),
            peer,
        },
    )
    .await;
}

async fn startup_error(ctx: &InputContext, listen: &str, err: &str) {
    let message = format!("cat {listen}: cannot serve: {err}");
    ctx.startup_error(INPUT_NAME, Category::Tracing, message)
        .await;
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::time::Duration;

    use dk_worker::Emitter;
    use dk_worker::emitter::{Feed, Message};
    use tokio::sync::mpsc;

    use super::*;
    use crate::config;
    use crate::nt1::encode;
    use crate::status;

    /// The next feed (error reports are returned separately).
    async fn next(rx: &mut mpsc::Receiver<Message>, errors: &mut Vec<String>) -> Feed {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
                Ok(Some(Message::AckedFeed(f, done))) => {
                    let _ = done.send(true);
                    return f;
                }
                Ok(Some(Message::LastError(e))) => errors.push(e.message),
                other => panic!("expected a feed, got {other:?}"),
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spans_and_heartbeats_arrive_and_bad_packets_are_counted_without_losing_the_rest() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let at = listener.local_addr().unwrap();
        let cfg = config::parse(&format!("tcp_port = {}\n[tags]\nenv = \"t\"", at.port())).unwrap();
        let (emitter, mut rx) = Emitter::channel(16);
        let (mut ctx, cancel, _pause) = InputContext::for_test(emitter);
        ctx.inherit_tcp(cfg.listen(), &listener);
        let task =
            tokio::spawn(Box::new(CatInput::new(cfg, Telemetry::default())).run(ctx.clone()));
        // A stray end, a tree split across writes, a truncated packet, a heartbeat.
        let mut stray = encode::header(["d", "h", "", "", "", "", "s-1", "", "", ""]);
        encode::end(&mut stray, "0", "", 1);
        let tree = encode::transaction_tree("shop-1", "", "");
        let mut truncated = encode::transaction_tree("shop-x", "", "");
        let n = truncated.len();
        truncated.truncate(n - 2);
        truncated[..4].copy_from_slice(&((n - 6) as u32).to_be_bytes());
        let hb = encode::heartbeat(status::SAMPLE.as_bytes());
        let client = tokio::task::spawn_blocking(move || {
            let mut c = std::net::TcpStream::connect(at).unwrap();
            c.write_all(&encode::packet(&stray)).unwrap();
            c.write_all(&tree[..10]).unwrap();
            c.flush().unwrap();
            std::thread::yield_now();
            c.write_all(&tree[10..]).unwrap();
            c.write_all(&truncated).unwrap();
            c.write_all(&hb).unwrap();
            c
        })
        .await
        .unwrap();
        let mut errors = Vec::new();
        let (mut spans, mut metrics) = (Vec::new(), Vec::new());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while spans.is_empty() || metrics.is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "points did not arrive"
            );
            let f = next(&mut rx, &mut errors).await;
            assert_eq!(f.input, "cat");
            match f.category {
                Category::Tracing => spans.extend(f.points),
                Category::Metric => metrics.extend(f.points),
                other => panic!("unexpected category {other:?}"),
            }
        }
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].get_tag("operation"), Some("/api/order"));
        assert_eq!(spans[0].get_tag("env"), Some("t"));
        assert_eq!(metrics.len(), 8);

        // An oversized packet closes this connection; a new one is served.
        let closed = tokio::task::spawn_blocking(move || {
            let mut c = client;
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            c.write_all(&((nt1::MAX_FRAME + 1) as u32).to_be_bytes())
                .unwrap();
            let mut rest = Vec::new();
            let closed = c.read_to_end(&mut rest).map(|_| rest);
            let mut again = std::net::TcpStream::connect(at).unwrap();
            again
                .write_all(&encode::transaction_tree("shop-2", "", ""))
                .unwrap();
            (closed, again)
        });
        let f = next(&mut rx, &mut errors).await;
        assert_eq!(
            f.points[0].get_field("span_id"),
            Some(&dk_proto::Value::S("shop-2".into()))
        );
        let (closed, _again) = closed.await.unwrap();
        assert_eq!(closed.ok(), Some(Vec::new()), "closed by the agent");
        let text = dk_worker::telemetry::encode(&ctx);
        let count = |reason: &str| {
            dk_worker::telemetry::sample(
                &text,
                "datakit_input_parse_errors_total",
                &format!(r#"input="cat",reason="{reason}""#),
            )
        };
        assert_eq!(count("stray_end"), 1.0);
        assert_eq!(count("malformed"), 1.0);
        assert_eq!(count("too_large"), 1.0);
        assert!(!errors.is_empty(), "a bad packet was reported");
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
    }
}
