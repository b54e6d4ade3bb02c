//! The gRPC side on a real socket: the generated OTLP client exports to a running input (as
//! the supervisor hands it its listener), the points reach the emitter; gzip, the message
//! cap and the connection cap hold.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use dk_input_otel::OtelFamily;
use dk_proto::rpc::{InheritedListener, ListenerKind};
use dk_proto::{Category, Value};
use dk_worker::emitter::Message as Sent;
use dk_worker::testing::{spec, worker_config};
use dk_worker::{Emitter, Family, InputContext};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use tokio::sync::mpsc;
use tonic::codec::CompressionEncoding;

const TRACES: &[u8] = include_bytes!("../fixtures/python-sdk-traces.pb");
const LOGS: &[u8] = include_bytes!("../fixtures/python-sdk-logs.pb");

struct Running {
    port: u16,
    rx: mpsc::Receiver<Sent>,
    stop: tokio_util::sync::CancellationToken,
    ctx: InputContext,
    _fd: OwnedFd,
}

async fn start(extra: &str) -> Running {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let toml = format!("[grpc]\naddr = \"127.0.0.1:{port}\"\n{extra}");
    let inputs = OtelFamily
        .build(&worker_config(
            "otel",
            [spec("opentelemetry", "t.conf", &toml)],
        ))
        .unwrap_or_else(|p| panic!("{p:?}"));
    let (emitter, rx) = Emitter::channel(64);
    let (mut ctx, stop, _) = InputContext::for_test(emitter);
    let fd = OwnedFd::from(l);
    ctx.listeners = vec![InheritedListener {
        address: format!("tcp://127.0.0.1:{port}"),
        kind: ListenerKind::Tcp,
        fd: fd.as_raw_fd(),
    }];
    for i in inputs {
        tokio::spawn(i.run(ctx.clone()));
    }
    Running {
        port,
        rx,
        stop,
        ctx,
        _fd: fd,
    }
}

async fn next_feed(rx: &mut mpsc::Receiver<Sent>) -> dk_worker::Feed {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(Sent::Feed(f))) => return f,
            // The supervisor's part: the points are durable, the client may be answered.
            Ok(Some(Sent::AckedFeed(f, done))) => {
                let _ = done.send(true);
                return f;
            }
            Ok(Some(_)) => continue,
            other => panic!("no feed: {other:?}"),
        }
    }
}

#[tokio::test]
async fn grpc_exports_with_gzip_reach_the_emitter_as_points_with_the_peer_address() {
    let mut r = start("").await;
    let url = format!("http://127.0.0.1:{}", r.port);
    let mut client = TraceServiceClient::connect(url.clone())
        .await
        .unwrap()
        .send_compressed(CompressionEncoding::Gzip);
    let req = ExportTraceServiceRequest::decode(TRACES).unwrap();
    let call = tokio::spawn(async move { client.export(req).await });
    let feed = next_feed(&mut r.rx).await;
    call.await.unwrap().unwrap();
    assert_eq!(
        (feed.category, feed.input.as_str()),
        (Category::Tracing, "opentelemetry")
    );
    assert_eq!(feed.points.len(), 3);
    assert!(
        feed.points
            .iter()
            .all(|p| p.get_tag("remote_ip") == Some("127.0.0.1"))
    );
    assert!(feed.points.iter().all(|p| p.get_tag("dk_fingerprint")
        == Some(&*format!("test-host_{}", env!("CARGO_PKG_VERSION")))));

    let mut logs = LogsServiceClient::connect(url).await.unwrap();
    let call = tokio::spawn(async move {
        logs.export(ExportLogsServiceRequest::decode(LOGS).unwrap())
            .await
    });
    let feed = next_feed(&mut r.rx).await;
    call.await.unwrap().unwrap();
    assert_eq!(feed.category, Category::Logging);
    assert_eq!(
        feed.points[0].get_field("message"),
        Some(&Value::S("payment slow for order 42".into()))
    );

    let text = dk_worker::telemetry::encode(&r.ctx);
    let listener = format!(
        "input=\"opentelemetry\",listener=\"tcp://127.0.0.1:{}\"",
        r.port
    );
    assert!(
        dk_worker::telemetry::sample(&text, "datakit_input_received_bytes_total", &listener)
            > 1000.0,
        "{text}"
    );
    assert_eq!(
        dk_worker::telemetry::sample(&text, "datakit_input_connections_total", &listener),
        2.0
    );
    r.stop.cancel();
}

#[tokio::test]
async fn a_message_over_max_payload_is_refused_and_feeds_nothing() {
    let mut r = start("max_payload = 1000\n").await;
    let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{}", r.port))
        .await
        .unwrap();
    let err = client
        .export(ExportTraceServiceRequest::decode(TRACES).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err}");
    // A small one still goes through on the same connection.
    client
        .export(ExportTraceServiceRequest::default())
        .await
        .unwrap();
    assert!(r.rx.try_recv().is_err(), "nothing fed");
    r.stop.cancel();
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_and_counted() {
    let r = start("max_connections = 1\n").await;
    let url = format!("http://127.0.0.1:{}", r.port);
    let mut first = TraceServiceClient::connect(url.clone()).await.unwrap();
    first
        .export(ExportTraceServiceRequest::default())
        .await
        .unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), async {
        let mut c = TraceServiceClient::connect(url.clone()).await?;
        c.export(ExportTraceServiceRequest::default())
            .await
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    })
    .await;
    assert!(
        !matches!(second, Ok(Ok(()))),
        "the second connection was served"
    );
    let text = dk_worker::telemetry::encode(&r.ctx);
    assert!(
        dk_worker::telemetry::sample(
            &text,
            "datakit_input_dropped_total",
            "input=\"opentelemetry\",reason=\"connection_limit\""
        ) >= 1.0,
        "{text}"
    );
    // The first connection is still served.
    first
        .export(ExportTraceServiceRequest::default())
        .await
        .unwrap();
    r.stop.cancel();
}

#[tokio::test]
async fn an_export_is_answered_only_once_durable_and_unavailable_when_the_agent_refuses_it() {
    let mut r = start("").await;
    let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{}", r.port))
        .await
        .unwrap();
    let call = tokio::spawn(async move {
        client
            .export(ExportTraceServiceRequest::decode(TRACES).unwrap())
            .await
    });
    let done = match tokio::time::timeout(Duration::from_secs(10), r.rx.recv()).await {
        Ok(Some(Sent::AckedFeed(feed, done))) => {
            assert_eq!(feed.points.len(), 3);
            done
        }
        other => panic!("no acked feed: {other:?}"),
    };
    // Not answered while the points are not durable.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!call.is_finished());
    let _ = done.send(false);
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
    assert!(err.message().contains("retry"), "{err}");
    r.stop.cancel();
}
