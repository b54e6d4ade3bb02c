//! Shared TCP serving: one accept loop and one connection loop for every family.
//!
//! [`serve`] accepts connections on an inherited listener until shutdown and runs a
//! [`Connection`] (made by the family per peer) for each:
//!
//! - **Cap**: at most [`TcpOptions::max_connections`] open at once (never more than the open
//!   files limit allows); a connection over the cap is accepted and closed at once and counted
//!   in `datakit_input_dropped_total{reason="connection_limit"}`.
//! - **Idle timeout**: a connection that sends nothing for [`TcpOptions::idle_timeout`] is
//!   closed (its pending data is kept) and counted (`reason="idle_timeout"`).
//! - **Bounded reads**: one connection reads at most [`TcpOptions::read_buffer`] bytes at a time
//!   into a buffer allocated at its first data, and hands over what it gathered after at most
//!   [`MAX_READS`] reads (or when the family says it is full), so one client cannot make the
//!   worker hold more than a bounded amount for it.
//! - **Accept errors** (out of descriptors...) are counted, reported at most every
//!   [`super::REPORT_EVERY`], and backed off (10 ms doubling to 1 s) while shutdown still
//!   interrupts the wait.
//! - **Replies**: after each hand-over the kit writes what [`Connection::reply`] returns (a
//!   protocol's acks, e.g. lumberjack's once the points are durable) before reading more;
//!   while a hand-over is pending it writes [`Connection::keepalive`]'s bytes at its interval
//!   (lumberjack's `2A 0` every 3 s, so the client does not time out a slow ack).
//! - **Upgrades**: [`serve_with`] upgrades each accepted socket inside its connection's task
//!   and under the cap before serving it (a TLS handshake with its timeout); any async stream
//!   is served through [`Buffered`].
//! - **Graceful drain**: on shutdown the listener stops accepting; every connection reads what
//!   the client already sent (for at most [`TcpOptions::drain_grace`]), finishes its last line,
//!   hands it over, and closes.

use std::future::Future;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncBufRead, AsyncBufReadExt as _, AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Tally;
use crate::telemetry::{ListenerTelemetry, reason};

/// Connections a listener serves at once unless the input configures another cap.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// How long a connection may stay silent before it is closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Bytes read from one connection at a time.
pub const DEFAULT_READ_BUFFER: usize = 64 * 1024;
/// How long a connection keeps reading what the client already sent once shutdown began.
pub const DEFAULT_DRAIN_GRACE: Duration = Duration::from_secs(2);
/// Reads made on one connection before what they gathered is handed over.
pub const MAX_READS: usize = 16;
/// Descriptors kept free for everything else when the cap is fitted to the open-files limit.
const RESERVED_FDS: u64 = 64;

/// How a listener serves its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpOptions {
    /// Most connections open at once (Datakit's `max_tcp_connections` where the input has it).
    pub max_connections: usize,
    /// Silence after which a connection is closed (`Duration::ZERO`: never).
    pub idle_timeout: Duration,
    /// Bytes read at a time per connection.
    pub read_buffer: usize,
    /// Time a connection keeps reading already-sent data after shutdown began.
    pub drain_grace: Duration,
}

impl Default for TcpOptions {
    fn default() -> TcpOptions {
        TcpOptions {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            read_buffer: DEFAULT_READ_BUFFER,
            drain_grace: DEFAULT_DRAIN_GRACE,
        }
    }
}

impl TcpOptions {
    /// The cap actually applied: `max_connections` (at least 1), lowered to fit the process's
    /// open-files limit minus a reserve.
    pub fn effective_max_connections(&self) -> usize {
        let want = self.max_connections.max(1);
        match open_files_limit() {
            Some(limit) => {
                let fit = usize::try_from(limit.saturating_sub(RESERVED_FDS).max(1))
                    .unwrap_or(usize::MAX);
                want.min(fit)
            }
            None => want,
        }
    }
}

/// The soft `RLIMIT_NOFILE` of this process.
fn open_files_limit() -> Option<u64> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rl` is a live, writable rlimit struct for the duration of the call.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut rl) };
    (rc == 0 && rl.rlim_cur != libc::RLIM_INFINITY).then_some(rl.rlim_cur)
}

/// What a family does with one TCP connection's bytes. The kit calls `data` for every read,
/// `flush` after a round of reads, `idle` when nothing came for [`Connection::linger`], and
/// `finish` then `flush` once when the stream ends (client close, error, idle timeout or
/// shutdown).
pub trait Connection: Send + 'static {
    /// Takes the bytes of one read.
    fn data(&mut self, bytes: &[u8]);

    /// `true` when enough is gathered to hand over before reading more.
    fn full(&self) -> bool {
        false
    }

    /// How long to wait for more data before [`Connection::idle`] is called (`None`: wait for
    /// data or the idle timeout). Asked before every wait.
    fn linger(&self) -> Option<Duration> {
        None
    }

    /// Nothing arrived for [`Connection::linger`]: hand over what waits for continuation.
    fn idle(&mut self) {}

    /// The stream ended: keep what is pending (an unterminated last line).
    fn finish(&mut self);

    /// Hands over what was gathered; `false` when the runtime is gone (the connection stops).
    fn flush(&mut self) -> impl Future<Output = bool> + Send;

    /// Bytes to send back to the client, asked after every `flush` (a protocol's acks, sent
    /// once the flush has handed the data over). The kit writes them before reading more,
    /// within [`REPLY_TIMEOUT`]; a client that does not take them is dropped.
    fn reply(&mut self) -> Option<Vec<u8>> {
        None
    }

    /// Bytes to send every interval while a `flush` is pending (a protocol's keepalive, asked
    /// before every flush); `None`: nothing. A client that does not take them within
    /// [`REPLY_TIMEOUT`] is dropped, with the flush.
    fn keepalive(&self) -> Option<(Duration, &'static [u8])> {
        None
    }
}

/// Longest time writing a [`Connection::reply`] may take.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection's byte stream as the kit reads and answers it: a plain [`TcpStream`], or any
/// async stream (TLS) through [`Buffered`].
pub trait Stream: Send + 'static {
    /// Waits until a read may return data, the end or an error.
    fn readable(&mut self) -> impl Future<Output = std::io::Result<()>> + Send;

    /// One read without waiting (`WouldBlock` when nothing is there); `drain` reads the socket
    /// whatever the runtime knows of its readiness (shutdown drain).
    fn read_now(&mut self, buf: &mut [u8], drain: bool) -> std::io::Result<usize>;

    /// Writes all of `bytes`.
    fn write_all(&mut self, bytes: &[u8]) -> impl Future<Output = std::io::Result<()>> + Send;
}

impl Stream for TcpStream {
    async fn readable(&mut self) -> std::io::Result<()> {
        TcpStream::readable(self).await
    }

    fn read_now(&mut self, buf: &mut [u8], drain: bool) -> std::io::Result<usize> {
        if drain {
            recv_now(self, buf)
        } else {
            self.try_read(buf)
        }
    }

    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let mut rest: &[u8] = bytes;
        while !rest.is_empty() {
            self.writable().await?;
            match self.try_write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Bytes a [`Buffered`] stream reads ahead (one TLS record).
pub const BUFFERED_READ: usize = 16 * 1024;

/// Any async stream (a TLS session) served as a [`Stream`]: what it decrypts is read ahead
/// into a [`BUFFERED_READ`]-byte buffer, so waiting for data never loses any.
pub struct Buffered<S>(tokio::io::BufReader<S>);

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Buffered<S> {
    /// `inner`, served by the kit.
    pub fn new(inner: S) -> Buffered<S> {
        Buffered(tokio::io::BufReader::with_capacity(BUFFERED_READ, inner))
    }
}

/// Polls the buffered reader once, with no waker (the next `readable` registers one).
fn fill_now<R: AsyncBufRead + Unpin>(r: &mut R) -> Poll<std::io::Result<usize>> {
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    Pin::new(r).poll_fill_buf(&mut cx).map_ok(<[u8]>::len)
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for Buffered<S> {
    async fn readable(&mut self) -> std::io::Result<()> {
        self.0.fill_buf().await.map(|_| ())
    }

    fn read_now(&mut self, buf: &mut [u8], _drain: bool) -> std::io::Result<usize> {
        match fill_now(&mut self.0) {
            Poll::Pending => Err(ErrorKind::WouldBlock.into()),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Ready(Ok(_)) => {
                let ahead = self.0.buffer();
                let n = ahead.len().min(buf.len());
                buf[..n].copy_from_slice(&ahead[..n]);
                self.0.consume(n);
                Ok(n)
            }
        }
    }

    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let inner = self.0.get_mut();
        inner.write_all(bytes).await?;
        inner.flush().await
    }
}

/// Writes what the connection has to say back; `false` when the client is gone or too slow.
async fn answer<C: Connection, S: Stream>(stream: &mut S, conn: &mut C) -> bool {
    let Some(bytes) = conn.reply() else {
        return true;
    };
    write_all(stream, &bytes).await
}

/// [`Connection::flush`], writing the connection's keepalive while it is pending; `false`
/// when the flush says so or the client does not take a keepalive.
async fn flush<C: Connection, S: Stream>(stream: &mut S, conn: &mut C) -> bool {
    let Some((every, bytes)) = conn.keepalive() else {
        return conn.flush().await;
    };
    let flushing = conn.flush();
    tokio::pin!(flushing);
    let mut tick = tokio::time::interval_at(Instant::now() + every, every);
    loop {
        tokio::select! {
            ok = &mut flushing => return ok,
            _ = tick.tick() => {
                if !write_all(stream, bytes).await {
                    return false;
                }
            }
        }
    }
}

/// Writes all of `bytes` within [`REPLY_TIMEOUT`]; `false` when the client is gone or too slow.
async fn write_all<S: Stream>(stream: &mut S, bytes: &[u8]) -> bool {
    matches!(
        tokio::time::timeout(REPLY_TIMEOUT, stream.write_all(bytes)).await,
        Ok(Ok(()))
    )
}

/// Serves `listener` until `shutdown`, then drains the open connections and returns once they
/// are all closed. `make` builds the [`Connection`] of each accepted peer.
pub async fn serve<C, F>(
    listener: TcpListener,
    opts: TcpOptions,
    telemetry: ListenerTelemetry,
    shutdown: CancellationToken,
    make: F,
) where
    C: Connection,
    F: Fn(SocketAddr) -> C + Send + Sync + 'static,
{
    serve_with(listener, opts, telemetry, shutdown, make, |s, _| {
        std::future::ready(Some(s))
    })
    .await;
}

/// [`serve`], each accepted socket first upgraded by `upgrade` (a TLS handshake, which bounds
/// its own time) in its connection's task while it holds its place under the cap; `None`
/// closes it. Shutdown interrupts an upgrade.
pub async fn serve_with<C, F, S, U, Fut>(
    listener: TcpListener,
    opts: TcpOptions,
    telemetry: ListenerTelemetry,
    shutdown: CancellationToken,
    make: F,
    upgrade: U,
) where
    C: Connection,
    F: Fn(SocketAddr) -> C + Send + Sync + 'static,
    S: Stream,
    U: Fn(TcpStream, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Option<S>> + Send + 'static,
{
    let upgrade = Arc::new(upgrade);
    let cap = opts.effective_max_connections();
    let permits = Arc::new(Semaphore::new(cap));
    // Created now, so the series show 0 from the start.
    let refused = telemetry.dropped(reason::CONNECTION_LIMIT);
    let idle_closed = telemetry.dropped(reason::IDLE_TIMEOUT);
    let accept_errors = telemetry.dropped(reason::ACCEPT_ERROR);
    let refused_report = Tally::default();
    let error_report = Tally::default();
    let mut conns = JoinSet::new();
    let mut backoff = Duration::from_millis(10);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    backoff = Duration::from_millis(10);
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        // Over the cap: close at once (the client sees the close), count it.
                        drop(stream);
                        refused.inc();
                        if let Some(n) = refused_report.due(1) {
                            tracing::warn!(
                                input = telemetry.input(),
                                refused = n,
                                "{cap} connections are open on this listener (the cap); refused new ones; raise the cap or use fewer connections"
                            );
                        }
                        continue;
                    };
                    telemetry.connections.inc();
                    let conn = make(peer);
                    let (telemetry, shutdown) = (telemetry.clone(), shutdown.clone());
                    let idle_closed = idle_closed.clone();
                    let upgrading = upgrade(stream, peer);
                    conns.spawn(async move {
                        let stream = tokio::select! {
                            () = shutdown.cancelled() => None,
                            s = upgrading => s,
                        };
                        if let Some(stream) = stream {
                            connection(stream, conn, opts, telemetry, idle_closed, shutdown).await;
                        }
                        drop(permit);
                    });
                }
                Err(e) => {
                    accept_errors.inc();
                    if let Some(n) = error_report.due(1) {
                        tracing::warn!(
                            input = telemetry.input(),
                            errors = n,
                            "accepting a connection failed: {e}; retrying in {backoff:?} (raise the open files limit if this says too many open files)"
                        );
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            },
        }
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

/// Decrements the open-connection gauge when the connection ends.
struct OpenGuard(prometheus_client::metrics::gauge::Gauge);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What ended one wait on a connection.
enum Wake {
    Readable,
    Linger,
    IdleTimeout,
    Shutdown,
}

async fn connection<C: Connection, S: Stream>(
    mut stream: S,
    mut conn: C,
    opts: TcpOptions,
    telemetry: ListenerTelemetry,
    idle_closed: Counter,
    shutdown: CancellationToken,
) {
    telemetry.open.inc();
    let _open = OpenGuard(telemetry.open.clone());
    // Allocated at the first data, so idle connections cost no buffer.
    let mut buf: Vec<u8> = Vec::new();
    let idle = (!opts.idle_timeout.is_zero()).then_some(opts.idle_timeout);
    let far = Duration::from_secs(86_400 * 365);
    let idle_timer = tokio::time::sleep(idle.unwrap_or(far));
    tokio::pin!(idle_timer);
    loop {
        let linger = conn.linger();
        let wake = tokio::select! {
            () = shutdown.cancelled() => Wake::Shutdown,
            r = stream.readable() => match r {
                Ok(()) => Wake::Readable,
                Err(_) => { conn.finish(); let _ = conn.flush().await; return; }
            },
            () = tokio::time::sleep(linger.unwrap_or(far)), if linger.is_some() => Wake::Linger,
            () = &mut idle_timer => Wake::IdleTimeout,
        };
        match wake {
            Wake::Readable => {
                let ended = read_ready(&mut stream, &mut buf, &mut conn, &opts, &telemetry, None);
                if let Some(idle) = idle {
                    idle_timer.as_mut().reset(Instant::now() + idle);
                }
                if ended {
                    conn.finish();
                }
                if !flush(&mut stream, &mut conn).await
                    || !answer(&mut stream, &mut conn).await
                    || ended
                {
                    return;
                }
            }
            Wake::Linger => {
                conn.idle();
                if !flush(&mut stream, &mut conn).await || !answer(&mut stream, &mut conn).await {
                    return;
                }
            }
            Wake::IdleTimeout => {
                idle_closed.inc();
                conn.finish();
                let _ = conn.flush().await;
                return;
            }
            Wake::Shutdown => {
                // Take what the client already sent, then hand everything over.
                let deadline = Instant::now() + opts.drain_grace;
                loop {
                    let ended = read_ready(
                        &mut stream,
                        &mut buf,
                        &mut conn,
                        &opts,
                        &telemetry,
                        Some(deadline),
                    );
                    let more = !ended && conn.full() && Instant::now() < deadline;
                    if !more {
                        break;
                    }
                    if !flush(&mut stream, &mut conn).await || !answer(&mut stream, &mut conn).await
                    {
                        return;
                    }
                }
                conn.finish();
                if flush(&mut stream, &mut conn).await {
                    let _ = answer(&mut stream, &mut conn).await;
                }
                return;
            }
        }
    }
}

/// Bytes of the first read of a round, on the thread's stack: a connection that sends little
/// (or is woken without data) never holds a heap buffer.
const FIRST_READ: usize = 4096;

/// Reads what the socket holds without waiting: up to [`MAX_READS`] reads (until `deadline`
/// when draining), stopping early when the connection is full. `true` when the stream ended.
///
/// A round starts on a small stack buffer; only a client that fills it gets the connection's
/// `read_buffer` (allocated then), which is released again after a round of less than
/// [`FIRST_READ`] bytes, so idle and slow connections cost no buffer and the cap bounds the
/// memory of busy ones.
fn read_ready<C: Connection, S: Stream>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    conn: &mut C,
    opts: &TcpOptions,
    telemetry: &ListenerTelemetry,
    deadline: Option<Instant>,
) -> bool {
    let mut small = [0u8; FIRST_READ];
    let mut reads = 0usize;
    let mut total = 0usize;
    let mut filled = false;
    let ended = loop {
        if conn.full() {
            break false;
        }
        match deadline {
            None if reads >= MAX_READS => break false,
            Some(d) if Instant::now() >= d => break false,
            _ => {}
        }
        if filled && buf.is_empty() {
            *buf = vec![0u8; opts.read_buffer.max(FIRST_READ)];
        }
        let target: &mut [u8] = if buf.is_empty() { &mut small } else { buf };
        // Draining, the socket is read directly: tokio's readiness may not have seen data
        // that arrived while the task was not polled.
        let read = stream.read_now(target, deadline.is_some());
        match read {
            Ok(0) => break true,
            Ok(n) => {
                reads += 1;
                total += n;
                filled = n == target.len();
                telemetry.bytes.inc_by(n as u64);
                telemetry.events.inc();
                conn.data(&target[..n]);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // Reset or another error: the stream is over; what was read is kept.
            Err(_) => break true,
        }
    };
    if total < FIRST_READ {
        *buf = Vec::new();
    }
    ended
}

/// One non-blocking `recv` on the socket, whatever tokio knows of its readiness.
fn recv_now(stream: &TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for the borrow of `stream`; `buf` is live and writable
    // for `buf.len()` bytes; MSG_DONTWAIT makes the call return at once.
    #[allow(unsafe_code)]
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(usize::try_from(n).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::sync::Mutex;

    use super::*;
    use crate::telemetry::{Telemetry, encode, sample};
    use crate::{Emitter, InputContext};

    /// Collects lines into a shared list; a partial line is kept at finish.
    struct Lines {
        partial: Vec<u8>,
        ready: Vec<String>,
        out: Arc<Mutex<Vec<String>>>,
    }

    impl Connection for Lines {
        fn data(&mut self, bytes: &[u8]) {
            for &b in bytes {
                if b == b'\n' {
                    self.ready
                        .push(String::from_utf8_lossy(&self.partial).into_owned());
                    self.partial.clear();
                } else {
                    self.partial.push(b);
                }
            }
        }

        fn finish(&mut self) {
            if !self.partial.is_empty() {
                self.ready
                    .push(String::from_utf8_lossy(&self.partial).into_owned());
                self.partial.clear();
            }
        }

        async fn flush(&mut self) -> bool {
            self.out.lock().unwrap().append(&mut self.ready);
            true
        }
    }

    struct Server {
        addr: SocketAddr,
        out: Arc<Mutex<Vec<String>>>,
        ctx: InputContext,
        stop: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    async fn start(opts: TcpOptions) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (emitter, _rx) = Emitter::channel(1);
        let (ctx, stop, _) = InputContext::for_test(emitter);
        let t = Telemetry::new();
        t.register(&ctx);
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        let task = tokio::spawn(serve(
            listener,
            opts,
            t.listener("test", "tcp://x"),
            stop.clone(),
            move |_| Lines {
                partial: Vec::new(),
                ready: Vec::new(),
                out: sink.clone(),
            },
        ));
        Server {
            addr,
            out,
            ctx,
            stop,
            task,
        }
    }

    impl Server {
        fn metric(&self, name: &str, labels: &str) -> f64 {
            sample(&encode(&self.ctx), name, labels)
        }

        async fn wait_metric(&self, name: &str, labels: &str, want: f64) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.metric(name, labels) != want {
                assert!(
                    Instant::now() < deadline,
                    "{name}{{{labels}}} stayed at {} (want {want})",
                    self.metric(name, labels)
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }

        async fn wait_lines(&self, n: usize) -> Vec<String> {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let got = self.out.lock().unwrap().clone();
                if got.len() >= n {
                    return got;
                }
                assert!(Instant::now() < deadline, "only {got:?}");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    const LISTENER: &str = r#"input="test",listener="tcp://x""#;

    #[tokio::test]
    async fn refuses_connections_over_the_cap_and_counts_them() {
        let srv = start(TcpOptions {
            max_connections: 2,
            ..TcpOptions::default()
        })
        .await;
        let a = std::net::TcpStream::connect(srv.addr).unwrap();
        let b = std::net::TcpStream::connect(srv.addr).unwrap();
        srv.wait_metric("datakit_input_open_connections", LISTENER, 2.0)
            .await;
        let mut c = std::net::TcpStream::connect(srv.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut byte = [0u8; 1];
        // The third is closed by the server at once.
        assert_eq!(c.read(&mut byte).unwrap_or(0), 0);
        srv.wait_metric(
            "datakit_input_dropped_total",
            r#"input="test",reason="connection_limit""#,
            1.0,
        )
        .await;
        assert_eq!(srv.metric("datakit_input_connections_total", LISTENER), 2.0);
        // A slot freed is used again.
        drop(a);
        srv.wait_metric("datakit_input_open_connections", LISTENER, 1.0)
            .await;
        let mut d = std::net::TcpStream::connect(srv.addr).unwrap();
        d.write_all(b"after\n").unwrap();
        assert_eq!(srv.wait_lines(1).await, vec!["after"]);
        drop(b);
    }

    #[tokio::test]
    async fn closes_a_silent_connection_after_the_idle_timeout_keeping_its_last_line() {
        let srv = start(TcpOptions {
            idle_timeout: Duration::from_millis(200),
            ..TcpOptions::default()
        })
        .await;
        let mut s = std::net::TcpStream::connect(srv.addr).unwrap();
        s.write_all(b"one\ntwo").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut byte = [0u8; 1];
        assert_eq!(s.read(&mut byte).unwrap_or(0), 0, "closed by the server");
        assert_eq!(srv.wait_lines(2).await, vec!["one", "two"]);
        assert_eq!(
            srv.metric(
                "datakit_input_dropped_total",
                r#"input="test",reason="idle_timeout""#
            ),
            1.0
        );
    }

    #[tokio::test]
    async fn shutdown_drains_what_clients_already_sent_then_closes() {
        let mut srv = start(TcpOptions::default()).await;
        let mut clients: Vec<std::net::TcpStream> = (0..3)
            .map(|_| std::net::TcpStream::connect(srv.addr).unwrap())
            .collect();
        srv.wait_metric("datakit_input_open_connections", LISTENER, 3.0)
            .await;
        let mut want = Vec::new();
        let mut sent = 0usize;
        for (i, c) in clients.iter_mut().enumerate() {
            let mut body = String::new();
            for j in 0..1000 {
                body.push_str(&format!("c{i} line {j}\n"));
                want.push(format!("c{i} line {j}"));
            }
            body.push_str(&format!("c{i} unterminated"));
            want.push(format!("c{i} unterminated"));
            c.write_all(body.as_bytes()).unwrap();
            sent += body.len();
        }
        // Stop at once: most of it is still in the kernel's buffers, to be drained.
        srv.stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), &mut srv.task)
            .await
            .expect("serve ends after the drain")
            .unwrap();
        let mut got = srv.out.lock().unwrap().clone();
        got.sort();
        want.sort();
        assert_eq!(got, want);
        assert_eq!(srv.metric("datakit_input_open_connections", LISTENER), 0.0);
        assert_eq!(
            srv.metric("datakit_input_received_bytes_total", LISTENER),
            sent as f64
        );
        // The listener is closed: new connections fail or are closed unanswered.
        if let Ok(mut late) = std::net::TcpStream::connect(srv.addr) {
            late.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut byte = [0u8; 1];
            assert_eq!(late.read(&mut byte).unwrap_or(0), 0);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_upgraded_stream_is_served_like_a_plain_one_and_shutdown_interrupts_upgrades() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (emitter, _rx) = Emitter::channel(1);
        let (ctx, stop, _) = InputContext::for_test(emitter);
        let t = Telemetry::new();
        t.register(&ctx);
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        // The first byte says whether the upgrade completes ('+') or never does.
        let task = tokio::spawn(serve_with(
            listener,
            TcpOptions::default(),
            t.listener("test", "tcp://x"),
            stop.clone(),
            move |_| Lines {
                partial: Vec::new(),
                ready: Vec::new(),
                out: sink.clone(),
            },
            |s: TcpStream, _| async move {
                let mut first = [0u8; 1];
                s.readable().await.ok()?;
                s.try_read(&mut first).ok()?;
                if first[0] != b'+' {
                    std::future::pending::<()>().await;
                }
                Some(Buffered::new(s))
            },
        ));
        let mut stuck = std::net::TcpStream::connect(addr).unwrap();
        stuck.write_all(b"-never served\n").unwrap();
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.write_all(b"+one\ntw").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while out.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "nothing served");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // 40 KiB more: more than the read-ahead buffer, in several reads.
        let long = "x".repeat(40 * 1024);
        c.write_all(format!("o\n{long}\nlast").as_bytes()).unwrap();
        drop(c);
        while out.lock().unwrap().len() < 4 {
            assert!(
                Instant::now() < deadline,
                "only {:?}",
                out.lock().unwrap().len()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            out.lock().unwrap().clone(),
            vec!["one".to_string(), "two".into(), long, "last".into()]
        );
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("shutdown interrupts the stuck upgrade")
            .unwrap();
        stuck
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut byte = [0u8; 1];
        assert_eq!(stuck.read(&mut byte).unwrap_or(0), 0, "closed unserved");
    }

    #[test]
    fn the_cap_fits_the_open_files_limit() {
        let opts = TcpOptions {
            max_connections: usize::MAX,
            ..TcpOptions::default()
        };
        let cap = opts.effective_max_connections();
        let limit = open_files_limit().unwrap_or(u64::MAX);
        assert!(
            cap as u64 <= limit.saturating_sub(RESERVED_FDS).max(1),
            "{cap}"
        );
        let small = TcpOptions {
            max_connections: 0,
            ..TcpOptions::default()
        };
        assert_eq!(small.effective_max_connections(), 1);
    }
}
