//! The tarpc services between a worker process and its supervisor.
//!
//! # Design
//!
//! Two Unix sockets live under `<workdir>/run/` (directory mode 0700):
//!
//! * `ingest.sock`: the supervisor serves [`Ingest`]. A worker connects, says [`Ingest::hello`]
//!   (build and protocol check, returns its [`WorkerConfig`]) and then sends batches with
//!   [`Ingest::push`]. A batch is acknowledged only once the supervisor has accepted it into
//!   delivery (the durable queue, when there is one); a worker keeps a batch until it is acked.
//! * `control.sock`: the worker connects and then *serves* [`Control`] on that connection; the
//!   supervisor is the client (health checks, pause/resume for election, reconfigure in place,
//!   shutdown).
//!
//! The supervisor identifies both connections by the peer's pid (`SO_PEERCRED`), which must be
//! a worker it spawned. Framing is a length-delimited codec (max [`MAX_FRAME_BYTES`]) carrying
//! bincode.

use serde::{Deserialize, Serialize};

use crate::{Category, Point};

/// Bumped whenever a message a worker of the previous binary exchanges with a new supervisor
/// across a binary swap changes shape (hello, push, last_error; shutdown is the only
/// [`Control`] call such a worker gets): the new supervisor refuses a worker with another
/// version. Same-build workers are checked by [`crate::build_id`] as well; a new [`Control`]
/// call goes at the end of the trait, so the calls before it keep their wire index.
pub const PROTO_VERSION: u32 = 1;

/// Largest frame either side accepts: 8 MiB.
///
/// The largest legitimate message is a batch; a worker cuts its batches at
/// [`MAX_BATCH_BYTES`] (so a batch of 1000 log lines of 512 KiB, Datakit's line cut, travels as
/// many frames), and a single point above [`MAX_POINT_BYTES`] is dropped by the worker. The cap
/// bounds what one request can make the supervisor hold: with at most
/// [`MAX_IN_FLIGHT_PER_CONNECTION`] requests per worker connection, a worker can pin at most
/// 64 MiB of decoded frames there. A frame over the cap is a protocol violation: the
/// supervisor closes the connection and restarts the worker.
pub const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;

/// A worker pushes a batch once its estimated encoded size reaches this (a quarter of the frame
/// cap leaves room for the estimate's error).
pub const MAX_BATCH_BYTES: usize = MAX_FRAME_BYTES / 4;

/// Largest single point a worker sends (estimated encoded size); a larger one is dropped and
/// counted in the worker.
pub const MAX_POINT_BYTES: usize = MAX_FRAME_BYTES / 2;

/// Requests one worker connection may have in flight at once. The worker runtime sends at most
/// 4 pushes and 2 error reports at a time; a connection that keeps exceeding this is cut off.
pub const MAX_IN_FLIGHT_PER_CONNECTION: usize = 8;

/// Largest metrics text ([`Control::metrics`]) the supervisor stores and serves per family: a
/// larger report is refused and counted, and the last good one keeps being served.
pub const MAX_WORKER_METRICS_BYTES: usize = 1024 * 1024;

/// A rough upper bound of a point's size on the wire (bincode: 8-byte length prefixes for
/// every string), used to cut batches under [`MAX_FRAME_BYTES`].
pub fn wire_size(point: &Point) -> usize {
    point.approx_size() + 16 * (point.tags.len() + point.fields.len()) + 32
}

/// File name of the ingest socket under `<workdir>/run`.
pub const INGEST_SOCKET: &str = "ingest.sock";
/// File name of the control socket under `<workdir>/run`.
pub const CONTROL_SOCKET: &str = "control.sock";

/// The first message of a worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTO_VERSION`] of the worker.
    pub proto_version: u32,
    /// [`crate::build_id`] of the worker binary; must equal the supervisor's.
    pub build: String,
    /// The family the worker runs (`host`, `socket`...).
    pub family: String,
    /// The worker's pid (checked against `SO_PEERCRED`).
    pub pid: u32,
}

/// The supervisor's answer to [`Hello`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum HelloReply {
    /// Go ahead with this configuration.
    Accepted(WorkerConfig),
    /// Refused (version mismatch, unknown family, unknown pid); the worker exits with the reason.
    Refused(String),
}

/// Everything a worker needs to run its family.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct WorkerConfig {
    /// The family name.
    pub family: String,
    /// The host name the agent reports (`ENV_HOSTNAME` or the OS host name).
    pub hostname: String,
    /// One entry per configured input instance of this family.
    pub inputs: Vec<InputSpec>,
    /// Listening sockets bound by the supervisor and inherited by this worker.
    pub listeners: Vec<InheritedListener>,
    /// Health-check period the supervisor uses, in milliseconds (informational).
    pub health_interval_ms: u64,
}

/// One `[[inputs.NAME]]` instance, as validated by the supervisor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    /// The Datakit input name (`cpu`, `socket`...).
    pub name: String,
    /// The file the instance came from (for error messages).
    pub source: String,
    /// The instance's TOML table, re-serialised.
    pub toml: String,
}

/// The transport of an inherited listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ListenerKind {
    /// A bound and listening TCP socket.
    Tcp,
    /// A bound UDP socket.
    Udp,
    /// A bound Unix datagram socket.
    UnixDatagram,
    /// A bound and listening Unix stream socket.
    UnixStream,
}

/// A socket the supervisor bound and left open (without `FD_CLOEXEC`) across the worker's exec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InheritedListener {
    /// The address as written in the config (`udp://0.0.0.0:8125`), the worker's lookup key.
    pub address: String,
    /// Transport.
    pub kind: ListenerKind,
    /// The descriptor number in the worker.
    pub fd: i32,
}

/// A batch of points of one category from one input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// Per-worker sequence number (for logs and duplicate accounting).
    pub seq: u64,
    /// The category of every point in the batch.
    pub category: Category,
    /// The feed name (`cpu`, `socket`, `v1-write.metric`...).
    pub input: String,
    /// Attach the election tags instead of the host tags (election-aware inputs).
    pub election: bool,
    /// Attach no global tags at all.
    pub no_global_tags: bool,
    /// The points.
    pub points: Vec<Point>,
}

/// The supervisor's answer to [`Ingest::push`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Ack {
    /// Accepted into delivery; the worker may forget the batch.
    Accepted {
        /// Points accepted after normalisation.
        points: u32,
        /// Points dropped by normalisation (invalid, over limits).
        dropped: u32,
    },
    /// Not accepted now (queue full, shutting down); the worker retries later with backoff.
    Retry(String),
    /// Never acceptable (a record too large for the queue, a push before hello, a refused
    /// connection); the worker drops the batch and counts it instead of retrying.
    Rejected(String),
}

/// An error an input reports; it shows up in `/v1/lasterror` and `datakit_last_err`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LastError {
    /// Input name.
    pub input: String,
    /// Source (e.g. the target or file that failed).
    pub source: String,
    /// Category the input feeds.
    pub category: Category,
    /// What went wrong and what to do.
    pub message: String,
}

/// A worker's answer to a health check.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct Health {
    /// Worker pid.
    pub pid: u32,
    /// Milliseconds since the worker started.
    pub uptime_ms: u64,
    /// Whether collection is paused (election).
    pub paused: bool,
    /// Points handed to the supervisor and acknowledged.
    pub points_acked: u64,
    /// Points dropped inside the worker (buffer full, rejected).
    pub points_dropped: u64,
    /// Batches waiting for an ack.
    pub pending_batches: u64,
    /// Resident memory in bytes.
    pub rss_bytes: u64,
}

/// The supervisor's side: served on `ingest.sock`.
#[tarpc::service]
pub trait Ingest {
    /// Identify the worker; returns its configuration or a refusal.
    async fn hello(hello: Hello) -> HelloReply;
    /// Hand a batch to the supervisor. The batch travels in an `Arc` so that the worker can keep
    /// it for a retry without copying the points.
    async fn push(batch: std::sync::Arc<Batch>) -> Ack;
    /// Report an error for `/v1/lasterror`.
    async fn last_error(error: LastError);
}

/// The worker's side: served by the worker on its `control.sock` connection.
#[tarpc::service]
pub trait Control {
    /// Liveness and counters; a worker that does not answer in time is restarted. Cheap (a
    /// few counters), as it is asked every second: the metrics text is [`Control::metrics`].
    async fn health() -> Health;
    /// Pause (true) or resume (false) election-aware inputs.
    async fn set_paused(paused: bool);
    /// Replace the running inputs with ones built from `config`, in place (no process
    /// restart). Only listeners the worker already inherited can be used; a change of
    /// listeners needs a restart. On error the old inputs keep running and every problem is
    /// returned.
    async fn reconfigure(config: WorkerConfig) -> Result<(), String>;
    /// Flush pending batches and exit within `grace_ms`.
    async fn shutdown(grace_ms: u64);
    /// Get ready to outlive this supervisor's binary swap: stop pushing (batches are held,
    /// inputs keep reading), wait until no push is in flight, no longer die with the
    /// supervisor's thread, and, once the control connection closes, reconnect to the
    /// supervisor that comes up under the same work dir and resume. Answers when nothing is in
    /// flight, or with why not within `deadline_ms` (the worker then goes on as before).
    async fn prepare_handover(deadline_ms: u64) -> Result<(), String>;
    /// The `[dataway.ntp]` offset (ns) to add to the host clock for point times.
    async fn set_clock_offset(offset_ns: i64);
    /// A request for a route the worker's family serves on the API port (9529); the worker
    /// feeds the points its handler made and answers.
    async fn http(call: HttpCall) -> HttpReply;
    /// The worker's own metrics (its inputs' counters: packets, parse errors, kernel drops...)
    /// in the OpenMetrics text format without the final `# EOF`. The supervisor asks when
    /// `/metrics` is scraped (at most once a second) and appends them there.
    async fn metrics() -> String;
}

/// A request the supervisor's API forwards to a worker (the body already read, bounded and
/// decompressed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpCall {
    /// `GET`, `POST`...
    pub method: String,
    /// The path (`/v1/pyroscope/ingest`).
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// A worker's answer to an [`HttpCall`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpReply {
    /// The HTTP status.
    pub status: u16,
    /// `Content-Type` of the body.
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
}

/// A bincode-over-length-delimited tarpc transport on a Unix stream.
pub type UnixTransport<In, Out> = tarpc::serde_transport::Transport<
    tokio::net::UnixStream,
    In,
    Out,
    tarpc::tokio_serde::formats::Bincode<In, Out>,
>;

/// Wraps a connected Unix stream into a tarpc transport with the frame cap
/// ([`MAX_FRAME_BYTES`]): the framing both ends of the worker sockets use.
pub fn transport<In, Out>(stream: tokio::net::UnixStream) -> UnixTransport<In, Out>
where
    In: for<'de> Deserialize<'de>,
    Out: Serialize,
{
    let framed = tarpc::tokio_util::codec::length_delimited::LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME_BYTES)
        .new_framed(stream);
    tarpc::serde_transport::new(framed, tarpc::tokio_serde::formats::Bincode::default())
}

/// A tarpc context whose deadline is `timeout` from now.
pub fn context_with_timeout(timeout: std::time::Duration) -> tarpc::context::Context {
    let mut ctx = tarpc::context::current();
    ctx.deadline = std::time::Instant::now() + timeout;
    ctx
}
