//! The supervisor's RPC servers on `<workdir>/run/{ingest,control}.sock`.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use dk_proto::rpc::{
    Ack, Batch, CONTROL_SOCKET, ControlClient, Hello, HelloReply, INGEST_SOCKET, Ingest, LastError,
    PROTO_VERSION,
};
use dk_worker::rpc::transport;
use futures::StreamExt;
use futures::future::BoxFuture;
use tarpc::server::{BaseChannel, Channel};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::metrics::SupervisorMetrics;
use crate::registry::WorkerRegistry;

/// Where worker batches and errors go (delivery and the last-error store in production).
pub trait BatchHandler: Send + Sync + 'static {
    /// Accepts a batch from a worker of `family`; the answer is the worker's ack.
    fn accept(&self, family: &str, batch: Batch) -> BoxFuture<'_, Ack>;
    /// Records an error an input reported.
    fn last_error(&self, family: &str, error: LastError);
}

#[derive(Clone)]
struct IngestServer {
    pid: u32,
    registry: Arc<WorkerRegistry>,
    handler: Arc<dyn BatchHandler>,
    metrics: SupervisorMetrics,
    family: Arc<std::sync::OnceLock<String>>,
}

impl Ingest for IngestServer {
    async fn hello(self, _: tarpc::context::Context, hello: Hello) -> HelloReply {
        if hello.proto_version != PROTO_VERSION || hello.build != dk_proto::build_id() {
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
            Err(e) => HelloReply::Refused(e.to_string()),
        }
    }

    async fn push(self, _: tarpc::context::Context, batch: Arc<Batch>) -> Ack {
        let Some(family) = self.family.get() else {
            return Ack::Rejected("push before hello".to_string());
        };
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
        if let Some(family) = self.family.get() {
            self.handler.last_error(family, error);
        }
    }
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
        })
    }

    /// Serves both sockets until `stop` is cancelled.
    pub async fn serve(
        self,
        registry: Arc<WorkerRegistry>,
        handler: Arc<dyn BatchHandler>,
        metrics: SupervisorMetrics,
        stop: CancellationToken,
    ) {
        let RpcSockets { ingest, control } = self;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
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
                    };
                    tokio::spawn(
                        BaseChannel::with_defaults(transport(stream))
                            .execute(server.serve())
                            .for_each(|f| async {
                                tokio::spawn(f);
                            }),
                    );
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
