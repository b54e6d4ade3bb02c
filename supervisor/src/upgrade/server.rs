//! The upgrade service on 9542 (`[dk_upgrader]`): `GET /v1/datakit/version` and
//! `POST /v1/datakit/upgrade[?version=X.Y.Z][&force=1]`, with Datakit's answers, behind a
//! bearer token and an IP allowlist (loopback always allowed).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;

use super::UpgradeError;
use super::stage::{self, Running, Source};

/// Upgrade counters: `datakit_upgrade_total{result}` (`success`, `failed`, `refused`,
/// `up_to_date`, `rolled_back`, `forbidden`).
#[derive(Clone, Default)]
pub struct UpgradeMetrics {
    /// By result.
    pub total: Family<[(&'static str, &'static str); 1], Counter>,
}

impl UpgradeMetrics {
    /// Registers the counters.
    pub fn new(registry: &mut Registry) -> UpgradeMetrics {
        let m = UpgradeMetrics::default();
        registry.register(
            "datakit_upgrade",
            "Upgrades by result (success, failed, refused, up_to_date, rolled_back, forbidden)",
            m.total.clone(),
        );
        m
    }

    /// Counts one result.
    pub fn count(&self, result: &'static str) {
        self.total.get_or_create(&[("result", result)]).inc();
    }
}

/// Asks the supervisor to exec the new binary.
#[derive(Debug)]
pub struct ExecRequest {
    /// The version swapped in.
    pub version: String,
}

/// What the handlers share.
pub struct Upgrader {
    /// The section.
    pub cfg: dk_config::DkUpgrader,
    /// The running binary's path.
    pub exe: PathBuf,
    /// For the version answer.
    pub hostname: String,
    /// Since when we run.
    pub started: Instant,
    /// One upgrade at a time.
    pub busy: AtomicBool,
    /// Where a staged upgrade goes.
    pub exec: mpsc::Sender<ExecRequest>,
    /// Failures for `/v1/lasterror`.
    pub last_errors: Arc<dk_api::LastErrors>,
    /// Counters.
    pub metrics: UpgradeMetrics,
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = if message.is_empty() {
        serde_json::json!({ "error_code": code })
    } else {
        serde_json::json!({ "error_code": code, "message": message })
    };
    (status, axum::Json(body)).into_response()
}

/// Loopback always; otherwise only the listed addresses (IPv4-mapped IPv6 counts as IPv4).
pub fn peer_allowed(peer: IpAddr, whitelist: &[String]) -> bool {
    let peer = match peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    };
    peer.is_loopback()
        || whitelist
            .iter()
            .filter_map(|w| w.trim().parse::<IpAddr>().ok())
            .any(|w| w == peer)
}

/// Whether `headers` carry `Authorization: Bearer <token>` (compared in constant time).
pub fn token_ok(headers: &HeaderMap, token: &str) -> bool {
    let Some(given) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    !token.is_empty()
        && a.len() == b.len()
        && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

fn gate(up: &Upgrader, headers: &HeaderMap) -> Option<Response> {
    if !token_ok(headers, &up.cfg.token) {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "datakit.invalidToken",
            "send Authorization: Bearer <[dk_upgrader] token>",
        ));
    }
    None
}

async fn version(State(up): State<Arc<Upgrader>>, headers: HeaderMap) -> Response {
    if let Some(r) = gate(&up, &headers) {
        return r;
    }
    let uptime = dk_proto::duration::format(std::time::Duration::from_secs(
        up.started.elapsed().as_secs(),
    ));
    axum::Json(serde_json::json!({ "content": { "content": {
        "version": dk_proto::version(),
        "uptime": uptime,
        "host": up.hostname,
        "commit": dk_proto::build_id(),
    }}}))
    .into_response()
}

#[derive(serde::Deserialize)]
struct UpgradeQuery {
    version: Option<String>,
    force: Option<String>,
}

/// Clears the busy flag unless the upgrade went through (then we are about to exec).
struct Busy<'a>(&'a AtomicBool, bool);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if !self.1 {
            self.0.store(false, Ordering::SeqCst);
        }
    }
}

async fn upgrade(
    State(up): State<Arc<Upgrader>>,
    headers: HeaderMap,
    Query(q): Query<UpgradeQuery>,
) -> Response {
    if let Some(r) = gate(&up, &headers) {
        return r;
    }
    if up.busy.swap(true, Ordering::SeqCst) {
        return error(
            StatusCode::NOT_ACCEPTABLE,
            "datakit.upgradeIsOnGoing",
            "an upgrade is already running; retry when it is done",
        );
    }
    let mut busy = Busy(&up.busy, false);
    let force = q
        .force
        .as_deref()
        .is_some_and(|f| matches!(f, "1" | "true" | "yes"));
    let requested = q.version.as_deref().filter(|v| !v.trim().is_empty());
    let started = Instant::now();
    match run_upgrade(&up, requested, force).await {
        Ok(version) => {
            tracing::info!(
                version,
                ms = started.elapsed().as_millis() as u64,
                "Upgrade staged and swapped in; handing over to the new binary."
            );
            up.metrics.count("success");
            if up.exec.send(ExecRequest { version }).await.is_err() {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "datakit.upgradeFailed",
                    "the agent is stopping",
                );
            }
            busy.1 = true;
            axum::Json(serde_json::json!({ "msg": "success" })).into_response()
        }
        Err(UpgradeError::UpToDate(v)) => {
            up.metrics.count("up_to_date");
            tracing::info!(
                version = v,
                "Upgrade asked for the running version: up to date."
            );
            error(StatusCode::NOT_MODIFIED, "datakit.upToDate", "")
        }
        Err(e) => {
            let refused = !matches!(e, UpgradeError::Stage { .. });
            up.metrics.count(if refused { "refused" } else { "failed" });
            let message = format!("upgrade refused: {e}");
            tracing::error!("{message}");
            up.last_errors
                .record("upgrade", "dk_upgrader", "", &message);
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "datakit.upgradeFailed",
                &e.to_string(),
            )
        }
    }
}

async fn run_upgrade(
    up: &Upgrader,
    requested: Option<&str>,
    force: bool,
) -> Result<String, UpgradeError> {
    let source = Source::new(&up.cfg.install_base_url, &up.cfg.proxy)?;
    let commit = dk_proto::build_id();
    let running = Running {
        version: dk_proto::version(),
        commit: &commit,
    };
    let release = stage::fetch(&source, &up.cfg.public_keys, &running, requested, force).await?;
    let exe = up.exe.clone();
    let version = release.version.clone();
    tokio::task::spawn_blocking(move || {
        stage::stage_and_swap(&exe, &release.binary, &release.version)
    })
    .await
    .map_err(|e| UpgradeError::Stage {
        path: up.exe.clone(),
        reason: e.to_string(),
    })??;
    Ok(version)
}

/// Connections served at once on 9542 (more are closed at accept).
const MAX_CONNECTIONS: usize = 32;
/// Time a client has to send its request headers.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a stop waits for open requests (an upgrade's answer) to finish.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);
/// Datakit's answer to a peer outside the allowlist.
const FORBIDDEN: &[u8] = b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 19\r\nConnection: close\r\n\r\nrequest now allowed";

/// Serves the upgrade routes on `listener` until `shutdown`. A peer outside the allowlist gets
/// 403 at once, before anything it sends is read; at most [`MAX_CONNECTIONS`] are served at
/// once, each with [`HEADER_TIMEOUT`] for its headers.
///
/// # Errors
/// None today (accept errors are retried); kept for the caller's logging.
pub async fn serve(
    listener: tokio::net::TcpListener,
    up: Arc<Upgrader>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt as _;
    let app = axum::Router::new()
        .route("/v1/datakit/version", get(version))
        .route("/v1/datakit/upgrade", post(upgrade))
        .with_state(up.clone());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(false);
    tokio::pin!(shutdown);
    loop {
        let (mut stream, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if !peer_allowed(peer.ip(), &up.cfg.ip_whitelist) {
            up.metrics.count("forbidden");
            tokio::spawn(async move {
                let _ = tokio::time::timeout(HEADER_TIMEOUT, stream.write_all(FORBIDDEN)).await;
            });
            continue;
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let conn = builder.serve_connection(
            hyper_util::rt::TokioIo::new(stream),
            hyper_util::service::TowerToHyperService::new(app.clone()),
        );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
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
    fn only_loopback_and_listed_addresses_pass_the_allowlist() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(peer_allowed(ip("127.0.0.1"), &[]));
        assert!(peer_allowed(ip("::1"), &[]));
        assert!(!peer_allowed(ip("10.0.0.5"), &[]));
        let list = vec!["10.0.0.5".to_string()];
        assert!(peer_allowed(ip("10.0.0.5"), &list));
        assert!(peer_allowed(ip("::ffff:10.0.0.5"), &list));
        assert!(!peer_allowed(ip("10.0.0.6"), &list));
    }

    #[test]
    fn the_token_must_match_exactly_as_a_bearer() {
        let mut h = HeaderMap::new();
        assert!(!token_ok(&h, "s3cret"));
        h.insert("authorization", "Bearer s3cret".parse().unwrap());
        assert!(token_ok(&h, "s3cret"));
        assert!(!token_ok(&h, "s3cre"));
        assert!(!token_ok(&h, ""));
        h.insert("authorization", "s3cret".parse().unwrap());
        assert!(!token_ok(&h, "s3cret"));
    }
}
