//! The supervisor's RPC servers on `<workdir>/run/{ingest,control}.sock`.
//!
//! Workers are restartable and not trusted: every ingest connection is bounded (frames of
//! at most [`MAX_FRAME_BYTES`], at most [`MAX_IN_FLIGHT_PER_CONNECTION`] requests executing;
//! more are answered with a retry at once and counted). A worker that breaks the protocol (a
//! frame over the cap or one that does not decode, [`FLOOD_STRIKES`] over-limit requests
//! within [`FLOOD_WINDOW`], a hello for another family than it was started for) has its
//! connection closed and is reported to the registry, and procman kills and restarts it
//! (cause `protocol_violation`).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dk_proto::rpc::transport;
use dk_proto::rpc::{
    Ack, Batch, CONTROL_SOCKET, ControlClient, Hello, HelloReply, INGEST_SOCKET, Ingest, LastError,
    MAX_FRAME_BYTES, MAX_IN_FLIGHT_PER_CONNECTION, PROTO_VERSION,
};
use futures::StreamExt;
use futures::future::BoxFuture;
use tarpc::server::{BaseChannel, Channel};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::metrics::SupervisorMetrics;
use crate::registry::{IdentifyError, WorkerRegistry};

/// Over-limit requests within [`FLOOD_WINDOW`] that make a flood (the worker runtime never
/// exceeds the limit, so this only catches a broken or hostile worker).
pub const FLOOD_STRIKES: u32 = 32;
/// The window [`FLOOD_STRIKES`] are counted in.
pub const FLOOD_WINDOW: Duration = Duration::from_secs(5);

/// Where worker batches and errors go (delivery and the last-error store in production).
pub trait BatchHandler: Send + Sync + 'static {
    /// Accepts a batch from a worker of `family`; the answer is the worker's ack.
    fn accept(&self, family: &str, batch: Batch) -> BoxFuture<'_, Ack>;
    /// Records an error an input reported.
    fn last_error(&self, family: &str, error: LastError);
}

/// The ack for a worker batch from delivery's answer: transient refusals (queue busy or full,
/// disk write failed, shutting down) are `Retry`; permanent ones (a record too large for the
/// queue, anything that will fail the same way again) are `Rejected`, so a worker never
/// retries a batch forever.
pub fn ack_for(result: Result<dk_delivery::FeedOutcome, dk_delivery::DeliveryError>) -> Ack {
    use dk_delivery::DeliveryError as E;
    match result {
        Ok(o) => Ack::Accepted {
            points: o.accepted,
            dropped: o.dropped,
        },
        Err(e @ (E::Busy(_) | E::Closed | E::Queue(_) | E::Io(_))) => Ack::Retry(e.to_string()),
        Err(e) => Ack::Rejected(e.to_string()),
    }
}

#[derive(Clone)]
struct IngestServer {
    pid: u32,
    registry: Arc<WorkerRegistry>,
    handler: Arc<dyn BatchHandler>,
    metrics: SupervisorMetrics,
    family: Arc<std::sync::OnceLock<String>>,
    /// Cancelled with a reason when a request showed a protocol violation (wrong family).
    cut: Arc<std::sync::OnceLock<String>>,
    cut_now: CancellationToken,
    /// This request arrived over the in-flight limit: answer at once without doing the work.
    over_limit: bool,
}

impl IngestServer {
    fn cut_off(&self, reason: String) {
        let _ = self.cut.set(reason);
        self.cut_now.cancel();
    }
}

impl Ingest for IngestServer {
    async fn hello(self, _: tarpc::context::Context, hello: Hello) -> HelloReply {
        // A worker of the previous binary, taken over across the exec, has another build.
        let build_ok = hello.build == dk_proto::build_id() || self.registry.is_adopted(self.pid);
        if hello.proto_version != PROTO_VERSION || !build_ok {
            return HelloReply::Refused(format!(
                "worker build {} (protocol {}) does not match supervisor build {} (protocol {}); restart the agent after an upgrade",
                hello.build,
                hello.proto_version,
                dk_proto::build_id(),
                PROTO_VERSION
            ));
        }
        if hello.pid != self.pid {
            return HelloReply::Refused(format!(
                "hello says pid {} but the socket peer is pid {}",
                hello.pid, self.pid
            ));
        }
        match self.registry.hello(self.pid, &hello.family).await {
            Ok(config) => {
                let _ = self.family.set(hello.family);
                HelloReply::Accepted(config)
            }
            Err(e) => {
                if matches!(e, IdentifyError::WrongFamily { .. }) {
                    self.cut_off(e.to_string());
                }
                HelloReply::Refused(e.to_string())
            }
        }
    }

    async fn push(self, _: tarpc::context::Context, batch: Arc<Batch>) -> Ack {
        let Some(family) = self.family.get() else {
            return Ack::Rejected("push before hello".to_string());
        };
        if self.over_limit {
            return Ack::Retry(format!(
                "more than {MAX_IN_FLIGHT_PER_CONNECTION} requests in flight on this connection"
            ));
        }
        let started = Instant::now();
        let batch = Arc::unwrap_or_clone(batch);
        let n = batch.points.len() as u64;
        let ack = self.handler.accept(family, batch).await;
        let label = SupervisorMetrics::family(family);
        self.metrics.push_points.get_or_create(&label).inc_by(n);
        self.metrics
            .push_latency
            .get_or_create(&label)
            .observe(started.elapsed().as_secs_f64());
        ack
    }

    async fn last_error(self, _: tarpc::context::Context, error: LastError) {
        if let Some(family) = self.family.get().filter(|_| !self.over_limit) {
            self.handler.last_error(family, error);
        }
    }
}

/// Counts over-limit requests; true once they make a flood.
struct Strikes {
    since: Instant,
    count: u32,
}

impl Strikes {
    fn new() -> Self {
        Strikes {
            since: Instant::now(),
            count: 0,
        }
    }

    fn hit(&mut self) -> bool {
        if self.since.elapsed() > FLOOD_WINDOW {
            self.since = Instant::now();
            self.count = 0;
        }
        self.count += 1;
        self.count >= FLOOD_STRIKES
    }
}

/// True for read errors that only mean the peer went away (it died mid-frame, reset the
/// connection): no protocol violation.
fn peer_gone(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            ) {
                return true;
            }
            if let Some(inner) = io.get_ref() {
                let inner: &(dyn std::error::Error + 'static) = inner;
                if inner.to_string().contains("bytes remaining on stream") {
                    return true;
                }
                cur = Some(inner);
                continue;
            }
        }
        cur = e.source();
    }
    false
}

/// Why a read error is a violation, in words for the log and `/v1/lasterror`.
fn describe_read_error(err: &tarpc::ChannelError<std::io::Error>) -> Option<String> {
    let tarpc::ChannelError::Read(e) = err else {
        return None;
    };
    if peer_gone(e.as_ref()) {
        return None;
    }
    let text = e.to_string();
    Some(if text.contains("frame size too big") {
        format!("sent a frame over the {MAX_FRAME_BYTES}-byte cap")
    } else {
        format!("sent a frame that does not decode ({text})")
    })
}

/// Serves one worker's ingest connection until it closes or breaks the protocol.
async fn serve_connection(
    stream: UnixStream,
    server: IngestServer,
    registry: Arc<WorkerRegistry>,
    metrics: SupervisorMetrics,
) {
    let pid = server.pid;
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT_PER_CONNECTION));
    let mut strikes = Strikes::new();
    let mut requests = BaseChannel::with_defaults(transport(stream)).requests();
    let violation = loop {
        let next = tokio::select! {
            _ = server.cut_now.cancelled() => break server.cut.get().cloned(),
            next = requests.next() => next,
        };
        let req = match next {
            None => break None,
            Some(Err(e)) => break describe_read_error(&e),
            Some(Ok(req)) => req,
        };
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let server = server.clone();
                tokio::spawn(async move {
                    req.execute(server.serve()).await;
                    drop(permit);
                });
            }
            Err(_) => {
                if let Some(family) = server.family.get() {
                    metrics
                        .over_limit
                        .get_or_create(&SupervisorMetrics::family(family))
                        .inc();
                }
                if strikes.hit() {
                    break Some(format!(
                        "kept more than {MAX_IN_FLIGHT_PER_CONNECTION} requests in flight ({FLOOD_STRIKES} over-limit requests within {FLOOD_WINDOW:?})"
                    ));
                }
                let server = IngestServer {
                    over_limit: true,
                    ..server.clone()
                };
                tokio::spawn(req.execute(server.serve()));
            }
        }
    };
    // Report first, then close: procman then sees the violation before the worker's exit.
    if let Some(reason) = violation {
        match registry.violation(pid, reason.clone()) {
            Some(family) => {
                tracing::warn!(
                    family,
                    pid,
                    "Worker broke the RPC protocol: {reason}; cut off."
                );
            }
            None => tracing::warn!(
                pid,
                "A process that is not a running worker broke the RPC protocol: {reason}; connection closed."
            ),
        }
    }
    // Dropping the channel closes the connection.
    drop(requests);
}

fn peer_pid(stream: &UnixStream) -> Option<u32> {
    stream
        .peer_cred()
        .ok()?
        .pid()
        .and_then(|p| u32::try_from(p).ok())
}

fn bind_socket(path: &Path) -> std::io::Result<UnixListener> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    UnixListener::bind(path)
}

/// The bound RPC sockets.
pub struct RpcSockets {
    ingest: UnixListener,
    control: UnixListener,
    run_dir: std::path::PathBuf,
}

impl RpcSockets {
    /// Creates `<run_dir>` (mode 0700) and binds both sockets in it.
    ///
    /// # Errors
    /// I/O errors creating the directory or binding.
    pub fn bind(run_dir: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(run_dir)?;
        std::fs::set_permissions(run_dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(RpcSockets {
            ingest: bind_socket(&run_dir.join(INGEST_SOCKET))?,
            control: bind_socket(&run_dir.join(CONTROL_SOCKET))?,
            run_dir: run_dir.to_path_buf(),
        })
    }

    /// Serves both sockets until `stop` is cancelled, then removes their files.
    pub async fn serve(
        self,
        registry: Arc<WorkerRegistry>,
        handler: Arc<dyn BatchHandler>,
        metrics: SupervisorMetrics,
        stop: CancellationToken,
    ) {
        let RpcSockets {
            ingest,
            control,
            run_dir,
        } = self;
        loop {
            tokio::select! {
                _ = stop.cancelled() => {
                    for name in [INGEST_SOCKET, CONTROL_SOCKET] {
                        let _ = std::fs::remove_file(run_dir.join(name));
                    }
                    return;
                }
                accepted = ingest.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let Some(pid) = peer_pid(&stream) else {
                        tracing::warn!("Refused an ingest connection without peer credentials.");
                        continue;
                    };
                    let server = IngestServer {
                        pid,
                        registry: registry.clone(),
                        handler: handler.clone(),
                        metrics: metrics.clone(),
                        family: Arc::new(std::sync::OnceLock::new()),
                        cut: Arc::new(std::sync::OnceLock::new()),
                        cut_now: CancellationToken::new(),
                        over_limit: false,
                    };
                    tokio::spawn(serve_connection(stream, server, registry.clone(), metrics.clone()));
                }
                accepted = control.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let Some(pid) = peer_pid(&stream) else { continue };
                    let registry = registry.clone();
                    tokio::spawn(async move {
                        let client = ControlClient::new(tarpc::client::Config::default(), transport(stream)).spawn();
                        if let Err(e) = registry.control(pid, client).await {
                            tracing::warn!(error = %e, "Refused a control connection.");
                        }
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dk_delivery::{DeliveryError, FeedOutcome};

    #[test]
    fn transient_delivery_errors_ask_the_worker_to_retry() {
        for e in [
            DeliveryError::Busy("queue full".into()),
            DeliveryError::Closed,
            DeliveryError::Queue("metric queue: No space left on device".into()),
        ] {
            let text = e.to_string();
            assert_eq!(ack_for(Err(e)), Ack::Retry(text));
        }
    }

    #[test]
    fn permanent_delivery_errors_reject_the_batch_for_good() {
        let ack = ack_for(Err(DeliveryError::Rejected(
            "a record of 9000 bytes is larger than the queue cap".into(),
        )));
        let Ack::Rejected(why) = ack else {
            panic!("want Rejected, got {ack:?}");
        };
        assert!(why.contains("larger than the queue cap"), "{why}");
        assert!(matches!(
            ack_for(Err(DeliveryError::NoRuntime)),
            Ack::Rejected(_)
        ));
    }

    #[test]
    fn an_accepted_feed_is_acked_with_its_counts() {
        let ack = ack_for(Ok(FeedOutcome {
            accepted: 7,
            dropped: 2,
        }));
        assert_eq!(
            ack,
            Ack::Accepted {
                points: 7,
                dropped: 2
            }
        );
    }

    #[test]
    fn a_flood_is_declared_only_after_enough_strikes_in_the_window() {
        let mut s = Strikes::new();
        for _ in 1..FLOOD_STRIKES {
            assert!(!s.hit());
        }
        assert!(s.hit());
        // An old window is forgotten.
        let mut s = Strikes::new();
        for _ in 1..FLOOD_STRIKES {
            assert!(!s.hit());
        }
        s.since -= FLOOD_WINDOW + Duration::from_millis(1);
        assert!(!s.hit());
    }

    #[test]
    fn a_peer_that_went_away_mid_frame_is_no_violation_but_garbage_is() {
        let gone = std::io::Error::other(std::io::Error::other("bytes remaining on stream"));
        assert!(peer_gone(&gone));
        let reset =
            std::io::Error::other(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(peer_gone(&reset));
        let garbage = std::io::Error::other(
            "invalid value: integer `2880154539`, expected variant index 0 <= i < 3",
        );
        assert!(!peer_gone(&garbage));
        let big = tarpc::ChannelError::Read(Arc::new(std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "frame size too big",
        ))));
        assert!(
            describe_read_error(&big).is_some_and(|d| d.contains("cap")),
            "{:?}",
            describe_read_error(&big)
        );
    }
}
