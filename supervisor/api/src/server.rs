//! The accept loop of the API over hyper directly (TCP and Unix): header read timeout,
//! a cap on open connections that evicts the connection idle the longest, graceful shutdown
//! (ADR 0005).

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tower::ServiceExt;

use crate::{ApiConfig, ApiMetrics, SHUTDOWN_GRACE};

/// A listener the API accepts connections from.
pub(crate) trait Listen: Send + 'static {
    /// The connection type.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// The next connection and the peer the loopback checks see.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Io, SocketAddr)>> + Send;
}

impl Listen for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    async fn accept(&self) -> io::Result<(Self::Io, SocketAddr)> {
        let (s, peer) = tokio::net::TcpListener::accept(self).await?;
        let _ = s.set_nodelay(true);
        Ok((s, peer))
    }
}

impl Listen for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;
    async fn accept(&self) -> io::Result<(Self::Io, SocketAddr)> {
        let (s, _) = tokio::net::UnixListener::accept(self).await?;
        // Every Unix-socket peer counts as loopback, as in Datakit.
        Ok((s, SocketAddr::from(([127, 0, 0, 1], 0))))
    }
}

/// The open-connections cap: the configured one, kept `reserve` below the open-files limit
/// `nofile` so the queue, sinks and workers always have descriptors (at least 16).
pub fn connection_cap(configured: usize, nofile: u64, reserve: u64) -> usize {
    let by_fd = usize::try_from(nofile.saturating_sub(reserve)).unwrap_or(usize::MAX);
    configured.min(by_fd).max(16)
}

/// One open connection, as the eviction at the cap sees it.
#[derive(Default)]
struct Slot {
    /// Requests being handled or answered on it (not evictable while > 0).
    busy: AtomicUsize,
    /// Chosen for eviction (once).
    evicted: AtomicBool,
    /// Wakes the connection's task to close it.
    evict: tokio::sync::Notify,
}

/// Marks a slot busy while a request is handled and its answer written.
struct BusyGuard(Arc<Slot>);

impl BusyGuard {
    fn new(slot: &Arc<Slot>) -> Self {
        slot.busy.fetch_add(1, Ordering::AcqRel);
        BusyGuard(slot.clone())
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Open connections in accept order. At the cap, the oldest one waiting for a request's
/// headers (a slow or idle client) is closed to make room for the new one, so a flood of
/// slow clients cannot lock others out until the header timeout; connections in the middle
/// of a request are never evicted.
#[derive(Default)]
struct Slots {
    order: Mutex<VecDeque<Weak<Slot>>>,
}

/// How many queued connections one eviction looks at, at most.
const EVICT_SCAN: usize = 256;

impl Slots {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Weak<Slot>>> {
        self.order
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn add(&self, cap: usize) -> Arc<Slot> {
        let slot = Arc::new(Slot::default());
        let mut order = self.lock();
        if order.len() >= cap.saturating_mul(2).max(64) {
            order.retain(|w| w.strong_count() > 0);
        }
        order.push_back(Arc::downgrade(&slot));
        slot
    }

    /// Asks the oldest idle connection to close; false when every one is busy.
    fn evict_oldest_idle(&self) -> bool {
        let mut order = self.lock();
        for _ in 0..EVICT_SCAN.min(order.len()) {
            let Some(weak) = order.pop_front() else {
                break;
            };
            let Some(slot) = weak.upgrade() else {
                continue;
            };
            if slot.evicted.load(Ordering::Acquire) {
                continue;
            }
            if slot.busy.load(Ordering::Acquire) > 0 {
                order.push_back(weak);
                continue;
            }
            slot.evicted.store(true, Ordering::Release);
            slot.evict.notify_one();
            return true;
        }
        false
    }
}

/// How long a new connection waits for the room an eviction makes (the evicted connection
/// closes within microseconds unless it just started a request).
const EVICTION_WAIT: Duration = Duration::from_millis(100);

/// How long after its last accept the server waits before closing idle connections at a stop.
const ACCEPT_SETTLE: Duration = Duration::from_millis(200);

/// How often an accept error (e.g. out of descriptors) is logged at most.
const ACCEPT_ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown`, then lets open requests finish for
/// [`SHUTDOWN_GRACE`].
pub(crate) async fn run<L: Listen>(
    listener: L,
    app: Router,
    config: &ApiConfig,
    metrics: Arc<ApiMetrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let conns = metrics.connections(config.max_connections);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).keep_alive(true);
    if !config.header_timeout.is_zero() {
        builder.header_read_timeout(config.header_timeout);
    }
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Slots::default());
    let mut last_accept_log: Option<Instant> = None;
    let mut suppressed = 0u64;
    let mut last_accept = Instant::now();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => r,
        };
        let (io, peer) = match accepted {
            Ok(x) => {
                last_accept = Instant::now();
                x
            }
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning; log rarely.
                if last_accept_log.is_none_or(|t| t.elapsed() >= ACCEPT_ERROR_LOG_EVERY) {
                    tracing::warn!(error = %e, suppressed, "HTTP API cannot accept a connection; check the open-files limit (ulimit) and [http_api] max_connections");
                    last_accept_log = Some(Instant::now());
                    suppressed = 0;
                } else {
                    suppressed += 1;
                }
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(Duration::from_millis(50)) => continue,
                }
            }
        };
        let conn = Conn {
            app: app.clone(),
            builder: builder.clone(),
            watcher: graceful.watcher(),
            metrics: metrics.clone(),
            slots: slots.clone(),
            cap: config.max_connections,
        };
        match conns.clone().try_acquire_owned() {
            Ok(permit) => conn.serve(io, peer, permit),
            Err(_) => {
                // At the cap: make room by closing the connection idle the longest, and wait
                // (briefly; the accept loop waits with it, so a burst queues in the kernel's
                // backlog) for the permit it frees.
                if !slots.evict_oldest_idle() {
                    metrics.reject("connection_limit");
                    drop(io);
                    continue;
                }
                let permit = tokio::select! {
                    () = &mut shutdown => break,
                    p = tokio::time::timeout(EVICTION_WAIT, conns.clone().acquire_owned()) => p,
                };
                match permit {
                    Ok(Ok(permit)) => conn.serve(io, peer, permit),
                    _ => {
                        metrics.reject("connection_limit");
                        drop(io);
                    }
                }
            }
        }
    }
    drop(listener);
    // A connection accepted just before the stop may not have sent its request yet, and the
    // graceful shutdown closes connections without a request as idle: give it a moment.
    if let Some(wait) = ACCEPT_SETTLE.checked_sub(last_accept.elapsed()) {
        tokio::time::sleep(wait).await;
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {}
    }
    Ok(())
}

/// What serving one connection needs.
struct Conn {
    app: Router,
    builder: hyper::server::conn::http1::Builder,
    watcher: hyper_util::server::graceful::Watcher,
    metrics: Arc<ApiMetrics>,
    slots: Arc<Slots>,
    cap: usize,
}

impl Conn {
    fn serve<I>(self, io: I, peer: SocketAddr, permit: tokio::sync::OwnedSemaphorePermit)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Conn {
            app,
            builder,
            watcher,
            metrics,
            slots,
            cap,
        } = self;
        metrics.open_connections.inc();
        let slot = slots.add(cap);
        let svc_slot = slot.clone();
        let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            // Busy from the parsed headers until the answer is written.
            let guard = BusyGuard::new(&svc_slot);
            let app = app.clone();
            async move {
                let resp = app.oneshot(req.map(Body::new)).await?;
                Ok::<_, std::convert::Infallible>(resp.map(move |b| {
                    Body::new(b.map_frame(move |f| {
                        let _busy = &guard;
                        f
                    }))
                }))
            }
        });
        let conn = watcher.watch(builder.serve_connection(TokioIo::new(io), svc));
        tokio::spawn(async move {
            tokio::pin!(conn);
            loop {
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r
                            && e.is_timeout()
                        {
                            metrics.reject("header_timeout");
                        }
                        break;
                    }
                    () = slot.evict.notified() => {
                        // Between requests: close it. (It became busy meanwhile: let it
                        // finish; the waiting connection gives up after a while.)
                        if slot.busy.load(Ordering::Acquire) == 0 {
                            metrics.reject("evicted_idle");
                            break;
                        }
                    }
                }
            }
            metrics.open_connections.dec();
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_keeps_a_reserve_below_the_open_files_limit() {
        assert_eq!(connection_cap(10_000, 64_000, 256), 10_000);
        assert_eq!(connection_cap(10_000, 1024, 256), 768);
        assert_eq!(connection_cap(10_000, 100, 256), 16);
        assert_eq!(connection_cap(50, u64::MAX, 256), 50);
    }
}
