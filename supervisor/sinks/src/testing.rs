//! A fake Dataway for tests: checks uploads the way Dataway does and records what arrived.
//!
//! [`FakeDataway::start`] serves HTTP/1.1 on `127.0.0.1:<ephemeral>`. A request to
//! `POST /v1/write/<category>?token=<token>` is answered, in this order:
//! 1. a programmed failure, if any ([`FakeDataway::fail_next`], then [`FakeDataway::set_mode`]):
//!    a status, no answer at all ([`Mode::Hang`]) or a dropped connection ([`Mode::Close`]);
//! 2. 405 for another method, 404 for another path or an unknown category;
//! 3. 401 without `token`, 403 with another token;
//! 4. 415 for a `Content-Type` other than protobuf or line protocol, or a `Content-Encoding`
//!    other than `gzip`/`identity`;
//! 5. 400 when the (gunzipped) body does not decode with its codec, or when `X-Points` is
//!    missing or differs from the number of decoded points;
//! 6. otherwise 200, and the points are recorded.
//!
//! `POST /v1/upload/profiling?token=<token>` (a profile, as Datakit uploads it) gets the same
//! programmed failures and token checks, then 415 unless `Content-Type` is
//! `multipart/form-data` with a boundary, 400 unless the body parses, has the part `event`
//! (`event.json`, a JSON object) and a file part for every name in its `attachments`;
//! accepted, it is recorded as one profiling point: the field `event.json` and one binary
//! field per other part (see `dk_proto::profile`).
//!
//! `GET /v1/ntp?token=<token>` answers Dataway's clock, `{"timestamp_sec": <unix s>}`: the
//! host clock moved by [`FakeDataway::set_clock_skew`] (programmed failures and the token
//! checks apply to it too).
//!
//! `POST /v1/election?token=&namespace=&id=` and `POST /v1/election/heartbeat?...` follow
//! Dataway's election protocol, one leader per namespace: the first candidate while no leader
//! holds the namespace is elected; the leader keeps it by heartbeats, and loses it when none
//! arrived within the lease ([`FakeDataway::set_election_timing`]: interval 4 s, lease three
//! intervals by default). Answers are
//! `{"content":{"status":"success"|"defeat","namespace","id","incumbency_id","error_msg","interval"}}`.
//!
//! Every request is recorded as a [`Request`] with its answer; only accepted points are
//! returned by [`FakeDataway::points`]. Waiting is notification-based, never polling.

use dk_proto::clock::now_ns;
use std::collections::HashMap;
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use dk_proto::{Category, Point};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::dataway::{CONTENT_TYPE_LINE_PROTOCOL, CONTENT_TYPE_PROTOBUF};

/// Largest request body (compressed or not) the fake accepts.
const MAX_BODY: usize = 64 << 20;

/// How the fake answers requests that are not covered by [`FakeDataway::fail_next`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Check and accept, as a healthy Dataway.
    #[default]
    Ok,
    /// Answer this status with a small JSON error body, without checking the request.
    Status(u16),
    /// Answer this status with this body.
    StatusBody(u16, String),
    /// Read the request and never answer (until [`FakeDataway::stop`]).
    Hang,
    /// Drop the connection without answering.
    Close,
}

impl Mode {
    /// Dataway's answer when the workspace is over its quota: 403 with `beyondDataUsage`.
    pub fn beyond_data_usage() -> Mode {
        Mode::StatusBody(
            403,
            r#"{"error_code":"kodo.beyondDataUsage","message":"beyondDataUsage: the workspace is over its data quota"}"#.into(),
        )
    }
}

/// One request the fake received.
#[derive(Clone, Debug)]
pub struct Request {
    /// The path's last segment (`metric`, `logging`...), whatever it was.
    pub category: String,
    /// The raw query string.
    pub query: String,
    /// All request headers.
    pub headers: http::HeaderMap,
    /// The status answered; 0 for [`Mode::Hang`] and [`Mode::Close`].
    pub status: u16,
    /// The body size on the wire.
    pub body_len: usize,
    /// The body size after gzip decoding (0 when not decoded).
    pub raw_len: usize,
    /// The decoded points when the request was accepted, else empty.
    pub points: Vec<Point>,
}

impl Request {
    /// A header's value as text (empty when absent or not text).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// A wait that ran out of time.
#[derive(Debug, thiserror::Error)]
#[error("waited {waited:?} for {wanted} {what}, got {got}")]
pub struct WaitTimeout {
    /// What was awaited (`metric points`, `requests`).
    pub what: String,
    /// How many were awaited.
    pub wanted: usize,
    /// How many had arrived.
    pub got: usize,
    /// How long it waited.
    pub waited: Duration,
}

/// Leaders by namespace, and the timing the fake answers with.
struct Elections {
    interval: Duration,
    lease: Duration,
    /// namespace -> (leader id, last election or heartbeat).
    leaders: HashMap<String, (String, std::time::Instant)>,
}

impl Default for Elections {
    fn default() -> Self {
        Elections {
            interval: Duration::from_secs(4),
            lease: Duration::from_secs(12),
            leaders: HashMap::new(),
        }
    }
}

impl Elections {
    /// One election (`heartbeat` false) or heartbeat request; (status, leader).
    fn answer(&mut self, namespace: &str, id: &str, heartbeat: bool) -> (&'static str, String) {
        let now = std::time::Instant::now();
        let lease = self.lease;
        let current = self
            .leaders
            .get(namespace)
            .filter(|(_, at)| now.duration_since(*at) < lease)
            .map(|(leader, _)| leader.clone());
        match current {
            Some(leader) if leader == id => {
                self.leaders.insert(namespace.into(), (leader.clone(), now));
                ("success", leader)
            }
            Some(leader) => ("defeat", leader),
            // A heartbeat of a node that lost its lead is a defeat: it must campaign again.
            None if heartbeat => ("defeat", String::new()),
            None => {
                self.leaders.insert(namespace.into(), (id.to_string(), now));
                ("success", id.to_string())
            }
        }
    }
}

#[derive(Default)]
struct State {
    mode: Mode,
    fail_next: u64,
    fail_status: u16,
    clock_skew_secs: i64,
    election: Elections,
    requests: Vec<Request>,
    points: HashMap<String, Vec<Point>>,
}

struct Inner {
    token: String,
    state: Mutex<State>,
    changed: Notify,
    shutdown: watch::Receiver<bool>,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, req: Request) {
        let mut st = self.state();
        if !req.points.is_empty() {
            st.points
                .entry(req.category.clone())
                .or_default()
                .extend(req.points.iter().cloned());
        }
        st.requests.push(req);
        drop(st);
        self.changed.notify_waiters();
    }
}

/// A fake Dataway on loopback; see the module documentation. Stops when dropped.
pub struct FakeDataway {
    inner: Arc<Inner>,
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for FakeDataway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeDataway")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FakeDataway {
    /// Starts a fake Dataway on `127.0.0.1:0` that accepts `token`.
    ///
    /// # Errors
    /// When the loopback socket cannot be bound.
    pub async fn start(token: &str) -> std::io::Result<FakeDataway> {
        Self::start_on(token, "127.0.0.1:0".parse().map_err(std::io::Error::other)?).await
    }

    /// Starts a fake Dataway on a chosen address (e.g. to run it as a standalone server).
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn start_on(token: &str, addr: SocketAddr) -> std::io::Result<FakeDataway> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = watch::channel(false);
        let inner = Arc::new(Inner {
            token: token.to_string(),
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            shutdown: rx,
        });
        let task = tokio::spawn(accept_loop(listener, inner.clone()));
        Ok(FakeDataway {
            inner,
            addr,
            shutdown: tx,
            accept: Mutex::new(Some(task)),
        })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The token it accepts.
    pub fn token(&self) -> &str {
        &self.inner.token
    }

    /// The base URL with the token, as in `[dataway] urls`: `http://127.0.0.1:<port>?token=<token>`.
    pub fn url(&self) -> String {
        format!("http://{}?token={}", self.addr, self.inner.token)
    }

    /// Serves one already-accepted connection (e.g. a TLS stream the caller terminated).
    pub fn serve_connection<IO>(&self, io: IO)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        tokio::spawn(serve_io(io, self.inner.clone()));
    }

    /// Sets how later requests are answered.
    pub fn set_mode(&self, mode: Mode) {
        self.inner.state().mode = mode;
    }

    /// Answers the next `n` requests with `status` (before [`Self::set_mode`]'s mode applies).
    pub fn fail_next(&self, n: u64, status: u16) {
        let mut st = self.inner.state();
        st.fail_next = n;
        st.fail_status = status;
    }

    /// Makes `GET /v1/ntp` answer the host time moved by `secs` (a Dataway whose clock is ahead
    /// for a positive value).
    pub fn set_clock_skew(&self, secs: i64) {
        self.inner.state().clock_skew_secs = secs;
    }

    /// The election timing: the `interval` answered to candidates, and the `lease` after which
    /// a leader without a heartbeat loses its namespace.
    pub fn set_election_timing(&self, interval: Duration, lease: Duration) {
        let mut st = self.inner.state();
        st.election.interval = interval;
        st.election.lease = lease;
    }

    /// The current leader of `namespace` (one whose lease has not run out).
    pub fn election_leader(&self, namespace: &str) -> Option<String> {
        let st = self.inner.state();
        st.election
            .leaders
            .get(namespace)
            .filter(|(_, at)| at.elapsed() < st.election.lease)
            .map(|(leader, _)| leader.clone())
    }

    /// The accepted points of a category, in arrival order.
    pub fn points(&self, category: Category) -> Vec<Point> {
        self.inner
            .state()
            .points
            .get(category.name())
            .cloned()
            .unwrap_or_default()
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.inner.state().requests.clone()
    }

    /// Forgets the recorded requests and points (the mode is kept).
    pub fn clear(&self) {
        let mut st = self.inner.state();
        st.requests.clear();
        st.points.clear();
    }

    /// Waits until at least `n` points of `category` were accepted; returns them all.
    ///
    /// # Errors
    /// [`WaitTimeout`] when fewer arrived within `timeout`.
    pub async fn wait_points(
        &self,
        category: Category,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<Point>, WaitTimeout> {
        self.wait(
            || {
                let pts = self.points(category);
                (pts.len() >= n).then_some(pts).ok_or(0)
            },
            || self.points(category).len(),
            format!("{category} points"),
            n,
            timeout,
        )
        .await
    }

    /// Waits until at least `n` requests arrived (answered or not); returns them all.
    ///
    /// # Errors
    /// [`WaitTimeout`] when fewer arrived within `timeout`.
    pub async fn wait_requests(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<Request>, WaitTimeout> {
        self.wait(
            || {
                let reqs = self.requests();
                (reqs.len() >= n).then_some(reqs).ok_or(0)
            },
            || self.inner.state().requests.len(),
            "requests".into(),
            n,
            timeout,
        )
        .await
    }

    async fn wait<T>(
        &self,
        check: impl Fn() -> Result<T, u8>,
        count: impl Fn() -> usize,
        what: String,
        wanted: usize,
        timeout: Duration,
    ) -> Result<T, WaitTimeout> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Ok(v) = check() {
                return Ok(v);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return check().map_err(|_| WaitTimeout {
                    what,
                    wanted,
                    got: count(),
                    waited: timeout,
                });
            }
        }
    }

    /// Stops accepting, ends hanging requests and closes open connections; returns once the
    /// listening socket is closed.
    pub async fn stop(&self) {
        let _ = self.shutdown.send(true);
        let task = self.accept.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

impl Drop for FakeDataway {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

async fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
    let mut shutdown = inner.shutdown.clone();
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    tokio::spawn(serve_io(stream, inner.clone()));
                }
            }
        }
    }
}

/// The error a handler returns to make hyper drop the connection unanswered.
#[derive(Debug)]
struct CloseConnection;

impl std::fmt::Display for CloseConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection closed on purpose")
    }
}

impl std::error::Error for CloseConnection {}

async fn serve_io<IO>(io: IO, inner: Arc<Inner>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut shutdown = inner.shutdown.clone();
    let svc_inner = inner.clone();
    let svc = service_fn(move |req| handle(svc_inner.clone(), req));
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), svc);
    tokio::select! {
        _ = conn => {}
        _ = shutdown.wait_for(|s| *s) => {}
    }
}

type Answer = Result<hyper::Response<Full<Bytes>>, CloseConnection>;

fn answer(status: u16, body: impl Into<Bytes>) -> Answer {
    let mut resp = hyper::Response::new(Full::new(body.into()));
    *resp.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

fn error_body(code: &str, message: &str) -> String {
    serde_json::json!({ "error_code": code, "message": message }).to_string()
}

async fn handle(inner: Arc<Inner>, req: hyper::Request<Incoming>) -> Answer {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let mut record = Request {
        category: path.rsplit('/').next().unwrap_or("").to_string(),
        query: query.clone(),
        headers: parts.headers.clone(),
        status: 0,
        body_len: 0,
        raw_len: 0,
        points: Vec::new(),
    };

    let programmed = {
        let mut st = inner.state();
        if st.fail_next > 0 {
            st.fail_next -= 1;
            Mode::Status(st.fail_status)
        } else {
            st.mode.clone()
        }
    };
    match programmed {
        Mode::Ok => {}
        Mode::Hang => {
            inner.record(record);
            let mut shutdown = inner.shutdown.clone();
            let _ = shutdown.wait_for(|s| *s).await;
            return Err(CloseConnection);
        }
        Mode::Close => {
            inner.record(record);
            return Err(CloseConnection);
        }
        Mode::Status(status) => {
            record.status = status;
            inner.record(record);
            return answer(status, error_body("fake.programmed", "programmed failure"));
        }
        Mode::StatusBody(status, text) => {
            record.status = status;
            inner.record(record);
            return answer(status, text);
        }
    }

    if path == "/v1/election" || path == "/v1/election/heartbeat" {
        let (status, text) = match check_token(&inner, &query) {
            Ok(()) if parts.method == http::Method::POST => election(&inner, &path, &query),
            Ok(()) => (
                405,
                error_body("fake.methodNotAllowed", &format!("{} {path}", parts.method)),
            ),
            Err((status, code, message)) => (status, error_body(code, &message)),
        };
        record.status = status;
        inner.record(record);
        return answer(status, text);
    }

    if path == "/v1/ntp" {
        let (status, text) = match check_token(&inner, &query) {
            Ok(()) if parts.method == http::Method::GET => {
                let now =
                    dk_proto::clock::host_now_ns() / 1_000_000_000 + inner.state().clock_skew_secs;
                (200, serde_json::json!({ "timestamp_sec": now }).to_string())
            }
            Ok(()) => (
                405,
                error_body("fake.methodNotAllowed", &format!("{} {path}", parts.method)),
            ),
            Err((status, code, message)) => (status, error_body(code, &message)),
        };
        record.status = status;
        inner.record(record);
        return answer(status, text);
    }

    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            record.status = 413;
            inner.record(record);
            return answer(413, error_body("fake.bodyTooLarge", &e.to_string()));
        }
    };
    record.body_len = body.len();
    let (status, text) = match check(&inner, &parts, &path, &query, &body, &mut record) {
        Ok(()) => (200, "{}".to_string()),
        Err((status, code, message)) => (status, error_body(code, &message)),
    };
    record.status = status;
    inner.record(record);
    answer(status, text)
}

/// Dataway's answer to an election or heartbeat request.
fn election(inner: &Inner, path: &str, query: &str) -> (u16, String) {
    let arg = |name: &str| query_param(query, name).unwrap_or_default();
    let (namespace, id) = (arg("namespace"), arg("id"));
    if id.is_empty() {
        return (
            400,
            error_body("fake.election.missingID", "query argument id is required"),
        );
    }
    let mut st = inner.state();
    let (status, leader) = st
        .election
        .answer(&namespace, &id, path.ends_with("/heartbeat"));
    let interval = st.election.interval.as_secs().max(1);
    drop(st);
    let body = serde_json::json!({
        "content": {
            "status": status,
            "namespace": namespace,
            "id": id,
            "incumbency_id": leader,
            "error_msg": "",
            "interval": interval,
        }
    });
    (200, body.to_string())
}

type Refusal = (u16, &'static str, String);

/// Dataway's checks of an upload; fills `record.points` when it is accepted.
fn check(
    inner: &Inner,
    parts: &http::request::Parts,
    path: &str,
    query: &str,
    body: &[u8],
    record: &mut Request,
) -> Result<(), Refusal> {
    if parts.method != http::Method::POST {
        return Err((
            405,
            "fake.methodNotAllowed",
            format!("{} {path}", parts.method),
        ));
    }
    if path == dk_proto::profile::UPLOAD_PATH {
        check_token(inner, query)?;
        record.raw_len = body.len();
        record.points = vec![check_profile(parts, body)?];
        return Ok(());
    }
    let known = path
        .strip_prefix("/v1/write/")
        .and_then(|c| c.parse::<Category>().ok())
        .is_some_and(|c| c.url_path() == path);
    if !known {
        return Err((404, "fake.routeNotFound", format!("no route {path}")));
    }
    check_token(inner, query)?;
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let content_type = header("content-type");
    let protobuf = match content_type.as_str() {
        CONTENT_TYPE_PROTOBUF => true,
        CONTENT_TYPE_LINE_PROTOCOL => false,
        other => {
            return Err((
                415,
                "fake.unsupportedContentType",
                format!("Content-Type {other:?}"),
            ));
        }
    };
    let raw: Vec<u8> = match header("content-encoding").as_str() {
        "gzip" => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(body)
                .take(MAX_BODY as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| (400, "fake.badGzip", format!("gzip: {e}")))?;
            if out.len() > MAX_BODY {
                return Err((413, "fake.bodyTooLarge", "gunzipped body too large".into()));
            }
            out
        }
        "" | "identity" => body.to_vec(),
        other => {
            return Err((
                415,
                "fake.unsupportedContentEncoding",
                format!("Content-Encoding {other:?}"),
            ));
        }
    };
    record.raw_len = raw.len();
    let points = if protobuf {
        dk_proto::pb::decode(&raw).map_err(|e| (400, "fake.badProtobuf", e.to_string()))?
    } else {
        let opts =
            dk_proto::lineproto::DecodeOptions::new(dk_proto::lineproto::Precision::Ns, now_ns());
        dk_proto::lineproto::decode(&raw, &opts)
            .map_err(|e| (400, "fake.badLineProtocol", e.to_string()))?
    };
    let x_points = header("x-points");
    if x_points.parse::<usize>().ok() != Some(points.len()) {
        return Err((
            400,
            "fake.pointCountMismatch",
            format!("X-Points {x_points:?} but {} points decoded", points.len()),
        ));
    }
    record.points = points;
    Ok(())
}

/// Dataway's token check: 401 without `token`, 403 with another one.
/// A profiling upload as Dataway checks it, recorded as a profiling point.
fn check_profile(parts: &http::request::Parts, body: &[u8]) -> Result<Point, Refusal> {
    use dk_proto::profile::{self, EVENT_FIELD};
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("multipart/form-data") {
        return Err((
            415,
            "fake.unsupportedContentType",
            format!("profiling upload with Content-Type {content_type:?}"),
        ));
    }
    let boundary = profile::boundary_of(content_type)
        .map_err(|e| (415, "fake.unsupportedContentType", e.to_string()))?;
    let form =
        profile::parse(body, &boundary).map_err(|e| (400, "fake.badMultipart", e.to_string()))?;
    let event = form
        .iter()
        .find(|p| p.name == "event" && p.filename.as_deref() == Some(EVENT_FIELD))
        .ok_or((
            400,
            "fake.noEventJson",
            "no event part with event.json".into(),
        ))?;
    let json: serde_json::Value = serde_json::from_slice(event.data)
        .map_err(|e| (400, "fake.badEventJson", format!("event.json: {e}")))?;
    let attachments = json.get("attachments").and_then(|a| a.as_array()).ok_or((
        400,
        "fake.badEventJson",
        "event.json has no attachments".into(),
    ))?;
    for a in attachments {
        let name = a.as_str().unwrap_or_default();
        if !form
            .iter()
            .any(|p| p.name == name || p.filename.as_deref() == Some(name))
        {
            return Err((
                400,
                "fake.missingAttachment",
                format!("event.json lists {name:?}, which is not in the body"),
            ));
        }
    }
    let mut point = Point::new("profile", now_ns()).field(
        EVENT_FIELD,
        dk_proto::Value::S(String::from_utf8_lossy(event.data).into_owned()),
    );
    for p in form.iter().filter(|p| p.name != "event") {
        point = point.field(p.name.clone(), dk_proto::Value::D(p.data.to_vec()));
    }
    Ok(point)
}

fn check_token(inner: &Inner, query: &str) -> Result<(), Refusal> {
    match query_param(query, "token").as_deref() {
        None | Some("") => Err((
            401,
            "dataway.tokenMissing",
            "token query parameter missing".into(),
        )),
        Some(t) if t != inner.token => {
            Err((403, "dataway.tokenNotFound", format!("token {t} not found")))
        }
        Some(_) => Ok(()),
    }
}

/// The decoded value of a query parameter.
fn query_param(query: &str, key: &str) -> Option<String> {
    let url = reqwest::Url::parse(&format!("http://fake/?{query}")).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}
