//! Shared HTTP serving on a family's own port (Pyroscope's 4040...): hyper HTTP/1.1 on an
//! inherited TCP listener, answering with the same [`HttpRoute`] handlers the API port
//! forwards to ([`crate::http`]).
//!
//! [`serve`] accepts connections until shutdown and, per request:
//! - **Caps**: at most [`HttpOptions::max_connections`] connections (over it: closed at once,
//!   counted `reason="connection_limit"`); a body over [`HttpOptions::max_body`] is answered
//!   [`HttpOptions::too_large_status`] without reading the rest; a compressed body
//!   (`Content-Encoding` other than `identity`) is answered 415 unless
//!   [`HttpOptions::pass_encoded`].
//! - **Timeouts**: request headers within [`HttpOptions::header_timeout`], the body within
//!   [`HttpOptions::body_timeout`]; a keep-alive connection idle for
//!   [`HttpOptions::idle_timeout`] is closed (counted `reason="idle_timeout"`).
//! - **Handling**: the route's handler runs off the runtime (`spawn_blocking`), its points are
//!   fed under the route's input with the route's feed options; for a durable route
//!   ([`crate::http::HttpRoute::durable`]) the answer waits until the supervisor has them in the durable queue (503 if it refused).
//!   Unknown paths answer 404, other methods 405.
//! - **Telemetry**: the listener's uniform counters (connections, open, bytes and events =
//!   socket reads, as for every TCP listener).
//! - **Stop**: the listener closes; open connections finish the request in flight (at most
//!   [`super::tcp::DEFAULT_DRAIN_GRACE`]) and close.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Tally;
use crate::emitter::Emitter;
use crate::http::{HttpAnswer, HttpRequest, Method, RouteTable};
use crate::telemetry::{ListenerTelemetry, reason};

/// How an HTTP listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpOptions {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Largest request body, bytes.
    pub max_body: usize,
    /// Status answered to a body over `max_body` (413, or 400 where the peer expects it).
    pub too_large_status: u16,
    /// Time to receive a request's headers.
    pub header_timeout: Duration,
    /// Time to receive a request's body.
    pub body_timeout: Duration,
    /// Keep-alive idle time after which a connection is closed.
    pub idle_timeout: Duration,
    /// Hand a body with a `Content-Encoding` to the handler as it came (the header tells
    /// it), instead of answering 415: for protocols that forward the bytes (Pyroscope's
    /// gzip-encoded pprof).
    pub pass_encoded: bool,
}

impl Default for HttpOptions {
    fn default() -> HttpOptions {
        HttpOptions {
            max_connections: super::tcp::DEFAULT_MAX_CONNECTIONS,
            max_body: 32 << 20,
            too_large_status: 413,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(90),
            pass_encoded: false,
        }
    }
}

/// What every connection of a listener shares.
struct Shared {
    routes: Arc<RouteTable>,
    opts: HttpOptions,
    telemetry: ListenerTelemetry,
    emitter: Emitter,
}

/// Serves `listener` until `shutdown` with the handlers of `routes`, feeding their points
/// through `emitter`; returns once every connection is closed.
pub async fn serve(
    listener: TcpListener,
    routes: Arc<RouteTable>,
    opts: HttpOptions,
    telemetry: ListenerTelemetry,
    emitter: Emitter,
    shutdown: CancellationToken,
) {
    let tcp_opts = super::tcp::TcpOptions {
        max_connections: opts.max_connections,
        ..super::tcp::TcpOptions::default()
    };
    let cap = tcp_opts.effective_max_connections();
    let permits = Arc::new(Semaphore::new(cap));
    let refused = telemetry.dropped(reason::CONNECTION_LIMIT);
    let idle_closed = telemetry.dropped(reason::IDLE_TIMEOUT);
    let accept_errors = telemetry.dropped(reason::ACCEPT_ERROR);
    let report = Tally::default();
    let shared = Arc::new(Shared {
        routes,
        opts,
        telemetry: telemetry.clone(),
        emitter,
    });
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        drop(stream);
                        refused.inc();
                        if let Some(n) = report.due(1) {
                            tracing::warn!(input = telemetry.input(), refused = n, "{cap} HTTP connections are open on this listener (the cap); refused new ones");
                        }
                        continue;
                    };
                    telemetry.connections.inc();
                    telemetry.open.inc();
                    let (shared, shutdown, idle_closed) = (shared.clone(), shutdown.clone(), idle_closed.clone());
                    conns.spawn(async move {
                        connection(stream, shared.clone(), shutdown, idle_closed).await;
                        shared.telemetry.open.dec();
                        drop(permit);
                    });
                }
                Err(e) => {
                    accept_errors.inc();
                    if let Some(n) = report.due(1) {
                        tracing::warn!(input = telemetry.input(), errors = n, "accepting an HTTP connection failed: {e}");
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                }
            },
        }
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

/// Serves one connection: requests until the client closes, the connection idles out, or
/// shutdown (which lets the request in flight finish within the drain grace).
async fn connection(
    stream: tokio::net::TcpStream,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    idle_closed: prometheus_client::metrics::counter::Counter,
) {
    let start = Instant::now();
    // Milliseconds since `start` of the last request's end; u64::MAX while one is in flight.
    let last = Arc::new(AtomicU64::new(0));
    let svc_last = last.clone();
    let svc_shared = shared.clone();
    let svc = service_fn(move |req| {
        let (shared, last) = (svc_shared.clone(), svc_last.clone());
        async move {
            last.store(u64::MAX, Ordering::Relaxed);
            let answer = request(&shared, req).await;
            last.store(
                u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX - 1),
                Ordering::Relaxed,
            );
            Ok::<_, Infallible>(answer)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(shared.opts.header_timeout)
        .max_buf_size(64 * 1024)
        .serve_connection(
            TokioIo::new(Counted {
                inner: stream,
                bytes: shared.telemetry.bytes.clone(),
                events: shared.telemetry.events.clone(),
            }),
            svc,
        );
    tokio::pin!(conn);
    let idle = shared.opts.idle_timeout;
    let tick = (idle / 4).max(Duration::from_millis(10));
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            () = shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(super::tcp::DEFAULT_DRAIN_GRACE, conn.as_mut()).await;
                return;
            }
            () = tokio::time::sleep(tick) => {
                let at = last.load(Ordering::Relaxed);
                if at != u64::MAX
                    && start.elapsed().saturating_sub(Duration::from_millis(at)) >= idle
                {
                    idle_closed.inc();
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(super::tcp::DEFAULT_DRAIN_GRACE, conn.as_mut()).await;
                    return;
                }
            }
        }
    }
}

/// A stream whose reads are counted in the listener's telemetry.
struct Counted {
    inner: tokio::net::TcpStream,
    bytes: prometheus_client::metrics::counter::Counter,
    events: prometheus_client::metrics::counter::Counter,
}

impl tokio::io::AsyncRead for Counted {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.events.inc();
            self.bytes.inc_by(n as u64);
        }
        polled
    }
}

impl tokio::io::AsyncWrite for Counted {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

fn reply(a: HttpAnswer) -> hyper::Response<Full<Bytes>> {
    let mut resp = hyper::Response::new(Full::new(Bytes::from(a.body)));
    *resp.status_mut() =
        http::StatusCode::from_u16(a.status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = http::HeaderValue::from_str(a.content_type) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    resp
}

/// One request: read the body under the caps, run the handler, feed its points, answer.
async fn request(shared: &Shared, req: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
    let opts = &shared.opts;
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let Some(method) = Method::parse(parts.method.as_str()) else {
        return reply(HttpAnswer::text(
            405,
            format!("{path} does not answer {}", parts.method),
        ));
    };
    if shared.routes.find(method, &path).is_none() {
        return reply(shared.routes.handle(method, &path, HttpRequest::default()));
    }
    let encoding = parts
        .headers
        .get(http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity");
    if !opts.pass_encoded && !encoding.eq_ignore_ascii_case("identity") {
        return reply(HttpAnswer::text(
            415,
            format!(
                "Content-Encoding {encoding:?} is not accepted on this port; send the body uncompressed"
            ),
        ));
    }
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let too_large = || {
        reply(HttpAnswer::text(
            opts.too_large_status,
            format!(
                "the body is over the limit of {} bytes; send smaller requests",
                opts.max_body
            ),
        ))
    };
    if declared.is_some_and(|n| n > opts.max_body) {
        shared.telemetry.dropped(reason_too_large()).inc();
        return too_large();
    }
    let body = match tokio::time::timeout(
        opts.body_timeout,
        Limited::new(body, opts.max_body).collect(),
    )
    .await
    {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            shared.telemetry.dropped(reason_too_large()).inc();
            return too_large();
        }
        Ok(Err(e)) => {
            return reply(HttpAnswer::text(
                400,
                format!("reading the body failed: {e}"),
            ));
        }
        Err(_) => {
            return reply(HttpAnswer::text(
                408,
                format!("the body did not arrive within {:?}", opts.body_timeout),
            ));
        }
    };
    let mut headers = Vec::with_capacity(parts.headers.len());
    for (k, v) in &parts.headers {
        if let Ok(v) = v.to_str() {
            headers.push((k.as_str().to_string(), v.to_string()));
        }
    }
    let request = HttpRequest {
        query: parts.uri.query().unwrap_or("").to_string(),
        headers,
        body: body.to_vec(),
    };
    drop(body);
    reply(
        crate::http::answer(
            shared.routes.clone(),
            &shared.emitter,
            method,
            path,
            request,
        )
        .await,
    )
}

fn reason_too_large() -> &'static str {
    reason::BODY_TOO_LARGE
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};

    use dk_proto::{Category, Point, Value};

    use super::*;
    use crate::emitter::Message;
    use crate::http::HttpRoute;
    use crate::telemetry::Telemetry;

    fn table() -> Arc<RouteTable> {
        let mut t = RouteTable::default();
        t.add(HttpRoute::new(
            Method::Post,
            "/ingest",
            "lines",
            |req: HttpRequest| {
                let points = String::from_utf8_lossy(&req.body)
                    .lines()
                    .map(|l| Point::new("l", 1).field("message", Value::S(l.into())))
                    .collect();
                HttpAnswer {
                    points: vec![(Category::Logging, points)],
                    ..HttpAnswer::text(200, format!("q={}", req.query))
                }
            },
        ))
        .unwrap();
        Arc::new(t)
    }

    struct Server {
        addr: std::net::SocketAddr,
        /// What the server fed; acked feeds are acknowledged as durable on the way.
        rx: tokio::sync::mpsc::UnboundedReceiver<Message>,
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<()>,
        ctx: crate::InputContext,
    }

    async fn start(opts: HttpOptions) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let telemetry = Telemetry::new();
        let (emitter, mut fed) = Emitter::channel(16);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        // Stands for the supervisor: every feed is taken into the "durable queue" at once.
        tokio::spawn(async move {
            while let Some(m) = fed.recv().await {
                let m = match m {
                    Message::AckedFeed(f, done) => {
                        let _ = done.send(true);
                        Message::Feed(f)
                    }
                    other => other,
                };
                if tx.send(m).is_err() {
                    break;
                }
            }
        });
        let (ctx, shutdown, _) = crate::InputContext::for_test(emitter.clone());
        telemetry.register(&ctx);
        let task = tokio::spawn(serve(
            listener,
            table(),
            opts,
            telemetry.listener("lines", "tcp://127.0.0.1:0"),
            emitter,
            shutdown.clone(),
        ));
        Server {
            addr,
            rx,
            shutdown,
            task,
            ctx,
        }
    }

    /// One HTTP/1.1 request on a fresh connection (blocking std socket, off the runtime);
    /// returns the status line's code and the body.
    async fn send(addr: std::net::SocketAddr, raw: Vec<u8>) -> (u16, String) {
        tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(&raw).unwrap();
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            let code = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
            let body = out
                .split_once("\r\n\r\n")
                .map(|(_, b)| b.to_string())
                .unwrap_or_default();
            (code, body)
        })
        .await
        .unwrap()
    }

    fn post(path: &str, body: &str) -> Vec<u8> {
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    #[tokio::test]
    async fn answers_with_the_route_handler_and_feeds_its_points_under_the_routes_input() {
        let mut s = start(HttpOptions::default()).await;
        let (code, body) = send(s.addr, post("/ingest?a=1", "one\ntwo")).await;
        assert_eq!((code, body.as_str()), (200, "q=a=1"));
        match s.rx.recv().await {
            Some(Message::Feed(f)) => {
                assert_eq!(
                    (f.input.as_str(), f.category, f.points.len()),
                    ("lines", Category::Logging, 2)
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(send(s.addr, post("/other", "x")).await.0, 404);
        let get = b"GET /ingest HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec();
        assert_eq!(send(s.addr, get).await.0, 405);
        let gz = b"POST /ingest HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Encoding: gzip\r\nContent-Length: 1\r\n\r\nx".to_vec();
        assert_eq!(send(s.addr, gz).await.0, 415);
        s.shutdown.cancel();
        s.task.await.unwrap();
    }

    #[tokio::test]
    async fn a_body_over_the_cap_gets_the_configured_status_and_is_counted() {
        let s = start(HttpOptions {
            max_body: 10,
            too_large_status: 400,
            ..HttpOptions::default()
        })
        .await;
        let (code, body) = send(s.addr, post("/ingest", "0123456789A")).await;
        assert_eq!(code, 400);
        assert!(body.contains("limit of 10 bytes"), "{body}");
        // A chunked body without a length is cut at the cap too.
        let chunked = b"POST /ingest HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n012345\r\n6\r\n6789AB\r\n0\r\n\r\n".to_vec();
        assert_eq!(send(s.addr, chunked).await.0, 400);
        let text = crate::telemetry::encode(&s.ctx);
        assert_eq!(
            crate::telemetry::sample(
                &text,
                "datakit_input_dropped_total",
                r#"input="lines",reason="body_too_large""#
            ),
            2.0,
            "{text}"
        );
        s.shutdown.cancel();
    }

    #[tokio::test]
    async fn connections_over_the_cap_are_closed_and_idle_ones_time_out() {
        let s = start(HttpOptions {
            max_connections: 1,
            idle_timeout: Duration::from_millis(200),
            ..HttpOptions::default()
        })
        .await;
        let addr = s.addr;
        let (first_closed, second) = tokio::task::spawn_blocking(move || {
            let mut first = std::net::TcpStream::connect(addr).unwrap();
            // The first request keeps its connection alive; the second connection is over the cap.
            first
                .write_all(b"POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx")
                .unwrap();
            first
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut buf = [0u8; 512];
            let n = first.read(&mut buf).unwrap();
            assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
            let mut second = std::net::TcpStream::connect(addr).unwrap();
            second
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let _ = second.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
            let got = second.read(&mut buf).unwrap_or(0);
            // Then the first connection idles out: the server closes it (read returns 0).
            let started = std::time::Instant::now();
            let closed = first.read(&mut buf).map(|n| n == 0).unwrap_or(true);
            (closed && started.elapsed() < Duration::from_secs(5), got)
        })
        .await
        .unwrap();
        assert_eq!(
            second, 0,
            "the connection over the cap is closed unanswered"
        );
        assert!(first_closed, "the idle keep-alive connection is closed");
        s.shutdown.cancel();
    }
}
