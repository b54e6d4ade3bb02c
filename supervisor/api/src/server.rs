//! The accept loop of the API over hyper directly (TCP and Unix): header read timeout,
//! a cap on open connections, graceful shutdown (ADR 0005).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
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
    let mut last_accept_log: Option<Instant> = None;
    let mut suppressed = 0u64;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => r,
        };
        let (io, peer) = match accepted {
            Ok(x) => x,
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
        let Ok(permit) = conns.clone().try_acquire_owned() else {
            metrics.reject("connection_limit");
            drop(io);
            continue;
        };
        metrics.open_connections.inc();
        let app = app.clone();
        let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(req.map(Body::new))
        });
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(io), svc));
        let metrics = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await
                && e.is_timeout()
            {
                metrics.reject("header_timeout");
            }
            metrics.open_connections.dec();
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {}
    }
    Ok(())
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
