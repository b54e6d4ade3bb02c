//! The InfluxDB sink against a scripted fake HTTP server: request shape, status handling, timeouts.

use std::collections::VecDeque;
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use dk_delivery::{Sink, SinkError};
use dk_proto::{Category, Point, Value};
use dk_sinks::influxdb::{InfluxConfig, InfluxSink};
use prometheus_client::registry::Registry;

/// One request the fake received.
#[derive(Debug, Clone)]
struct Seen {
    uri: String,
    headers: HeaderMap,
    /// The body, gunzipped when it was sent with `Content-Encoding: gzip`.
    body: String,
}

#[derive(Default)]
struct Fake {
    seen: Mutex<Vec<Seen>>,
    /// Replies in order; 204 when empty.
    replies: Mutex<VecDeque<(u16, &'static str)>>,
}

async fn handle(
    State(fake): State<Arc<Fake>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let gz = headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes() == b"gzip");
    let body = if gz {
        let mut s = String::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut s)
            .expect("gzip body");
        s
    } else {
        String::from_utf8(body.to_vec()).expect("utf-8 body")
    };
    fake.seen.lock().expect("lock").push(Seen {
        uri: uri.to_string(),
        headers,
        body,
    });
    let reply = fake.replies.lock().expect("lock").pop_front();
    match reply {
        None => StatusCode::NO_CONTENT.into_response(),
        Some((code, text)) => (
            StatusCode::from_u16(code).expect("status"),
            [("content-type", "application/json")],
            text,
        )
            .into_response(),
    }
}

async fn start_fake(replies: &[(u16, &'static str)]) -> (Arc<Fake>, SocketAddr) {
    let fake = Arc::new(Fake::default());
    fake.replies
        .lock()
        .expect("lock")
        .extend(replies.iter().copied());
    let app = Router::new()
        .route("/write", axum::routing::post(handle))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (fake, addr)
}

fn config(addr: SocketAddr) -> InfluxConfig {
    InfluxConfig {
        url: format!("http://{addr}"),
        database: "db".to_string(),
        timeout: Duration::from_secs(5),
        ..InfluxConfig::default()
    }
}

fn points(n: usize) -> Vec<Point> {
    (0..n)
        .map(|i| {
            Point::new("cpu", 1_700_000_000_000_000_000 + i as i64)
                .tag("host", "h1")
                .field("usage", Value::F(i as f64 + 0.5))
        })
        .collect()
}

fn metrics_text(registry: &Registry) -> String {
    let mut s = String::new();
    prometheus_client::encoding::text::encode(&mut s, registry).expect("encode");
    s
}

fn seen(fake: &Fake) -> Vec<Seen> {
    fake.seen.lock().expect("lock").clone()
}

#[tokio::test]
async fn request_carries_db_precision_rp_content_type_gzip_and_basic_auth() {
    let (fake, addr) = start_fake(&[]).await;
    let mut reg = Registry::default();
    let sink = InfluxSink::new(
        InfluxConfig {
            retention_policy: Some("autogen".to_string()),
            username: Some("writer".to_string()),
            password: Some("s3cret".to_string()),
            gzip: true,
            ..config(addr)
        },
        &mut reg,
    )
    .expect("sink");
    let pts = vec![
        Point::new("cpu", 5)
            .tag("host", "a b")
            .field("n", Value::U(7))
            .field("s", Value::S("x\"y".to_string())),
    ];
    sink.write(Category::Metric, &pts).await.expect("written");

    let seen = seen(&fake);
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(req.uri, "/write?db=db&precision=ns&rp=autogen");
    assert_eq!(
        req.headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"text/plain; charset=utf-8"[..])
    );
    assert_eq!(
        req.headers.get("authorization").map(|v| v.as_bytes()),
        Some(&b"Basic d3JpdGVyOnMzY3JldA=="[..])
    );
    assert_eq!(req.body, "cpu,host=a\\ b n=7i,s=\"x\\\"y\" 5");
    assert_eq!(sink.name(), "influxdb");
}

#[tokio::test]
async fn bad_request_is_rejected_with_influxdbs_message() {
    let msg = r#"{"error":"partial write: field type conflict: input field \"usage\" on measurement \"cpu\" is type string, already exists as type float dropped=1"}"#;
    let (_fake, addr) = start_fake(&[(400, msg)]).await;
    let mut reg = Registry::default();
    let sink = InfluxSink::new(config(addr), &mut reg).expect("sink");
    let err = sink
        .write(Category::Metric, &points(3))
        .await
        .expect_err("rejected");
    match err {
        SinkError::Rejected { sink, message } => {
            assert_eq!(sink, "influxdb");
            assert!(message.contains("400 Bad Request"), "{message}");
            assert!(
                message.contains("field type conflict: input field \"usage\""),
                "{message}"
            );
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    let text = metrics_text(&reg);
    assert!(
        text.contains(
            r#"datakit_io_influxdb_point_total{category="metric",status="Bad Request"} 3"#
        ),
        "{text}"
    );
}

#[tokio::test]
async fn server_and_configuration_errors_keep_the_batch_and_other_4xx_drop_it() {
    let cases: [(u16, &'static str, bool); 7] = [
        (500, r#"{"error":"timeout"}"#, true),
        (503, "", true),
        (404, r#"{"error":"database not found: \"db\""}"#, true),
        (401, r#"{"error":"authorization failed"}"#, true),
        (403, "", true),
        (429, "", true),
        (413, r#"{"error":"Request Entity Too Large"}"#, false),
    ];
    for (code, body, kept) in cases {
        let (_fake, addr) = start_fake(&[(code, body)]).await;
        let mut reg = Registry::default();
        let sink = InfluxSink::new(config(addr), &mut reg).expect("sink");
        let err = sink
            .write(Category::Metric, &points(1))
            .await
            .expect_err("not written");
        match (&err, kept) {
            (SinkError::Unavailable { message, .. }, true) => {
                assert!(message.contains(&code.to_string()), "{code}: {message}");
                if code == 404 {
                    assert!(
                        message.contains("database not found")
                            && message.contains("CREATE DATABASE \"db\""),
                        "{message}"
                    );
                }
            }
            (SinkError::Rejected { message, .. }, false) => {
                assert!(message.contains("413"), "{message}");
            }
            _ => panic!("status {code}: unexpected {err:?}"),
        }
    }
}

#[tokio::test]
async fn hanging_server_times_out_as_unavailable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    // Accept connections and hold them open without ever answering.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    let mut reg = Registry::default();
    let sink = InfluxSink::new(
        InfluxConfig {
            timeout: Duration::from_millis(300),
            ..config(addr)
        },
        &mut reg,
    )
    .expect("sink");
    let started = Instant::now();
    let err = sink
        .write(Category::Metric, &points(2))
        .await
        .expect_err("timed out");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "{took:?}"
    );
    match err {
        SinkError::Unavailable { message, .. } => {
            assert!(message.contains("did not answer in time"), "{message}")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let text = metrics_text(&reg);
    assert!(
        text.contains(r#"datakit_io_influxdb_point_total{category="metric",status="timeout"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"datakit_io_influxdb_request_seconds_count{status="timeout"} 1"#),
        "{text}"
    );
    holder.abort();
}

#[tokio::test]
async fn closed_port_is_unavailable_as_connection_refused() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let mut reg = Registry::default();
    let sink = InfluxSink::new(config(addr), &mut reg).expect("sink");
    let err = sink
        .write(Category::Metric, &points(4))
        .await
        .expect_err("refused");
    match err {
        SinkError::Unavailable { message, .. } => {
            assert!(message.contains("cannot be reached"), "{message}");
            assert!(message.contains(&addr.to_string()), "{message}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let text = metrics_text(&reg);
    assert!(
        text.contains(
            r#"datakit_io_influxdb_point_total{category="metric",status="connection-refused"} 4"#
        ),
        "{text}"
    );
}

#[tokio::test]
async fn categories_not_configured_are_confirmed_without_a_request() {
    let (fake, addr) = start_fake(&[]).await;
    let mut reg = Registry::default();
    let sink = InfluxSink::new(config(addr), &mut reg).expect("sink");
    sink.write(Category::Logging, &points(5))
        .await
        .expect("confirmed");
    assert!(seen(&fake).is_empty());
    let text = metrics_text(&reg);
    assert!(
        text.contains(r#"datakit_io_influxdb_point_total{category="logging",status="not-sent"} 5"#),
        "{text}"
    );

    let mut reg = Registry::default();
    let sink = InfluxSink::new(
        InfluxConfig {
            categories: vec![Category::Metric, Category::Logging],
            ..config(addr)
        },
        &mut reg,
    )
    .expect("sink");
    sink.write(Category::Logging, &points(5))
        .await
        .expect("written");
    assert_eq!(seen(&fake).len(), 1);
}

#[tokio::test]
async fn rejected_request_does_not_stop_the_rest_of_the_batch() {
    let (fake, addr) = start_fake(&[(204, ""), (400, r#"{"error":"bad point"}"#)]).await;
    let mut reg = Registry::default();
    let one_line = dk_proto::lineproto::encode(&points(1)).len();
    let sink = InfluxSink::new(
        InfluxConfig {
            max_body_bytes: one_line * 2 + 1,
            ..config(addr)
        },
        &mut reg,
    )
    .expect("sink");
    let err = sink
        .write(Category::Metric, &points(6))
        .await
        .expect_err("rejected");
    let seen = seen(&fake);
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|s| s.body.lines().count() == 2));
    match err {
        SinkError::Rejected { message, .. } => {
            assert!(message.contains("bad point"), "{message}");
            assert!(
                message.contains("1 of 3 requests with 2 points were rejected"),
                "{message}"
            );
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
}

#[tokio::test]
async fn unavailable_request_stops_the_batch_for_a_retry() {
    let (fake, addr) = start_fake(&[(204, ""), (503, "")]).await;
    let mut reg = Registry::default();
    let one_line = dk_proto::lineproto::encode(&points(1)).len();
    let sink = InfluxSink::new(
        InfluxConfig {
            max_body_bytes: one_line,
            ..config(addr)
        },
        &mut reg,
    )
    .expect("sink");
    let err = sink
        .write(Category::Metric, &points(5))
        .await
        .expect_err("unavailable");
    assert!(matches!(err, SinkError::Unavailable { .. }), "{err:?}");
    assert_eq!(seen(&fake).len(), 2);
    // The retry sends the whole batch again, one request per point.
    sink.write(Category::Metric, &points(5))
        .await
        .expect("written");
    assert_eq!(seen(&fake).len(), 7);
}
