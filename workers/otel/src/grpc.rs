//! The OTLP/gRPC services (collector v1 Trace, Metrics and Logs `Export`) on the inherited
//! listener: gzip accepted, messages capped at `[grpc] max_payload`, connections capped and
//! counted by the kit's telemetry, HTTP/2 streams capped per connection.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use dk_proto::{Category, Point};
use dk_worker::Emitter;
use dk_worker::serve::Tally;
use dk_worker::telemetry::{ListenerTelemetry, reason};
use futures::Stream;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::{Request, Response, Status};

use crate::INPUT_NAME;
use crate::options::Origin;
use crate::receiver::Receiver;

/// How long connections may finish their requests after shutdown began.
pub const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// The three services of one instance.
#[derive(Clone)]
pub struct Otlp {
    receiver: Arc<Receiver>,
    emitter: Emitter,
}

impl Otlp {
    /// Services mapping with `receiver` and feeding `emitter`.
    pub fn new(receiver: Arc<Receiver>, emitter: Emitter) -> Otlp {
        Otlp { receiver, emitter }
    }

    async fn feed<R: Send + 'static>(
        &self,
        req: Request<R>,
        category: Category,
        map: fn(&Receiver, &R, &Origin) -> Vec<Point>,
    ) -> Result<(), Status> {
        let origin = Origin {
            remote_ip: req
                .remote_addr()
                .map(|a| a.ip().to_string())
                .unwrap_or_default(),
        };
        let msg = req.into_inner();
        let receiver = self.receiver.clone();
        // Mapping a 16 MiB request takes a while: off the runtime threads.
        let points = tokio::task::spawn_blocking(move || map(&receiver, &msg, &origin))
            .await
            .map_err(|e| Status::internal(format!("mapping failed: {e}")))?;
        // Answered once the points are in the durable queue: what the client was told is
        // safe survives a crash, and the points a worker holds are bounded by the requests in
        // flight (a plain feed could queue hundreds of MiB ahead of a slower supervisor).
        let durable = self
            .emitter
            .emit_acked(category, INPUT_NAME, dk_worker::FeedOpts::default(), points)
            .await;
        if !durable.await {
            return Err(Status::unavailable(
                "the agent could not store the data (stopping or its queue refused it); retry",
            ));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl TraceService for Otlp {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.feed(request, Category::Tracing, Receiver::traces)
            .await?;
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Otlp {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        self.feed(request, Category::Metric, Receiver::metrics)
            .await?;
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Otlp {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        self.feed(request, Category::Logging, Receiver::logs)
            .await?;
        Ok(Response::new(ExportLogsServiceResponse::default()))
    }
}

/// Serves the three services on `listener` until `shutdown`, then lets requests in flight
/// finish for [`DRAIN_GRACE`].
///
/// # Errors
/// The transport's error when serving fails.
pub async fn serve(
    listener: TcpListener,
    otlp: Otlp,
    max_payload: usize,
    max_connections: usize,
    max_streams: u32,
    telemetry: ListenerTelemetry,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let incoming = Incoming::new(listener, max_connections, telemetry, shutdown.clone());
    let server = tonic::transport::Server::builder()
        .max_concurrent_streams(Some(max_streams))
        .add_service(
            TraceServiceServer::new(otlp.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(max_payload),
        )
        .add_service(
            MetricsServiceServer::new(otlp.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(max_payload),
        )
        .add_service(
            LogsServiceServer::new(otlp)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(max_payload),
        );
    let stop = shutdown.clone();
    let serving =
        server.serve_with_incoming_shutdown(incoming, async move { stop.cancelled().await });
    tokio::pin!(serving);
    tokio::select! {
        r = &mut serving => r,
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(DRAIN_GRACE).await;
        } => Ok(()),
    }
}

/// Accepted connections, at most `max` open at once (more are closed at once and counted as
/// dropped `connection_limit`); accept errors are counted and backed off.
struct Incoming {
    inner: Pin<Box<dyn Stream<Item = Result<Conn, io::Error>> + Send>>,
}

impl Incoming {
    fn new(
        listener: TcpListener,
        max: usize,
        telemetry: ListenerTelemetry,
        shutdown: CancellationToken,
    ) -> Incoming {
        let slots = Arc::new(Semaphore::new(max.max(1)));
        let refused = telemetry.dropped(reason::CONNECTION_LIMIT);
        let accept_errors = telemetry.dropped(reason::ACCEPT_ERROR);
        let report = Arc::new(Tally::default());
        let state = (
            listener,
            slots,
            telemetry,
            shutdown,
            Duration::from_millis(10),
        );
        let inner = futures::stream::unfold(state, move |mut st| {
            let refused = refused.clone();
            let accept_errors = accept_errors.clone();
            let report = report.clone();
            async move {
                loop {
                    let accepted = tokio::select! {
                        () = st.3.cancelled() => return None,
                        a = st.0.accept() => a,
                    };
                    match accepted {
                        Ok((stream, _)) => {
                            st.4 = Duration::from_millis(10);
                            let Ok(permit) = st.1.clone().try_acquire_owned() else {
                                refused.inc();
                                if let Some(n) = report.due(1) {
                                    tracing::warn!(
                                        input = INPUT_NAME,
                                        refused = n,
                                        "OTLP/gRPC connections refused at the cap; raise [grpc] max_connections"
                                    );
                                }
                                drop(stream);
                                continue;
                            };
                            let _ = stream.set_nodelay(true);
                            st.2.connections.inc();
                            st.2.open.inc();
                            let conn = Conn {
                                io: stream,
                                _permit: permit,
                                open: st.2.open.clone(),
                                bytes: st.2.bytes.clone(),
                                reads: st.2.events.clone(),
                            };
                            return Some((Ok(conn), st));
                        }
                        Err(e) => {
                            accept_errors.inc();
                            if let Some(n) = report.due(1) {
                                tracing::warn!(
                                    input = INPUT_NAME,
                                    errors = n,
                                    "accept failed: {e}"
                                );
                            }
                            tokio::select! {
                                () = st.3.cancelled() => return None,
                                () = tokio::time::sleep(st.4) => {}
                            }
                            st.4 = (st.4 * 2).min(Duration::from_secs(1));
                        }
                    }
                }
            }
        });
        Incoming {
            inner: Box::pin(inner),
        }
    }
}

impl Stream for Incoming {
    type Item = Result<Conn, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// One accepted connection holding its slot under the cap.
struct Conn {
    io: TcpStream,
    _permit: OwnedSemaphorePermit,
    open: Gauge,
    bytes: prometheus_client::metrics::counter::Counter,
    reads: prometheus_client::metrics::counter::Counter,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.open.dec();
    }
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.io.connect_info()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        if n > 0 {
            self.bytes.inc_by(n as u64);
            self.reads.inc();
        }
        r
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
