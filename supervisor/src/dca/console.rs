//! `datakit dca --listen ADDR --tokens FILE`: a small DCA console. Agents dial its `/ws`
//! (authenticated by their token); people use the page at `/`, which talks to `/api/...`.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use futures::{SinkExt as _, StreamExt as _};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use super::wire::{self, DataKitInfo, Frame, Reply, action};

/// How long the console waits for an agent's answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest frame an agent may send (a config file, a stats answer, a log chunk).
const MAX_MESSAGE: usize = 4 << 20;
/// The page.
const INDEX_HTML: &str = include_str!("static/index.html");

/// Why the tokens file is refused.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("cannot read the tokens file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the tokens file {0} has no token: write one line per agent, `NAME TOKEN` (or just `TOKEN`)"
    )]
    Empty(String),
    #[error("{path}:{line}: a line is `NAME TOKEN` or `TOKEN`; this one has {words} words")]
    Line {
        path: String,
        line: usize,
        words: usize,
    },
}

/// The agents' tokens: one line per agent, `NAME TOKEN` or `TOKEN`; `#` starts a comment.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    /// sha256(token) -> name (compared by digest, so timing says nothing about the token).
    by_digest: HashMap<Vec<u8>, String>,
}

fn digest(token: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
        .as_ref()
        .to_vec()
}

impl Tokens {
    /// Parses the tokens file's text.
    ///
    /// # Errors
    /// [`TokensError`] for a malformed line or a file with no token.
    pub fn parse(text: &str, path: &str) -> Result<Tokens, TokensError> {
        let mut by_digest = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                [] => {}
                [token] => {
                    by_digest.insert(digest(token), String::new());
                }
                [name, token] => {
                    by_digest.insert(digest(token), (*name).to_string());
                }
                _ => {
                    return Err(TokensError::Line {
                        path: path.to_string(),
                        line: i + 1,
                        words: words.len(),
                    });
                }
            }
        }
        if by_digest.is_empty() {
            return Err(TokensError::Empty(path.to_string()));
        }
        Ok(Tokens { by_digest })
    }

    /// Reads and parses the tokens file.
    ///
    /// # Errors
    /// [`TokensError`].
    pub fn load(path: &Path) -> Result<Tokens, TokensError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokensError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Tokens::parse(&text, &path.display().to_string())
    }

    /// The name of the agent `token` belongs to, or `None` when it is not listed (or empty).
    pub fn check(&self, token: &str) -> Option<&str> {
        let token = token.trim();
        if token.is_empty() {
            return None;
        }
        self.by_digest.get(&digest(token)).map(String::as_str)
    }
}

/// The ids of the connected agents.
impl Console {
    #[cfg(test)]
    pub(crate) fn agent_ids(&self) -> Vec<String> {
        lock(&self.agents).keys().cloned().collect()
    }
}

/// One connected agent.
struct AgentEntry {
    session: u64,
    name: String,
    info: DataKitInfo,
    status: String,
    connected_at: i64,
    tx: mpsc::Sender<Message>,
    pending: Arc<Mutex<HashMap<i64, oneshot::Sender<Reply>>>>,
}

/// The console's state.
#[derive(Default)]
pub struct Console {
    tokens: Tokens,
    agents: Mutex<BTreeMap<String, AgentEntry>>,
    log_waiters: Mutex<HashMap<String, oneshot::Sender<WebSocket>>>,
    next_id: AtomicI64,
    sessions: AtomicU64,
}

impl Console {
    /// A console admitting the agents of `tokens`.
    pub fn new(tokens: Tokens) -> Console {
        Console {
            tokens,
            ..Console::default()
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `datakit dca`: runs the console until SIGINT/SIGTERM.
pub fn run(listen: &str, tokens: &Path) -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .try_init();
    let tokens = match Tokens::load(tokens) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(crate::EXIT_CONFIG);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "Cannot start the async runtime.");
            return ExitCode::from(71);
        }
    };
    match rt.block_on(serve(listen, tokens)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(listen: &str, tokens: Tokens) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| {
            format!("cannot listen on {listen}: pass --listen HOST:PORT that is free")
        })?;
    let addr = listener.local_addr()?;
    let console = Arc::new(Console::new(tokens));
    tracing::info!(listen = %addr, "DCA console listening: the page is at http://{addr}/, agents dial ws://{addr}/ws.");
    let app = router(console);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        })
        .await?;
    Ok(())
}

/// The console's routes.
pub fn router(console: Arc<Console>) -> axum::Router {
    axum::Router::new()
        .route("/", get(index))
        .route("/ws", get(agent_ws))
        .route("/api/agents", get(list_agents))
        .route("/api/agents/{id}/stats", get(stats))
        .route("/api/agents/{id}/reload", axum::routing::post(reload))
        .route(
            "/api/agents/{id}/config",
            get(get_config).post(save_config).delete(delete_config),
        )
        .route("/api/agents/{id}/log", get(log_tail))
        .route("/api/agents/{id}/log/download", get(log_download))
        .with_state(console)
}

async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        INDEX_HTML,
    )
        .into_response()
}

/// The handshake of an agent (or of its second connection for logs).
async fn agent_ws(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let text = |h: &str| {
        headers
            .get(h)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let Some(name) = text(wire::HEADER_TOKEN).and_then(|t| c.tokens.check(&t).map(str::to_string))
    else {
        tracing::warn!("An agent with a missing or unknown token was refused.");
        return (
            StatusCode::UNAUTHORIZED,
            "unknown DCA token: list the agent's [dca] token in the console's --tokens file",
        )
            .into_response();
    };
    let info: DataKitInfo = match text(wire::HEADER_DATAKIT).map(|j| serde_json::from_str(&j)) {
        Some(Ok(i)) => i,
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                "the dca-datakit header with the agent's JSON is required",
            )
                .into_response();
        }
    };
    if info.conn_id.is_empty() {
        return (StatusCode::BAD_REQUEST, "conn_id is required").into_response();
    }
    let ws = ws.max_message_size(MAX_MESSAGE).max_frame_size(MAX_MESSAGE);
    if let Some(id) = text(&wire::HEADER_NEW_CONNECTION.to_ascii_lowercase()) {
        let Some(waiter) = lock(&c.log_waiters).remove(&id) else {
            return (StatusCode::NOT_FOUND, "no such connection request").into_response();
        };
        return ws.on_upgrade(move |socket| async move {
            let _ = waiter.send(socket);
        });
    }
    ws.on_upgrade(move |socket| serve_agent(c, info, name, socket))
}

async fn serve_agent(c: Arc<Console>, info: DataKitInfo, name: String, socket: WebSocket) {
    let session = c.sessions.fetch_add(1, Ordering::Relaxed);
    let conn_id = info.conn_id.clone();
    let (tx, mut rx) = mpsc::channel::<Message>(64);
    let pending: Arc<Mutex<HashMap<i64, oneshot::Sender<Reply>>>> = Arc::default();
    tracing::info!(agent = %info.host_name, name, conn_id, "Agent connected.");
    lock(&c.agents).insert(
        conn_id.clone(),
        AgentEntry {
            session,
            name,
            info,
            status: "running".into(),
            connected_at: now_ms(),
            tx,
            pending: pending.clone(),
        },
    );
    let (mut sink, mut stream) = socket.split();
    loop {
        tokio::select! {
            Some(m) = rx.recv() => {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
            m = stream.next() => match m {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(Message::Text(t))) => {
                    let Ok(frame) = serde_json::from_str::<Frame>(t.as_str()) else { continue };
                    if frame.id > 0 {
                        if let Some(w) = lock(&pending).remove(&frame.id)
                            && let Ok(r) = serde_json::from_value::<Reply>(frame.data)
                        {
                            let _ = w.send(r);
                        }
                        continue;
                    }
                    let data: wire::RequestData = serde_json::from_value(frame.data).unwrap_or_default();
                    let mut agents = lock(&c.agents);
                    let Some(e) = agents.get_mut(&conn_id).filter(|e| e.session == session) else { continue };
                    match frame.action.as_str() {
                        action::UPDATE_STATUS => {
                            if let Some(s) = data.query("status") {
                                e.status = s.chars().take(32).collect();
                            }
                        }
                        action::UPDATE_DATAKIT => {
                            if let Ok(mut i) = serde_json::from_str::<DataKitInfo>(&data.body) {
                                // The id the agent was admitted under stays.
                                i.conn_id = conn_id.clone();
                                e.info = i;
                            }
                        }
                        _ => {}
                    }
                }
                Some(Ok(_)) => {}
            }
        }
    }
    let mut agents = lock(&c.agents);
    if agents.get(&conn_id).is_some_and(|e| e.session == session) {
        agents.remove(&conn_id);
    }
    tracing::info!(conn_id, "Agent disconnected.");
}

/// An error of the page API.
fn api_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(Reply::err(status.as_u16(), "console.error", message)),
    )
        .into_response()
}

impl Console {
    /// Sends a request to agent `id` and waits for its reply.
    pub(crate) async fn request(
        &self,
        id: &str,
        action: &str,
        query: BTreeMap<String, Vec<String>>,
        body: String,
    ) -> Result<Reply, Response> {
        let (tx, pending) = {
            let agents = lock(&self.agents);
            let e = agents
                .get(id)
                .ok_or_else(|| api_error(StatusCode::NOT_FOUND, "no such agent (disconnected?)"))?;
            (e.tx.clone(), e.pending.clone())
        };
        let rid = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (wtx, wrx) = oneshot::channel();
        lock(&pending).insert(rid, wtx);
        let frame = Frame {
            id: rid,
            action: action.to_string(),
            data: serde_json::to_value(wire::RequestData { body, query }).unwrap_or_default(),
        };
        let text = serde_json::to_string(&frame).unwrap_or_default();
        if tx.send(Message::Text(text.into())).await.is_err() {
            lock(&pending).remove(&rid);
            return Err(api_error(StatusCode::NOT_FOUND, "the agent disconnected"));
        }
        match tokio::time::timeout(REPLY_TIMEOUT, wrx).await {
            Ok(Ok(r)) => Ok(r),
            _ => {
                lock(&pending).remove(&rid);
                Err(api_error(
                    StatusCode::GATEWAY_TIMEOUT,
                    "the agent did not answer within 15 s",
                ))
            }
        }
    }
}

async fn list_agents(State(c): State<Arc<Console>>) -> Json<serde_json::Value> {
    let agents = lock(&c.agents);
    let mut sorted: Vec<_> = agents.iter().collect();
    // By name, then host, then install dir: a stable order for people.
    sorted.sort_by(|(_, a), (_, b)| {
        (&a.name, &a.info.host_name, &a.info.install_dir).cmp(&(
            &b.name,
            &b.info.host_name,
            &b.info.install_dir,
        ))
    });
    let list: Vec<_> = sorted
        .into_iter()
        .map(|(id, e)| {
            serde_json::json!({
                "id": id,
                "name": e.name,
                "status": e.status,
                "connected_at": e.connected_at,
                "info": e.info,
            })
        })
        .collect();
    Json(serde_json::Value::Array(list))
}

fn reply(r: Result<Reply, Response>) -> Response {
    match r {
        Ok(r) => Json(r).into_response(),
        Err(resp) => resp,
    }
}

async fn stats(State(c): State<Arc<Console>>, UrlPath(id): UrlPath<String>) -> Response {
    reply(
        c.request(&id, action::STATS, BTreeMap::new(), String::new())
            .await,
    )
}

async fn reload(State(c): State<Arc<Console>>, UrlPath(id): UrlPath<String>) -> Response {
    reply(
        c.request(&id, action::RELOAD, BTreeMap::new(), String::new())
            .await,
    )
}

#[derive(Deserialize)]
struct PathQuery {
    #[serde(default)]
    path: String,
}

async fn get_config(
    State(c): State<Arc<Console>>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<PathQuery>,
) -> Response {
    let query = BTreeMap::from([("path".to_string(), vec![q.path])]);
    reply(
        c.request(&id, action::GET_CONFIG, query, String::new())
            .await,
    )
}

async fn save_config(
    State(c): State<Arc<Console>>,
    UrlPath(id): UrlPath<String>,
    Json(body): Json<serde_json::Value>,
) -> Response {
    reply(
        c.request(&id, action::SAVE_CONFIG, BTreeMap::new(), body.to_string())
            .await,
    )
}

async fn delete_config(
    State(c): State<Arc<Console>>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<PathQuery>,
) -> Response {
    let body = serde_json::json!({"path": q.path}).to_string();
    reply(
        c.request(&id, action::DELETE_CONFIG, BTreeMap::new(), body)
            .await,
    )
}

/// Asks agent `id` for a second connection and sends it the log request `act`.
async fn log_connection(c: &Console, id: &str, act: &str) -> Result<WebSocket, Response> {
    let wait_id = format!(
        "{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    );
    let (wtx, wrx) = oneshot::channel();
    lock(&c.log_waiters).insert(wait_id.clone(), wtx);
    let query = BTreeMap::from([(
        wire::HEADER_NEW_CONNECTION.to_string(),
        vec![wait_id.clone()],
    )]);
    let asked = c
        .request(id, action::NEW_CONNECTION, query, String::new())
        .await;
    let socket = match asked {
        Ok(r) if r.success => tokio::time::timeout(REPLY_TIMEOUT, wrx).await,
        Ok(r) => {
            lock(&c.log_waiters).remove(&wait_id);
            return Err(Json(r).into_response());
        }
        Err(resp) => {
            lock(&c.log_waiters).remove(&wait_id);
            return Err(resp);
        }
    };
    let Ok(Ok(mut socket)) = socket else {
        lock(&c.log_waiters).remove(&wait_id);
        return Err(api_error(
            StatusCode::GATEWAY_TIMEOUT,
            "the agent did not open its log connection",
        ));
    };
    let frame = Frame {
        id: 1,
        action: act.into(),
        data: serde_json::json!({"body": "", "query": {"type": ["log"]}}),
    };
    socket
        .send(Message::Text(
            serde_json::to_string(&frame).unwrap_or_default().into(),
        ))
        .await
        .map_err(|_| api_error(StatusCode::BAD_GATEWAY, "the log connection closed"))?;
    Ok(socket)
}

/// The agent's whole log file, as an attachment.
async fn log_download(State(c): State<Arc<Console>>, UrlPath(id): UrlPath<String>) -> Response {
    let mut socket = match log_connection(&c, &id, action::LOG_DOWNLOAD).await {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    let mut bytes = Vec::new();
    loop {
        let next = tokio::time::timeout(REPLY_TIMEOUT, socket.next()).await;
        match next {
            Ok(Some(Ok(Message::Binary(b)))) => bytes.extend_from_slice(&b),
            Ok(Some(Ok(Message::Text(t)))) => {
                let r = serde_json::from_str::<Frame>(t.as_str())
                    .ok()
                    .and_then(|f| serde_json::from_value::<Reply>(f.data).ok());
                match r {
                    Some(r) if r.success => break,
                    Some(r) => return Json(r).into_response(),
                    None => {}
                }
            }
            Ok(Some(Ok(_))) => {}
            _ => {
                return api_error(
                    StatusCode::BAD_GATEWAY,
                    "the log connection closed before the end of the file",
                );
            }
        }
    }
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"datakit.log\"",
            ),
        ],
        bytes,
    )
        .into_response()
}

/// Server-sent events with the agent's new log text, over a second agent connection.
async fn log_tail(State(c): State<Arc<Console>>, UrlPath(id): UrlPath<String>) -> Response {
    let socket = match log_connection(&c, &id, action::LOG_TAIL).await {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    let events = futures::stream::unfold(socket, |mut socket| async move {
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(t))) => {
                    let Ok(f) = serde_json::from_str::<Frame>(t.as_str()) else {
                        continue;
                    };
                    let Ok(r) = serde_json::from_value::<Reply>(f.data) else {
                        continue;
                    };
                    let text = if r.success {
                        let b64 = r.content.as_str().unwrap_or_default();
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(b64)
                            .unwrap_or_default();
                        String::from_utf8_lossy(&bytes).into_owned()
                    } else {
                        format!("[agent] {}\n", r.message)
                    };
                    let ev =
                        Event::default().data(serde_json::to_string(&text).unwrap_or_default());
                    return Some((Ok::<_, Infallible>(ev), socket));
                }
                Some(Ok(_)) => {}
                _ => return None,
            }
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_token_is_accepted_with_its_name_and_others_are_refused() {
        let t =
            Tokens::parse("# agents\nweb-1 s3cret-one\ns3cret-two  # no name\n\n", "t").unwrap();
        assert_eq!(t.check("s3cret-one"), Some("web-1"));
        assert_eq!(t.check("s3cret-two"), Some(""));
        assert_eq!(t.check("wrong"), None);
        assert_eq!(t.check(""), None);
        assert_eq!(t.check("web-1"), None, "a name is not a token");
    }

    #[test]
    fn a_tokens_file_without_tokens_or_with_a_bad_line_is_refused() {
        assert!(matches!(
            Tokens::parse("# nothing\n", "t"),
            Err(TokensError::Empty(_))
        ));
        assert!(matches!(
            Tokens::parse("a b c\n", "t"),
            Err(TokensError::Line {
                line: 1,
                words: 3,
                ..
            })
        ));
    }
}
