//! The agent side of DCA: dial the console, serve its actions, push status, reconnect.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use futures::{SinkExt as _, StreamExt as _};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_util::sync::CancellationToken;

use super::paths::{Confd, PathError, Purpose};
use super::wire::{self, DataKitInfo, Frame, Reply, RequestData, action};
use crate::backoff::Backoff;

/// The console is pinged this often; a connection silent for 4 periods is dropped.
const PING_EVERY: Duration = Duration::from_secs(10);
/// Status pushes (`update_datakit_status`, `update_datakit`) this often.
const STATUS_EVERY: Duration = Duration::from_secs(30);
/// The log tail sends new bytes this often (Datakit: 5 s).
const TAIL_EVERY: Duration = Duration::from_secs(1);
/// Bytes of log a tail starts with (Datakit's figure).
const TAIL_START: u64 = 2000;
/// Largest chunk of new log bytes sent in one tail frame.
const TAIL_CHUNK: usize = 64 << 10;
/// Binary frames of a log download (Datakit's figure).
const DOWNLOAD_CHUNK: usize = 1024;
/// Largest config file served or accepted.
const MAX_CONFIG_BYTES: usize = 1 << 20;
/// Frames from the console larger than this are refused.
const MAX_FRAME: usize = 4 << 20;
/// Console requests served at once per connection; more are answered "busy".
const MAX_IN_FLIGHT: usize = 8;

/// Checks a candidate `conf.d` directory with the same validation as `datakit check`,
/// returning its errors.
pub type Validator = Arc<dyn Fn(&Path) -> Vec<dk_config::Diagnostic> + Send + Sync>;

/// What the DCA client needs from the running agent.
pub struct Deps {
    pub cfg: dk_config::Dca,
    pub workdir: PathBuf,
    /// The log file (`None` when the log goes to stdout/stderr).
    pub log_file: Option<PathBuf>,
    pub hostname: String,
    pub host_tags: BTreeMap<String, String>,
    pub started: Instant,
    pub reload: mpsc::Sender<()>,
    pub registry: Arc<Registry>,
    pub last_errors: Arc<dk_api::LastErrors>,
    pub validate: Validator,
    pub metrics: DcaMetrics,
}

/// `datakit_dca_*` self-metrics.
#[derive(Clone, Default)]
pub struct DcaMetrics {
    connected: Gauge,
    actions: Family<ActionLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ActionLabels {
    action: String,
    result: String,
}

impl DcaMetrics {
    /// Registers `datakit_dca_connected` and `datakit_dca_actions_total`.
    pub fn new(registry: &mut Registry) -> DcaMetrics {
        let m = DcaMetrics::default();
        registry.register(
            "datakit_dca_connected",
            "1 while the agent is connected to its DCA console",
            m.connected.clone(),
        );
        registry.register(
            "datakit_dca_actions",
            "DCA console requests served, by action and result (ok|error)",
            m.actions.clone(),
        );
        m
    }

    fn count(&self, action: &str, ok: bool) {
        // Unknown action names are folded so a console cannot grow the label set.
        let known = [
            action::STATS,
            action::RELOAD,
            action::GET_CONFIG,
            action::SAVE_CONFIG,
            action::DELETE_CONFIG,
            action::NEW_CONNECTION,
            action::LOG_TAIL,
            action::LOG_DOWNLOAD,
        ];
        let action = if known.contains(&action) || action::UNSUPPORTED.contains(&action) {
            action
        } else {
            "other"
        };
        self.actions
            .get_or_create(&ActionLabels {
                action: action.to_string(),
                result: if ok { "ok" } else { "error" }.to_string(),
            })
            .inc();
    }
}

/// Why a connection to the console ended.
#[derive(Debug, thiserror::Error)]
pub enum DcaError {
    #[error("[dca] websocket_server {0:?} is not a ws:// or wss:// URL")]
    Url(String),
    #[error("cannot connect to the DCA console {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error(
        "the DCA console {url} refused this agent (HTTP {status}: {body}); list [dca] token in the console's --tokens file"
    )]
    Refused {
        url: String,
        status: u16,
        body: String,
    },
    #[error("TLS set-up for the DCA console failed: {0}")]
    Tls(String),
    #[error("the DCA connection to {url} broke: {reason}")]
    Broken { url: String, reason: String },
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type Ws = WebSocketStream<Box<dyn Io>>;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Deps {
    fn confd(&self) -> PathBuf {
        dk_config::confd_dir(&self.workdir)
    }

    /// The DataKit record of this agent.
    fn info(&self, status: &str) -> DataKitInfo {
        let tags_string = self
            .host_tags
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let started_ms = now_ms() - i64::try_from(self.started.elapsed().as_millis()).unwrap_or(0);
        let mut info = DataKitInfo {
            id: self.hostname.clone(),
            runtime_id: format!("{}-{}", std::process::id(), started_ms),
            arch: std::env::consts::ARCH.into(),
            host_name: self.hostname.clone(),
            os: std::env::consts::OS.into(),
            version: dk_proto::version().to_string(),
            ip: self.host_tags.get("ip").cloned().unwrap_or_default(),
            start_time: started_ms,
            updated_at: now_ms(),
            run_mode: "host".into(),
            usage_cores: std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64),
            status: status.into(),
            url: self.cfg.websocket_server.clone(),
            global_host_tags_string: tags_string,
            global_host_tags: self.host_tags.clone(),
            data_dir: self.workdir.join("data").display().to_string(),
            confd_dir: self.confd().display().to_string(),
            pipeline_dir: self.workdir.join("pipeline").display().to_string(),
            install_dir: self.workdir.display().to_string(),
            log: self
                .log_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "stdout".into()),
            ..DataKitInfo::default()
        };
        info.conn_id = wire::conn_id(&info);
        info
    }
}

/// Runs the client until `stop`: connect, serve, and reconnect with backoff.
pub async fn run(deps: Arc<Deps>, stop: CancellationToken) {
    let mut backoff = match Backoff::try_new(Duration::from_secs(1), Duration::from_secs(60), 0.2) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "DCA client not started.");
            return;
        }
    };
    let mut last_error = String::new();
    loop {
        let connected_at = Instant::now();
        let result = tokio::select! {
            r = session(&deps, &stop) => r,
            () = stop.cancelled() => Ok(()),
        };
        deps.metrics.connected.set(0);
        if stop.is_cancelled() {
            return;
        }
        if connected_at.elapsed() > Duration::from_secs(60) {
            backoff.reset();
        }
        match result {
            Ok(()) => tracing::info!("The DCA console closed the connection; reconnecting."),
            Err(e) => {
                let text = e.to_string();
                // One log line per distinct failure, not per retry.
                if text != last_error {
                    tracing::warn!("{text}; retrying with backoff.");
                    deps.last_errors.record("dca", "dca", "", &text);
                    last_error = text;
                }
            }
        }
        let delay = backoff.next_delay();
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Dials the console with the handshake headers (plus `extra`).
async fn dial(deps: &Deps, extra: Option<(&str, &str)>) -> Result<Ws, DcaError> {
    let url = deps.cfg.websocket_server.trim().to_string();
    let uri: tokio_tungstenite::tungstenite::http::Uri =
        url.parse().map_err(|_| DcaError::Url(url.clone()))?;
    let tls = match uri.scheme_str() {
        Some("ws") => false,
        Some("wss") => true,
        _ => return Err(DcaError::Url(url)),
    };
    let host = uri
        .host()
        .ok_or_else(|| DcaError::Url(url.clone()))?
        .trim_matches(|c| c == '[' || c == ']')
        .to_string();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let connect_err = |reason: String| DcaError::Connect {
        url: url.clone(),
        reason,
    };
    let tcp = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| connect_err("timed out after 10 s".into()))?
    .map_err(|e| connect_err(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = if tls {
        let connector = tls_connector(&deps.cfg.ca_file)?;
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| DcaError::Tls(format!("{host:?}: {e}")))?;
        let s = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
            .await
            .map_err(|_| connect_err("TLS handshake timed out after 10 s".into()))?
            .map_err(|e| connect_err(format!("TLS: {e}")))?;
        Box::new(s)
    } else {
        Box::new(tcp)
    };
    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|e| connect_err(e.to_string()))?;
    let info = serde_json::to_string(&deps.info("running")).unwrap_or_default();
    let headers = req.headers_mut();
    let value = |v: &str| HeaderValue::from_bytes(v.as_bytes());
    if let Ok(v) = value(&info) {
        headers.insert(wire::HEADER_DATAKIT, v);
    }
    if let Ok(v) = value(deps.cfg.token.trim()) {
        headers.insert(wire::HEADER_TOKEN, v);
    }
    if let Some((k, v)) = extra
        && let (Ok(name), Ok(v)) = (
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()),
            value(v),
        )
    {
        headers.insert(name, v);
    }
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME))
        .max_frame_size(Some(MAX_FRAME));
    let handshake = tokio_tungstenite::client_async_with_config(req, io, Some(config));
    match tokio::time::timeout(Duration::from_secs(10), handshake).await {
        Err(_) => Err(connect_err(
            "WebSocket handshake timed out after 10 s".into(),
        )),
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(resp))) => Err(DcaError::Refused {
            url,
            status: resp.status().as_u16(),
            body: resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).chars().take(200).collect())
                .unwrap_or_default(),
        }),
        Ok(Err(e)) => Err(connect_err(e.to_string())),
    }
}

/// rustls with ring, the platform's roots plus `ca_file`; certificates are always verified.
fn tls_connector(ca_file: &str) -> Result<tokio_rustls::TlsConnector, DcaError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let extra: Vec<CertificateDer<'static>> = if ca_file.trim().is_empty() {
        Vec::new()
    } else {
        CertificateDer::pem_file_iter(ca_file.trim())
            .and_then(Iterator::collect)
            .map_err(|e| DcaError::Tls(format!("[dca] ca_file {ca_file:?}: {e}")))?
    };
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
            .map_err(|e| DcaError::Tls(e.to_string()))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DcaError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

fn push(action: &str, data: serde_json::Value) -> Message {
    let f = Frame {
        id: 0,
        action: action.into(),
        data,
    };
    Message::text(serde_json::to_string(&f).unwrap_or_default())
}

fn status_push(deps: &Deps, status: &str) -> Message {
    let info = deps.info(status);
    push(
        action::UPDATE_STATUS,
        serde_json::json!({
            "body": "",
            "query": {"status": [status], "runtimeID": [info.runtime_id]},
        }),
    )
}

fn info_push(deps: &Deps) -> Message {
    let body = serde_json::to_string(&deps.info("running")).unwrap_or_default();
    push(
        action::UPDATE_DATAKIT,
        serde_json::json!({"body": body, "query": {}}),
    )
}

/// One connection: handshake, pushes, requests until it closes.
async fn session(deps: &Arc<Deps>, stop: &CancellationToken) -> Result<(), DcaError> {
    let url = deps.cfg.websocket_server.clone();
    let ws = dial(deps, None).await?;
    tracing::info!(console = %url, "Connected to the DCA console.");
    deps.metrics.connected.set(1);
    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(64);
    let broken = |reason: String| DcaError::Broken {
        url: url.clone(),
        reason,
    };
    let _ = out_tx.send(info_push(deps)).await;
    let _ = out_tx.send(status_push(deps, "running")).await;
    let mut ping = tokio::time::interval(PING_EVERY);
    let mut status = tokio::time::interval(STATUS_EVERY);
    status.tick().await;
    let mut last_heard = Instant::now();
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    loop {
        tokio::select! {
            Some(m) = out_rx.recv() => {
                sink.send(m).await.map_err(|e| broken(e.to_string()))?;
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > PING_EVERY * 4 {
                    return Err(broken("no answer to pings for 40 s".into()));
                }
                sink.send(Message::Ping(Vec::new().into())).await.map_err(|e| broken(e.to_string()))?;
            }
            _ = status.tick() => {
                sink.send(status_push(deps, "running")).await.map_err(|e| broken(e.to_string()))?;
                sink.send(info_push(deps)).await.map_err(|e| broken(e.to_string()))?;
            }
            () = stop.cancelled() => {
                let _ = sink.send(status_push(deps, "stopped")).await;
                let _ = sink.send(Message::Close(None)).await;
                return Ok(());
            }
            msg = stream.next() => {
                last_heard = Instant::now();
                match msg {
                    None | Some(Ok(Message::Close(_))) => return Ok(()),
                    Some(Err(e)) => return Err(broken(e.to_string())),
                    Some(Ok(Message::Text(text))) => {
                        let Ok(frame) = serde_json::from_str::<Frame>(text.as_str()) else {
                            deps.metrics.count("other", false);
                            continue;
                        };
                        if frame.id <= 0 {
                            continue;
                        }
                        let deps = deps.clone();
                        let out = out_tx.clone();
                        let stop = stop.clone();
                        let permit = in_flight.clone().try_acquire_owned();
                        tokio::spawn(async move {
                            let reply = match permit {
                                Ok(_permit) => handle(&deps, &frame, &stop).await,
                                Err(_) => Reply::err(429, "server.busy", format!("{MAX_IN_FLIGHT} requests are being served; retry")),
                            };
                            deps.metrics.count(&frame.action, reply.success);
                            let f = Frame {
                                id: frame.id,
                                action: frame.action,
                                data: serde_json::to_value(reply).unwrap_or_default(),
                            };
                            let _ = out.send(Message::text(serde_json::to_string(&f).unwrap_or_default())).await;
                        });
                    }
                    Some(Ok(_)) => {}
                }
            }
        }
    }
}

/// The body of a save request (Datakit's names).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SaveBody {
    path: String,
    config: String,
    #[serde(rename = "isNew")]
    is_new: bool,
}

/// The body of a delete request.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DeleteBody {
    path: String,
}

fn path_error(e: &PathError) -> Reply {
    let code = match e {
        PathError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            "file.not.exists"
        }
        PathError::MainConfig(_) => "file.delete.forbidden",
        _ => "file.path.invalid",
    };
    Reply::err(400, code, e.to_string())
}

/// Runs blocking work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

/// Serves one console request.
async fn handle(deps: &Arc<Deps>, frame: &Frame, stop: &CancellationToken) -> Reply {
    let data: RequestData = serde_json::from_value(frame.data.clone()).unwrap_or_default();
    let a = frame.action.as_str();
    match a {
        action::STATS => {
            let d = deps.clone();
            blocking(move || Reply::ok(stats(&d)))
                .await
                .unwrap_or_else(server_error)
        }
        action::RELOAD => {
            let _ = deps.reload.try_send(());
            tracing::info!("Reload requested by the DCA console.");
            Reply::ok(serde_json::Value::Null)
        }
        action::GET_CONFIG => {
            let raw = data.query("path").unwrap_or_default().to_string();
            let d = deps.clone();
            blocking(move || get_config(&d, &raw))
                .await
                .unwrap_or_else(server_error)
        }
        action::SAVE_CONFIG => {
            let body: SaveBody = match serde_json::from_str(&data.body) {
                Ok(b) => b,
                Err(e) => return Reply::err(400, "params.invalid", format!("body: {e}")),
            };
            let d = deps.clone();
            let reply = blocking(move || save_config(&d, &body))
                .await
                .unwrap_or_else(server_error);
            if reply.success {
                let _ = deps.reload.try_send(());
            }
            reply
        }
        action::DELETE_CONFIG => {
            let mut body: DeleteBody = serde_json::from_str(&data.body).unwrap_or_default();
            if body.path.is_empty() {
                body.path = data.query("path").unwrap_or_default().to_string();
            }
            let d = deps.clone();
            let reply = blocking(move || delete_config(&d, &body.path))
                .await
                .unwrap_or_else(server_error);
            if reply.success {
                let _ = deps.reload.try_send(());
            }
            reply
        }
        action::NEW_CONNECTION => {
            let Some(id) = data.query(wire::HEADER_NEW_CONNECTION).map(str::to_string) else {
                return Reply::err(
                    400,
                    "params.required",
                    format!("query {} is required", wire::HEADER_NEW_CONNECTION),
                );
            };
            let deps = deps.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                if let Err(e) = second_connection(&deps, &id, &stop).await {
                    tracing::warn!("DCA log connection: {e}");
                }
            });
            Reply::ok(serde_json::Value::Null)
        }
        a if action::UNSUPPORTED.contains(&a) => Reply::err(
            501,
            "not.supported",
            format!("{a} is not supported by this agent (no pipelines or remote upgrade over DCA)"),
        ),
        _ => Reply::err(400, "invalid.action", format!("unknown action {a:?}")),
    }
}

fn server_error() -> Reply {
    Reply::err(500, "server.error", "server error")
}

/// Reads one config file.
fn get_config(deps: &Deps, raw: &str) -> Reply {
    let confd = match Confd::new(&deps.confd()) {
        Ok(c) => c,
        Err(e) => return path_error(&e),
    };
    let path = match confd.resolve(raw, Purpose::Read) {
        Ok(p) => p,
        Err(e) => return path_error(&e),
    };
    match std::fs::read(&path) {
        Ok(b) if b.len() > MAX_CONFIG_BYTES => {
            Reply::err(400, "file.too.large", format!("{raw:?} is over 1 MiB"))
        }
        Ok(b) => Reply::ok(serde_json::Value::String(
            String::from_utf8_lossy(&b).into_owned(),
        )),
        Err(e) => path_error(&PathError::Io {
            path: raw.to_string(),
            source: e,
        }),
    }
}

/// One problem of a refused save, for the console to show inline.
fn problem(confd: &Path, d: &dk_config::Diagnostic) -> serde_json::Value {
    serde_json::json!({
        "file": d.file.strip_prefix(confd).unwrap_or(&d.file).display().to_string(),
        "key": d.key,
        "line": d.line,
        "message": d.message,
    })
}

/// Checks, then writes atomically (tmp + fsync + rename + fsync dir).
fn save_config(deps: &Deps, body: &SaveBody) -> Reply {
    let confd = match Confd::new(&deps.confd()) {
        Ok(c) => c,
        Err(e) => return path_error(&e),
    };
    let path = match confd.resolve(&body.path, Purpose::Write) {
        Ok(p) => p,
        Err(e) => return path_error(&e),
    };
    if body.config.len() > MAX_CONFIG_BYTES {
        return Reply::err(400, "file.too.large", "the config is over 1 MiB");
    }
    if body.is_new && path.exists() {
        return Reply::err(
            400,
            "file.path.exists",
            format!("{:?} exists; open it to edit it", confd.display(&path)),
        );
    }
    let rel = PathBuf::from(confd.display(&path));
    let problems = match check_candidate(deps, &confd, &rel, &body.config) {
        Ok(p) => p,
        Err(e) => return Reply::err(500, "server.error", format!("cannot check the config: {e}")),
    };
    if !problems.is_empty() {
        let mut r = Reply::err(
            400,
            "toml.format.error",
            problems
                .iter()
                .filter_map(|p| p["message"].as_str())
                .collect::<Vec<_>>()
                .join("; "),
        );
        r.content = serde_json::Value::Array(problems);
        return r;
    }
    if let Err(e) = write_atomically(&path, body.config.as_bytes()) {
        return Reply::err(500, "file.write.error", format!("{}: {e}", rel.display()));
    }
    tracing::info!(file = %rel.display(), "Config saved from the DCA console.");
    Reply::ok(serde_json::json!({"path": rel.display().to_string()}))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("no parent directory"))?;
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A hidden name without .conf: the conf.d loader never reads it.
    let tmp = dir.join(format!(".{name}.dca-{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Errors the candidate brings in: conf.d is copied to a scratch dir with the candidate in
/// place and checked like `datakit check`; errors already present before are not counted.
fn check_candidate(
    deps: &Deps,
    confd: &Confd,
    rel: &Path,
    text: &str,
) -> std::io::Result<Vec<serde_json::Value>> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let scratch = deps
        .workdir
        .join("run")
        .join(format!("dca-check-{}-{n}", std::process::id()));
    let result = (|| {
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch)?;
        for f in confd.list() {
            let to = scratch.join(&f);
            if let Some(p) = to.parent() {
                std::fs::create_dir_all(p)?;
            }
            std::fs::copy(confd.dir.join(&f), &to)?;
        }
        let to = scratch.join(rel);
        if let Some(p) = to.parent() {
            std::fs::create_dir_all(p)?;
        }
        std::fs::write(&to, text)?;
        let key = |root: &Path, d: &dk_config::Diagnostic| {
            (
                d.file.strip_prefix(root).unwrap_or(&d.file).to_path_buf(),
                d.key.clone(),
                d.message.replace(&root.display().to_string(), ""),
            )
        };
        let before: std::collections::BTreeSet<_> = (deps.validate)(&confd.dir)
            .iter()
            .map(|d| key(&confd.dir, d))
            .collect();
        let after = (deps.validate)(&scratch);
        Ok(after
            .iter()
            .filter(|d| !before.contains(&key(&scratch, d)))
            .map(|d| problem(&scratch, d))
            .collect())
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn delete_config(deps: &Deps, raw: &str) -> Reply {
    let confd = match Confd::new(&deps.confd()) {
        Ok(c) => c,
        Err(e) => return path_error(&e),
    };
    let path = match confd.resolve(raw, Purpose::Delete) {
        Ok(p) => p,
        Err(e) => return path_error(&e),
    };
    match std::fs::remove_file(&path) {
        Ok(()) => {
            tracing::info!(file = %confd.display(&path), "Config deleted from the DCA console.");
            Reply::ok(serde_json::Value::Null)
        }
        Err(e) => Reply::err(500, "file.delete.error", format!("{raw:?}: {e}")),
    }
}

/// Resident memory of this process, from `/proc/self/status`.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Metric families shown in the stats (summed over their labels).
const STATS_METRICS: &[&str] = &[
    "datakit_uptime_seconds",
    "datakit_cpu_usage",
    "datakit_heap_alloc_bytes",
    "datakit_open_files",
    "datakit_worker_up",
    "datakit_worker_restarts_total",
    "datakit_worker_rss_bytes",
    "datakit_config_reload_total",
    "datakit_io_feed_point_total",
    "datakit_io_sink_point_total",
    "datakit_io_dropped_point_total",
    "datakit_io_queue_points",
    "datakit_io_queue_bytes",
    "datakit_error_total",
];

/// Sums of the samples of `text` (Prometheus text format) per metric name in `wanted`, plus
/// the per-family value of `datakit_worker_up`.
fn summarise_metrics(text: &str) -> (BTreeMap<String, f64>, BTreeMap<String, f64>) {
    let mut sums = BTreeMap::new();
    let mut workers = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.parse::<f64>() else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        if STATS_METRICS.contains(&name) {
            *sums.entry(name.to_string()).or_insert(0.0) += v;
        }
        if name == "datakit_worker_up"
            && let Some(fam) = series
                .split("family=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
        {
            workers.insert(fam.to_string(), v);
        }
    }
    (sums, workers)
}

/// The stats content: who the agent is, its usage, workers, counters, files and errors.
fn stats(deps: &Deps) -> serde_json::Value {
    let mut text = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut text, &deps.registry);
    let (metrics, workers) = summarise_metrics(&text);
    let files = Confd::new(&deps.confd())
        .map(|c| c.list())
        .unwrap_or_default();
    let errors: Vec<_> = deps
        .last_errors
        .recent()
        .into_iter()
        .rev()
        .take(10)
        .map(|e| {
            serde_json::json!({"input": e.input, "source": e.source, "message": e.message, "timestamp": e.timestamp})
        })
        .collect();
    serde_json::json!({
        "hostname": deps.hostname,
        "version": dk_proto::version(),
        "pid": std::process::id(),
        "uptime_seconds": deps.started.elapsed().as_secs(),
        "rss_bytes": rss_bytes(),
        "workers": workers,
        "metrics": metrics,
        "config_files": files,
        "last_errors": errors,
    })
}

/// A second connection for a log tail or download: read one request, stream the log.
async fn second_connection(
    deps: &Arc<Deps>,
    id: &str,
    stop: &CancellationToken,
) -> Result<(), DcaError> {
    let url = deps.cfg.websocket_server.clone();
    let broken = |reason: String| DcaError::Broken {
        url: url.clone(),
        reason,
    };
    let mut ws = dial(deps, Some((wire::HEADER_NEW_CONNECTION, id))).await?;
    let first = tokio::time::timeout(Duration::from_secs(15), ws.next())
        .await
        .map_err(|_| broken("no request on the log connection within 15 s".into()))?;
    let frame = match first {
        Some(Ok(Message::Text(t))) => serde_json::from_str::<Frame>(t.as_str())
            .map_err(|e| broken(format!("bad request frame: {e}")))?,
        _ => {
            return Err(broken(
                "the log connection closed before its request".into(),
            ));
        }
    };
    let data: RequestData = serde_json::from_value(frame.data.clone()).unwrap_or_default();
    let reply = |r: Reply| {
        let f = Frame {
            id: frame.id,
            action: frame.action.clone(),
            data: serde_json::to_value(r).unwrap_or_default(),
        };
        Message::text(serde_json::to_string(&f).unwrap_or_default())
    };
    let log = match (data.query("type").unwrap_or("log"), &deps.log_file) {
        ("log", Some(p)) => p.clone(),
        ("log", None) => {
            let r = Reply::err(
                400,
                "log.not.file",
                "the log goes to stdout; set [logging] log to a file to tail it",
            );
            deps.metrics.count(&frame.action, false);
            let _ = ws.send(reply(r)).await;
            return Ok(());
        }
        (other, _) => {
            let r = Reply::err(
                400,
                "params.invalid",
                format!("log type {other:?}: this agent has only \"log\" (no gin.log)"),
            );
            deps.metrics.count(&frame.action, false);
            let _ = ws.send(reply(r)).await;
            return Ok(());
        }
    };
    match frame.action.as_str() {
        action::LOG_DOWNLOAD => {
            deps.metrics.count(&frame.action, true);
            let bytes = blocking(move || std::fs::read(&log))
                .await
                .and_then(Result::ok)
                .unwrap_or_default();
            for chunk in bytes.chunks(DOWNLOAD_CHUNK) {
                ws.send(Message::binary(chunk.to_vec()))
                    .await
                    .map_err(|e| broken(e.to_string()))?;
            }
            let _ = ws.send(reply(Reply::ok(serde_json::Value::Null))).await;
            let _ = ws.close(None).await;
            Ok(())
        }
        action::LOG_TAIL => {
            deps.metrics.count(&frame.action, true);
            let mut offset: Option<u64> = None;
            let mut tick = tokio::time::interval(TAIL_EVERY);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let path = log.clone();
                        let from = offset;
                        let Some(Ok((bytes, next))) = blocking(move || read_from(&path, from)).await else {
                            continue;
                        };
                        offset = Some(next);
                        if bytes.is_empty() {
                            continue;
                        }
                        let content = base64::engine::general_purpose::STANDARD.encode(&bytes);
                        ws.send(reply(Reply::ok(serde_json::Value::String(content))))
                            .await
                            .map_err(|e| broken(e.to_string()))?;
                    }
                    m = ws.next() => match m {
                        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Ok(()),
                        Some(Ok(_)) => {}
                    },
                    () = stop.cancelled() => {
                        let _ = ws.close(None).await;
                        return Ok(());
                    }
                }
            }
        }
        other => {
            let _ = ws
                .send(reply(Reply::err(
                    400,
                    "invalid.action",
                    format!("{other:?} is not a log action"),
                )))
                .await;
            Ok(())
        }
    }
}

/// New bytes of `path` from `from` (the last [`TAIL_START`] bytes when `None`; from the start
/// after a rotation), at most [`TAIL_CHUNK`]; returns them and the next offset.
fn read_from(path: &Path, from: Option<u64>) -> std::io::Result<(Vec<u8>, u64)> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let start = match from {
        None => len.saturating_sub(TAIL_START),
        Some(o) if o > len => 0,
        Some(o) => o,
    };
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    f.take(TAIL_CHUNK as u64).read_to_end(&mut buf)?;
    let next = start + buf.len() as u64;
    Ok((buf, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_summed_per_name_and_workers_listed_by_family() {
        let text = "# HELP x\ndatakit_worker_up{family=\"host\"} 1\ndatakit_worker_up{family=\"socket\"} 0\ndatakit_io_feed_point_total{category=\"metric\"} 5\ndatakit_io_feed_point_total{category=\"logging\"} 7\nother 3\n";
        let (sums, workers) = summarise_metrics(text);
        assert_eq!(sums["datakit_io_feed_point_total"], 12.0);
        assert_eq!(sums["datakit_worker_up"], 1.0);
        assert!(!sums.contains_key("other"));
        assert_eq!(workers["host"], 1.0);
        assert_eq!(workers["socket"], 0.0);
    }

    #[test]
    fn the_tail_starts_with_the_last_bytes_then_follows_and_restarts_after_rotation() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("log");
        std::fs::write(&p, vec![b'a'; 3000]).unwrap();
        let (first, next) = read_from(&p, None).unwrap();
        assert_eq!(first.len(), 2000);
        assert_eq!(next, 3000);
        std::fs::write(&p, [vec![b'a'; 3000], b"new line\n".to_vec()].concat()).unwrap();
        let (more, next) = read_from(&p, Some(next)).unwrap();
        assert_eq!(more, b"new line\n");
        std::fs::write(&p, b"rotated\n").unwrap();
        let (after, _) = read_from(&p, Some(next)).unwrap();
        assert_eq!(after, b"rotated\n");
    }

    #[test]
    fn an_atomic_write_leaves_only_the_new_file() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("sub/x.conf");
        write_atomically(&p, b"one").unwrap();
        write_atomically(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(t.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["x.conf"]);
    }
}
