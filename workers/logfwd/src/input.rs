//! The running `logfwdserver` input: WebSocket connections on the kit's TCP serving.
//!
//! A connection first reads the HTTP upgrade of `GET /logfwd` and answers `101` (or the
//! refusal, then hangs up) through [`tcp::Connection::reply`]; then it decodes frames: each
//! text (or binary) message is one logfwd JSON message mapped to a logging point, a ping is
//! answered with a pong, a close with a close. Points are handed over at the kit's flush, one
//! feed per `logfwd/<source>[/<storage_index>]`, the next only once the supervisor holds the
//! previous ones (so the worker never piles up what a fast client sends). A message that is not logfwd JSON is counted
//! (`datakit_input_parse_errors_total{input="logfwdserver",reason="json"}`), reported at most
//! once per [`dk_worker::serve::REPORT_EVERY`] and dropped; the connection stays. A frame or
//! message over the caps, or a protocol error, is answered with a close frame (1009, 1002 or
//! 1007); what the client still sends is dropped and the connection ends [`CLOSE_GRACE`]
//! later (at once after a close the client began).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dk_proto::clock::now_ns;
use dk_proto::{Category, Point};
use dk_worker::serve::{Tally, tcp};
use dk_worker::telemetry::Telemetry;
use dk_worker::{FeedOpts, Input, InputContext};
use futures::future::BoxFuture;
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpListener;

use crate::config::LogfwdConfig;
use crate::message;
use crate::ws::{self, Decoder, Event, Limits};

/// The input name.
pub const INPUT_NAME: &str = "logfwdserver";

/// Points a connection gathers before the kit hands them over.
const FLUSH_AT: usize = 1024;
/// How long a connection waits for the client's answer to a close before hanging up.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The `[inputs.logfwdserver]` instance, ready to run.
pub struct LogfwdInput {
    cfg: LogfwdConfig,
    telemetry: Telemetry,
    limits: Limits,
}

impl LogfwdInput {
    /// The instance from its checked config, with the default frame and message caps.
    pub fn new(cfg: LogfwdConfig, telemetry: Telemetry) -> LogfwdInput {
        LogfwdInput::with_limits(cfg, telemetry, Limits::default())
    }

    /// The instance with other frame and message caps.
    pub fn with_limits(cfg: LogfwdConfig, telemetry: Telemetry, limits: Limits) -> LogfwdInput {
        LogfwdInput {
            cfg,
            telemetry,
            limits,
        }
    }
}

impl Input for LogfwdInput {
    fn name(&self) -> &str {
        INPUT_NAME
    }

    fn run(self: Box<Self>, ctx: InputContext) -> BoxFuture<'static, ()> {
        Box::pin(serve(*self, ctx))
    }
}

struct Counters {
    json: Counter,
    no_source: Counter,
    handshake: Counter,
    protocol: Counter,
    too_big: Counter,
}

/// What the connections share.
struct Shared {
    ctx: InputContext,
    tags: Vec<(String, String)>,
    listen: String,
    limits: Limits,
    counters: Counters,
    report: Tally,
}

enum Phase {
    /// Reading the upgrade request head.
    Handshake(Vec<u8>),
    /// Exchanging frames.
    Open(Decoder),
    /// A close (or a refusal) was sent: what the client still sends is read and dropped (so
    /// closing does not reset the connection before the client read the close) until the
    /// client goes or this instant passes.
    Closing(Instant),
}

/// One client connection.
struct Connection {
    shared: Arc<Shared>,
    phase: Phase,
    /// Points by feed name, in arrival order.
    pending: Vec<(String, Vec<Point>)>,
    points: usize,
    /// Bytes to send back at the next reply.
    out: Vec<u8>,
    problem: Option<String>,
    /// The connection ends at the next flush.
    fatal: bool,
    /// The last hand-overs, until the supervisor holds them.
    handed: Vec<BoxFuture<'static, bool>>,
    peer: SocketAddr,
}

impl Connection {
    fn message(&mut self, payload: &[u8]) {
        match message::map(payload, &self.shared.tags, now_ns()) {
            Ok(m) => {
                self.points += 1;
                match self.pending.last_mut() {
                    Some((feed, points)) if *feed == m.feed => points.push(m.point),
                    _ => self.pending.push((m.feed, vec![m.point])),
                }
            }
            Err(e) => {
                let c = &self.shared.counters;
                match e {
                    message::MessageError::Json(_) => c.json.inc(),
                    message::MessageError::NoSource => c.no_source.inc(),
                };
                self.problem = Some(e.to_string());
            }
        }
    }

    fn frames(&mut self, bytes: &[u8]) {
        let Phase::Open(decoder) = &mut self.phase else {
            return;
        };
        decoder.push(bytes);
        loop {
            let Phase::Open(decoder) = &mut self.phase else {
                return;
            };
            match decoder.next_event() {
                Ok(None) => return,
                Ok(Some(Event::Text(m) | Event::Binary(m))) => self.message(&m),
                Ok(Some(Event::Ping(p))) => self.out.extend(ws::frame(0xA, &p)),
                Ok(Some(Event::Pong)) => {}
                Ok(Some(Event::Close(_))) => {
                    // The client closed: answer, then hang up at once (the server closes the
                    // TCP connection first, RFC 6455 7.1.1).
                    self.out.extend(ws::close(ws::code::NORMAL, ""));
                    self.phase = Phase::Closing(Instant::now());
                }
                Err(e) => {
                    let c = &self.shared.counters;
                    match e {
                        ws::WsError::TooBig { .. } => c.too_big.inc(),
                        _ => c.protocol.inc(),
                    };
                    self.out.extend(ws::close(e.code(), &e.to_string()));
                    self.problem = Some(e.to_string());
                    self.phase = Phase::Closing(Instant::now() + CLOSE_GRACE);
                }
            }
        }
    }
}

impl tcp::Connection for Connection {
    fn data(&mut self, bytes: &[u8]) {
        match &mut self.phase {
            Phase::Closing(_) => {}
            Phase::Open(_) => self.frames(bytes),
            Phase::Handshake(head) => {
                head.extend_from_slice(bytes);
                match ws::handshake(head) {
                    Ok(None) => {}
                    Ok(Some(up)) => {
                        let rest = head.split_off(up.consumed);
                        self.out.extend(up.response);
                        self.phase = Phase::Open(Decoder::new(self.shared.limits));
                        self.frames(&rest);
                    }
                    Err(refusal) => {
                        self.shared.counters.handshake.inc();
                        self.out.extend(refusal.response());
                        self.problem = Some(format!("upgrade refused: {refusal}"));
                        // Plain HTTP: nothing to wait for.
                        self.phase = Phase::Closing(Instant::now());
                    }
                }
            }
        }
    }

    fn full(&self) -> bool {
        self.fatal || self.points >= FLUSH_AT
    }

    fn linger(&self) -> Option<Duration> {
        match self.phase {
            Phase::Closing(until) => Some(until.saturating_duration_since(Instant::now())),
            _ => None,
        }
    }

    fn idle(&mut self) {
        if let Phase::Closing(until) = self.phase
            && Instant::now() >= until
        {
            self.fatal = true;
        }
    }

    fn finish(&mut self) {}

    async fn flush(&mut self) -> bool {
        let s = self.shared.clone();
        self.points = 0;
        // One hand-over in flight per connection: the previous one must be in the
        // supervisor's queue before the next goes, so a fast client is slowed to what the
        // agent stores instead of piling points up in the worker.
        for handed in self.handed.drain(..) {
            handed.await;
        }
        for (feed, points) in std::mem::take(&mut self.pending) {
            let acked =
                s.ctx
                    .emitter
                    .emit_acked(Category::Logging, &feed, FeedOpts::default(), points);
            self.handed.push(Box::pin(acked.await));
        }
        if let Some(problem) = self.problem.take()
            && let Some(n) = s.report.due(1)
        {
            let message = format!(
                "logfwdserver {}: {n} bad message(s) or connection(s); last from {}: {problem}",
                s.listen, self.peer
            );
            tracing::warn!(input = INPUT_NAME, "{message}");
            s.ctx
                .emitter
                .last_error(INPUT_NAME, INPUT_NAME, Category::Logging, message)
                .await;
        }
        !self.fatal
    }

    fn reply(&mut self) -> Option<Vec<u8>> {
        (!self.out.is_empty()).then(|| std::mem::take(&mut self.out))
    }
}

async fn serve(input: LogfwdInput, ctx: InputContext) {
    let LogfwdInput {
        cfg,
        telemetry,
        limits,
    } = input;
    telemetry.register(&ctx);
    let listen = cfg.listen();
    let listener = match dk_worker::listen::tcp(&ctx, &listen).map(TcpListener::from_std) {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => return startup_error(&ctx, &listen, &e.to_string()).await,
        Err(e) => return startup_error(&ctx, &listen, &e.to_string()).await,
    };
    let counters = Counters {
        json: telemetry.parse_error(INPUT_NAME, "json"),
        no_source: telemetry.parse_error(INPUT_NAME, "no_source"),
        handshake: telemetry.parse_error(INPUT_NAME, "handshake"),
        protocol: telemetry.parse_error(INPUT_NAME, "protocol"),
        too_big: telemetry.parse_error(INPUT_NAME, "too_big"),
    };
    let shared = Arc::new(Shared {
        ctx: ctx.clone(),
        tags: cfg.tags.clone(),
        listen: listen.clone(),
        limits,
        counters,
        report: Tally::default(),
    });
    tracing::info!(
        input = INPUT_NAME,
        listen,
        "logfwd WebSocket server listening on /logfwd."
    );
    // No idle timeout: a sidecar tailing a quiet file sends nothing for long, and logfwd
    // loses the line it writes to a connection the server closed (it reconnects only after a
    // failed write). Datakit's server never closed idle connections either.
    let opts = tcp::TcpOptions {
        idle_timeout: Duration::ZERO,
        ..tcp::TcpOptions::default()
    };
    tcp::serve(
        listener,
        opts,
        telemetry.listener(INPUT_NAME, &listen),
        ctx.shutdown.clone(),
        move |peer| Connection {
            shared: shared.clone(),
            phase: Phase::Handshake(Vec::new()),
            pending: Vec::new(),
            points: 0,
            out: Vec::new(),
            problem: None,
            fatal: false,
            handed: Vec::new(),
            peer,
        },
    )
    .await;
}

async fn startup_error(ctx: &InputContext, listen: &str, err: &str) {
    let message = format!("logfwdserver {listen}: cannot serve: {err}");
    ctx.startup_error(INPUT_NAME, Category::Logging, message)
        .await;
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use dk_worker::Emitter;
    use dk_worker::emitter::{Feed, Message};
    use tokio::sync::mpsc;

    use super::*;
    use crate::config;

    const MASK: [u8; 4] = [1, 2, 3, 4];

    async fn next_feed(rx: &mut mpsc::Receiver<Message>) -> Feed {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
                Ok(Some(Message::AckedFeed(f, done))) => {
                    let _ = done.send(true);
                    return f;
                }
                Ok(Some(Message::LastError(_))) => {}
                other => panic!("expected a feed, got {other:?}"),
            }
        }
    }

    /// Reads exactly `n` bytes.
    fn read_n(c: &mut std::net::TcpStream, n: usize) -> Vec<u8> {
        let mut b = vec![0u8; n];
        c.read_exact(&mut b).unwrap();
        b
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn upgrades_maps_messages_answers_pings_and_closes_oversized_frames_with_1009() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let at = listener.local_addr().unwrap();
        let cfg = config::parse(&format!("address = \"{at}\"\n[tags]\nenv = \"t\"")).unwrap();
        let (emitter, mut rx) = Emitter::channel(16);
        let (mut ctx, cancel, _pause) = InputContext::for_test(emitter);
        ctx.inherit_tcp(cfg.listen(), &listener);
        let limits = Limits {
            max_frame: 1024,
            max_message: 4096,
        };
        let input = LogfwdInput::with_limits(cfg, Telemetry::default(), limits);
        let task = tokio::spawn(Box::new(input).run(ctx.clone()));
        let client = tokio::task::spawn_blocking(move || {
            let mut c = std::net::TcpStream::connect(at).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            // The upgrade and the first messages in one write.
            let mut wire = ws::client_request("/logfwd");
            wire.extend(ws::client_frame(
                true,
                1,
                br#"{"type":"1","source":"app","tags":{"filename":"a.log"},"log":"one"}"#,
                MASK,
            ));
            wire.extend(ws::client_frame(true, 1, b"not json", MASK));
            wire.extend(ws::client_frame(true, 9, b"hi", MASK));
            c.write_all(&wire).unwrap();
            let head = ws::handshake(&ws::client_request("/logfwd"))
                .unwrap()
                .unwrap();
            assert_eq!(read_n(&mut c, head.response.len()), head.response);
            assert_eq!(read_n(&mut c, 4), ws::frame(0xA, b"hi"), "the pong");
            c
        })
        .await
        .unwrap();
        let f = next_feed(&mut rx).await;
        assert_eq!(
            (f.input.as_str(), f.category),
            ("logfwd/app", Category::Logging)
        );
        assert_eq!(f.points.len(), 1);
        assert_eq!(f.points[0].get_tag("filename"), Some("a.log"));
        assert_eq!(f.points[0].get_tag("env"), Some("t"));

        // The connection stayed: another message, then a frame over the cap.
        let closed = tokio::task::spawn_blocking(move || {
            let mut c = client;
            c.write_all(&ws::client_frame(
                true,
                1,
                br#"{"source":"app","log":"two"}"#,
                MASK,
            ))
            .unwrap();
            c.write_all(&ws::client_frame(true, 1, &[b'x'; 2000], MASK)[..100])
                .unwrap();
            let mut rest = Vec::new();
            c.read_to_end(&mut rest).map(|_| rest)
        });
        let f = next_feed(&mut rx).await;
        assert_eq!(
            f.points[0].get_field("message"),
            Some(&dk_proto::Value::S("two".into()))
        );
        let rest = closed.await.unwrap().unwrap();
        assert_eq!(
            &rest[..4],
            &[0x88, rest[1], 0x03, 0xF1],
            "close 1009: {rest:?}"
        );
        let text = dk_worker::telemetry::encode(&ctx);
        let count = |reason: &str| {
            dk_worker::telemetry::sample(
                &text,
                "datakit_input_parse_errors_total",
                &format!(r#"input="logfwdserver",reason="{reason}""#),
            )
        };
        assert_eq!(count("json"), 1.0);
        assert_eq!(count("too_big"), 1.0);

        // Plain HTTP is refused with a reason.
        let refused = tokio::task::spawn_blocking(move || {
            let mut c = std::net::TcpStream::connect(at).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut rest = Vec::new();
            c.read_to_end(&mut rest).map(|_| rest)
        });
        let resp = String::from_utf8(refused.await.unwrap().unwrap()).unwrap();
        assert!(resp.starts_with("HTTP/1.1 404 "), "{resp}");
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
    }
}
