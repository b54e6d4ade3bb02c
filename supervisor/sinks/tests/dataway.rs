//! The Dataway sink against the fake Dataway over real loopback sockets (HTTP, HTTPS, proxy).

#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dk_delivery::{Sink, SinkError};
use dk_proto::{Category, Point, Value};
use dk_sinks::dataway::{
    CONTENT_TYPE_LINE_PROTOCOL, CONTENT_TYPE_PROTOBUF, DatawayConfig, DatawaySink, Encoding,
};
use dk_sinks::testing::{FakeDataway, Mode};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncBufReadExt, BufReader};

const TOKEN: &str = "tkn_0123456789abcdef0123456789abcdef";
const WAIT: Duration = Duration::from_secs(10);

fn config(urls: Vec<String>) -> DatawayConfig {
    DatawayConfig {
        urls,
        timeout: Duration::from_secs(10),
        hostname: "test-host".into(),
        version: "1.84.1".into(),
        ..DatawayConfig::default()
    }
}

fn new_sink(cfg: DatawayConfig) -> (DatawaySink, Registry) {
    let mut registry = Registry::default();
    let sink = DatawaySink::new(cfg, &mut registry).unwrap();
    (sink, registry)
}

fn metrics_text(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
    out
}

/// The value of one sample line (`name{labels} value`) in the text exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Points with every value type both codecs carry.
fn points(n: usize) -> Vec<Point> {
    (0..n)
        .map(|i| {
            Point::new("cpu", 1_700_000_000_000_000_000 + i as i64 * 1_000)
                .tag("host", "web-1")
                .tag("cpu", format!("cpu{}", i % 4))
                .field("usage_user", Value::F(0.25 + i as f64))
                .field("count", Value::I(-(i as i64)))
                .field("total", Value::U(u64::MAX - i as u64))
                .field("ok", Value::B(i % 2 == 0))
                .field(
                    "message",
                    Value::S(format!("line {i} with \"quotes\", commas")),
                )
                .field("raw", Value::D(vec![0, 1, 2, 255]))
                .field("list", Value::A(vec![Value::I(1), Value::I(2)]))
        })
        .collect()
}

fn expect_unavailable(r: Result<(), SinkError>) -> String {
    match r {
        Err(SinkError::Unavailable { sink, message }) => {
            assert_eq!(sink, "dataway");
            message
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

fn expect_rejected(r: Result<(), SinkError>) -> String {
    match r {
        Err(SinkError::Rejected { sink, message }) => {
            assert_eq!(sink, "dataway");
            message
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
}

#[tokio::test]
async fn delivers_protobuf_and_line_protocol_with_and_without_gzip() {
    let fake = FakeDataway::start(TOKEN).await.unwrap();
    let sent = points(25);
    for encoding in [Encoding::V2, Encoding::V1] {
        for gzip in [true, false] {
            fake.clear();
            let (sink, _) = new_sink(DatawayConfig {
                content_encoding: encoding,
                gzip,
                ..config(vec![fake.url()])
            });
            sink.write(Category::Logging, &sent).await.unwrap();

            let reqs = fake.requests();
            assert_eq!(reqs.len(), 1, "{encoding:?} gzip={gzip}");
            let req = &reqs[0];
            assert_eq!(req.status, 200);
            assert_eq!(req.category, "logging");
            assert_eq!(req.header("content-type"), encoding.content_type());
            assert_eq!(
                req.header("content-encoding"),
                if gzip { "gzip" } else { "" }
            );
            if gzip {
                assert!(req.body_len < req.raw_len, "gzip should shrink the body");
            } else {
                assert_eq!(req.body_len, req.raw_len);
            }
            assert_eq!(
                fake.points(Category::Logging),
                sent,
                "{encoding:?} gzip={gzip}"
            );
        }
    }
    assert_eq!(Encoding::V2.content_type(), CONTENT_TYPE_PROTOBUF);
    assert_eq!(Encoding::V1.content_type(), CONTENT_TYPE_LINE_PROTOCOL);
    assert_eq!(
        CONTENT_TYPE_PROTOBUF,
        "application/protobuf; proto=com.guance.Point"
    );
    assert_eq!(CONTENT_TYPE_LINE_PROTOCOL, "application/line-protocol");
}

#[tokio::test]
async fn sends_datakit_headers_and_keeps_the_token_query() {
    let fake = FakeDataway::start(TOKEN).await.unwrap();
    let (sink, _) = new_sink(DatawayConfig {
        global_tags_header: Some("env=prod,region=eu".into()),
        ..config(vec![format!("{}&b=2", fake.url())])
    });
    sink.write(Category::Metric, &points(3)).await.unwrap();
    sink.write(Category::Metric, &points(4)).await.unwrap();

    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2);
    let os = if cfg!(target_os = "macos") {
        "darwin"
    } else {
        std::env::consts::OS
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    for (req, n) in reqs.iter().zip([3, 4]) {
        assert_eq!(req.category, "metric");
        assert_eq!(req.query, format!("b=2&token={TOKEN}"), "sorted as Go does");
        assert_eq!(
            req.header("user-agent"),
            format!("datakit-{os}-{arch}/1.84.1/test-host")
        );
        assert_eq!(req.header("referer"), "DataKit");
        assert_eq!(req.header("x-points"), n.to_string());
        assert_eq!(req.header("x-global-tags"), "env=prod,region=eu");
        assert_eq!(req.header("content-type"), CONTENT_TYPE_PROTOBUF);
        assert_eq!(req.header("content-encoding"), "gzip");
        assert_eq!(req.header("content-length"), req.body_len.to_string());
        let id = req.header("x-pkg-id");
        assert!(id.starts_with("dk_") && id.len() == 23, "{id}");
    }
    assert_ne!(reqs[0].header("x-pkg-id"), reqs[1].header("x-pkg-id"));
}

#[tokio::test]
async fn splits_a_batch_into_bodies_within_max_raw_body_size() {
    let fake = FakeDataway::start(TOKEN).await.unwrap();
    let sent = points(200);
    for encoding in [Encoding::V2, Encoding::V1] {
        fake.clear();
        let (sink, _) = new_sink(DatawayConfig {
            content_encoding: encoding,
            max_raw_body_size: 4096,
            ..config(vec![fake.url()])
        });
        sink.write(Category::Metric, &sent).await.unwrap();
        let reqs = fake.requests();
        assert!(reqs.len() >= 5, "{encoding:?}: {} bodies", reqs.len());
        for r in &reqs {
            assert_eq!(r.status, 200);
            assert!(r.raw_len <= 4096, "{encoding:?}: raw body of {}", r.raw_len);
            assert_eq!(r.header("x-points"), r.points.len().to_string());
        }
        assert_eq!(fake.points(Category::Metric), sent, "{encoding:?}");
    }
}

#[tokio::test]
async fn skips_and_counts_a_point_larger_than_max_raw_body_size() {
    let fake = FakeDataway::start(TOKEN).await.unwrap();
    let (sink, registry) = new_sink(DatawayConfig {
        max_raw_body_size: 2048,
        ..config(vec![fake.url()])
    });
    let mut sent = points(10);
    let huge = Point::new("big", 1).field("blob", Value::S("x".repeat(10_000)));
    sent.insert(4, huge);
    sink.write(Category::Logging, &sent).await.unwrap();

    sent.remove(4);
    assert_eq!(fake.points(Category::Logging), sent);
    let text = metrics_text(&registry);
    assert_eq!(
        sample(
            &text,
            r#"datakit_io_dataway_skipped_point_total{category="logging"}"#
        ),
        Some(1.0),
        "{text}"
    );

    let only_huge = [Point::new("big", 1).field("blob", Value::S("x".repeat(10_000)))];
    let message = expect_rejected(sink.write(Category::Logging, &only_huge).await);
    assert!(message.contains("max_raw_body_size"), "{message}");
}

#[tokio::test]
async fn client_errors_are_rejected_and_counted_as_dropped() {
    let fake = FakeDataway::start(TOKEN).await.unwrap();
    let (sink, registry) = new_sink(config(vec![fake.url()]));
    fake.set_mode(Mode::Status(400));
    let message = expect_rejected(sink.write(Category::Object, &points(7)).await);
    assert!(message.contains("HTTP 400 Bad Request"), "{message}");
    assert!(!message.contains(TOKEN), "no token in messages: {message}");

    let text = metrics_text(&registry);
    assert_eq!(
        sample(
            &text,
            r#"datakit_io_dataway_http_drop_point_total{category="object",error="write point 4xx"}"#
        ),
        Some(7.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"datakit_io_dataway_point_total{category="object",status="Bad Request"}"#
        ),
        Some(7.0)
    );
}

#[tokio::test]
async fn a_wrong_token_is_rejected() {
    let fake = FakeDataway::start(TOKEN).await.unwrap();
    let url = format!("http://{}?token=tkn_wrong", fake.addr());
    let (sink, _) = new_sink(config(vec![url]));
    let message = expect_rejected(sink.write(Category::Metric, &points(1)).await);
    assert!(message.contains("HTTP 403"), "{message}");
    assert_eq!(fake.requests()[0].status, 403);

    let (no_token, _) = new_sink(config(vec![format!("http://{}", fake.addr())]));
    let message = expect_rejected(no_token.write(Category::Metric, &points(1)).await);
    assert!(message.contains("HTTP 401"), "{message}");
    assert!(fake.points(Category::Metric).is_empty());
}

#[tokio::test]
async fn beyond_data_usage_is_rejected_with_its_message_and_sets_overuse() {
    let fake = FakeDataway::start(TOKEN).await.unwrap();
    let (sink, registry) = new_sink(config(vec![fake.url()]));
    fake.set_mode(Mode::beyond_data_usage());
    let message = expect_rejected(sink.write(Category::Metric, &points(2)).await);
    assert!(message.contains("beyondDataUsage"), "{message}");
    let overuse = sample(&metrics_text(&registry), "datakit_data_overuse").unwrap();
    assert!(overuse > 1.6e9, "overuse holds a unix time, got {overuse}");

    fake.set_mode(Mode::Ok);
    sink.write(Category::Metric, &points(2)).await.unwrap();
    assert_eq!(
        sample(&metrics_text(&registry), "datakit_data_overuse"),
        Some(0.0)
    );
}

#[tokio::test]
async fn throttling_and_server_errors_are_unavailable() {
    let fake = FakeDataway::start(TOKEN).await.unwrap();
    let (sink, _) = new_sink(config(vec![fake.url()]));
    for status in [429u16, 500, 502, 503] {
        fake.set_mode(Mode::Status(status));
        let message = expect_unavailable(sink.write(Category::Metric, &points(3)).await);
        assert!(message.contains(&format!("HTTP {status}")), "{message}");
    }
    fake.set_mode(Mode::Ok);
    sink.write(Category::Metric, &points(3)).await.unwrap();
    assert_eq!(fake.points(Category::Metric), points(3));
}

#[tokio::test]
async fn fail_next_fails_only_the_next_requests_and_a_retry_delivers() {
    let fake = FakeDataway::start(TOKEN).await.unwrap();
    let (sink, _) = new_sink(config(vec![fake.url()]));
    fake.fail_next(2, 503);
    let batch = points(5);
    expect_unavailable(sink.write(Category::Network, &batch).await);
    expect_unavailable(sink.write(Category::Network, &batch).await);
    sink.write(Category::Network, &batch).await.unwrap();
    let got = fake.wait_points(Category::Network, 5, WAIT).await.unwrap();
    assert_eq!(got, batch);
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 503, 200]);
}

#[tokio::test]
async fn a_hanging_dataway_is_unavailable_after_the_timeout() {
    let fake = FakeDataway::start(TOKEN).await.unwrap();
    let (sink, registry) = new_sink(DatawayConfig {
        timeout: Duration::from_millis(300),
        ..config(vec![fake.url()])
    });
    fake.set_mode(Mode::Hang);
    let start = Instant::now();
    let message = expect_unavailable(sink.write(Category::Metric, &points(2)).await);
    let elapsed = start.elapsed();
    assert!(message.contains("timed out"), "{message}");
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(fake.requests().len(), 1);
    let text = metrics_text(&registry);
    assert!(
        text.contains(r#"datakit_io_dataway_api_latency_seconds_count{api="/v1/write/metric",status="timeout"} 1"#),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"datakit_io_dataway_point_total{category="metric",status="unknown"}"#
        ),
        Some(2.0)
    );
}

#[tokio::test]
async fn a_closed_connection_is_unavailable() {
    let fake = FakeDataway::start(TOKEN).await.unwrap();
    let (sink, _) = new_sink(config(vec![fake.url()]));
    fake.set_mode(Mode::Close);
    let message = expect_unavailable(sink.write(Category::Metric, &points(2)).await);
    assert!(message.contains(&fake.addr().to_string()), "{message}");
    assert!(fake.points(Category::Metric).is_empty());

    fake.set_mode(Mode::Ok);
    sink.write(Category::Metric, &points(2)).await.unwrap();
    assert_eq!(fake.points(Category::Metric).len(), 2);
}

#[tokio::test]
async fn a_stopped_dataway_is_unavailable_with_connection_refused() {
    let fake = FakeDataway::start(TOKEN).await.unwrap();
    let url = fake.url();
    fake.stop().await;
    let (sink, registry) = new_sink(config(vec![url]));
    let message = expect_unavailable(sink.write(Category::Metric, &points(1)).await);
    assert!(message.to_lowercase().contains("refused"), "{message}");
    let text = metrics_text(&registry);
    assert!(
        text.contains(r#"datakit_io_dataway_api_latency_seconds_count{api="/v1/write/metric",status="connection-refused"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn fans_out_every_body_to_every_url() {
    let a = FakeDataway::start(TOKEN).await.unwrap();
    let b = FakeDataway::start("tkn_second").await.unwrap();
    let (sink, registry) = new_sink(DatawayConfig {
        max_raw_body_size: 4096,
        ..config(vec![a.url(), b.url()])
    });
    let sent = points(60);
    sink.write(Category::Tracing, &sent).await.unwrap();
    assert_eq!(a.points(Category::Tracing), sent);
    assert_eq!(b.points(Category::Tracing), sent);
    assert_eq!(a.requests().len(), b.requests().len());
    let text = metrics_text(&registry);
    assert_eq!(
        sample(
            &text,
            r#"datakit_io_dataway_point_total{category="tracing",status="OK"}"#
        ),
        Some(120.0),
        "counted per URL as Datakit does"
    );

    // One URL down: the batch is unavailable (retried), the other URL got the first body.
    a.clear();
    b.clear();
    b.set_mode(Mode::Status(500));
    expect_unavailable(sink.write(Category::Tracing, &sent).await);
    assert_eq!(
        a.requests().len(),
        1,
        "sending stops at the first failed body"
    );
    assert!(!a.points(Category::Tracing).is_empty());

    // One URL refuses for good: the others are delivered, the batch reports the refusal.
    a.clear();
    b.set_mode(Mode::Status(404));
    let message = expect_rejected(sink.write(Category::Tracing, &sent).await);
    assert!(message.contains("HTTP 404"), "{message}");
    assert_eq!(a.points(Category::Tracing), sent);
}

#[tokio::test]
async fn counts_points_and_bytes_by_status() {
    let fake = FakeDataway::start(TOKEN).await.unwrap();
    let (sink, registry) = new_sink(config(vec![fake.url()]));
    sink.write(Category::Metric, &points(10)).await.unwrap();
    let req = &fake.requests()[0];
    let text = metrics_text(&registry);
    for status in ["OK", "total"] {
        assert_eq!(
            sample(
                &text,
                &format!(
                    r#"datakit_io_dataway_point_total{{category="metric",status="{status}"}}"#
                )
            ),
            Some(10.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                &format!(
                    r#"datakit_io_dataway_point_bytes_total{{category="metric",enc="raw",status="{status}"}}"#
                )
            ),
            Some(req.raw_len as f64)
        );
        assert_eq!(
            sample(
                &text,
                &format!(
                    r#"datakit_io_dataway_point_bytes_total{{category="metric",enc="gzip",status="{status}"}}"#
                )
            ),
            Some(req.body_len as f64)
        );
    }
    assert!(
        text.contains(
            r#"datakit_io_dataway_api_latency_seconds_count{api="/v1/write/metric",status="OK"} 1"#
        ),
        "{text}"
    );
}

#[tokio::test]
async fn fake_dataway_checks_uploads_as_dataway_does() {
    dk_sinks::http::ensure_crypto_provider();
    let fake = FakeDataway::start(TOKEN).await.unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = format!("http://{}", fake.addr());
    let body = dk_proto::pb::encode(&points(2));
    let post = |path: &str, ct: &str, xp: &str| {
        client
            .post(format!("{base}{path}"))
            .header("content-type", ct.to_string())
            .header("x-points", xp.to_string())
            .body(body.clone())
            .send()
    };
    let q = format!("?token={TOKEN}");
    let cases = [
        (
            post(&format!("/v1/write/metric{q}"), CONTENT_TYPE_PROTOBUF, "2").await,
            200,
        ),
        (
            post(&format!("/v1/write/metric{q}"), CONTENT_TYPE_PROTOBUF, "3").await,
            400,
        ),
        (
            post(&format!("/v1/write/metric{q}"), "text/plain", "2").await,
            415,
        ),
        (
            post(
                &format!("/v1/write/metric{q}"),
                CONTENT_TYPE_LINE_PROTOCOL,
                "2",
            )
            .await,
            400,
        ),
        (
            post(&format!("/v1/write/nope{q}"), CONTENT_TYPE_PROTOBUF, "2").await,
            404,
        ),
        (
            post(
                "/v1/write/metric?token=tkn_other",
                CONTENT_TYPE_PROTOBUF,
                "2",
            )
            .await,
            403,
        ),
        (
            post("/v1/write/metric", CONTENT_TYPE_PROTOBUF, "2").await,
            401,
        ),
    ];
    let got: Vec<u16> = cases
        .iter()
        .map(|(r, _)| r.as_ref().unwrap().status().as_u16())
        .collect();
    let want: Vec<u16> = cases.iter().map(|(_, s)| *s).collect();
    assert_eq!(got, want);
    assert_eq!(fake.points(Category::Metric), points(2));
    let recorded: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(recorded, want);
}

#[tokio::test]
async fn wait_points_times_out_with_what_it_got() {
    let fake = FakeDataway::start(TOKEN).await.unwrap();
    let (sink, _) = new_sink(config(vec![fake.url()]));
    sink.write(Category::Metric, &points(2)).await.unwrap();
    let err = fake
        .wait_points(Category::Metric, 3, Duration::from_millis(50))
        .await
        .unwrap_err();
    assert_eq!((err.wanted, err.got), (3, 2));

    let waiter = fake.wait_points(Category::Metric, 4, WAIT);
    let more = points(2);
    let writer = sink.write(Category::Metric, &more);
    let (got, written) = tokio::join!(waiter, writer);
    written.unwrap();
    assert_eq!(got.unwrap().len(), 4);
}

/// Runs tinyproxy in the foreground on a free loopback port.
async fn start_tinyproxy(dir: &std::path::Path) -> (tokio::process::Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.join("tinyproxy.conf");
    std::fs::write(
        &conf,
        format!(
            "# tinyproxy for the Dataway proxy test: loopback only; the test waits for its\n\
             # \"Accepting connections\" log line (LogLevel Info).\n\
             Port {port}\nListen 127.0.0.1\nTimeout 30\nAllow 127.0.0.1\nLogLevel Info\nMaxClients 16\n"
        ),
    )
    .unwrap();
    let mut child = match tokio::process::Command::new("tinyproxy")
        .arg("-d")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!("cannot run tinyproxy: {e}"),
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    for stream in [
        Box::new(out) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
        Box::new(err),
    ] {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let ready = tokio::time::timeout(WAIT, async {
        while let Some(line) = rx.recv().await {
            if line.contains("Accepting connections") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ready, Ok(true), "tinyproxy did not start");
    (child, port)
}

#[tokio::test]
async fn uploads_through_the_configured_http_proxy() {
    if !dk_proto::testing::require_program("tinyproxy", "tinyproxy") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (mut proxy, port) = start_tinyproxy(dir.path()).await;
    let fake = FakeDataway::start(TOKEN).await.unwrap();
    let (sink, _) = new_sink(DatawayConfig {
        http_proxy: Some(format!("http://127.0.0.1:{port}")),
        ..config(vec![fake.url()])
    });
    sink.write(Category::Metric, &points(3)).await.unwrap();
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1);
    assert!(
        reqs[0].header("via").contains("tinyproxy"),
        "request did not pass the proxy: {:?}",
        reqs[0].headers
    );
    assert_eq!(fake.points(Category::Metric), points(3));

    // Without the proxy setting there is no Via header.
    let (direct, _) = new_sink(config(vec![fake.url()]));
    direct.write(Category::Metric, &points(1)).await.unwrap();
    assert_eq!(fake.requests()[1].header("via"), "");
    proxy.kill().await.unwrap();
}

#[tokio::test]
async fn verifies_tls_certificates_unless_insecure() {
    dk_sinks::http::ensure_crypto_provider();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let fake = Arc::new(FakeDataway::start(TOKEN).await.unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = {
        let fake = fake.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let fake = fake.clone();
                tokio::spawn(async move {
                    if let Ok(stream) = acceptor.accept(tcp).await {
                        fake.serve_connection(stream);
                    }
                });
            }
        })
    };
    let url = format!("https://localhost:{port}?token={TOKEN}");

    let (strict, _) = new_sink(config(vec![url.clone()]));
    let message = expect_unavailable(strict.write(Category::Metric, &points(2)).await);
    assert!(message.to_lowercase().contains("certificate"), "{message}");
    assert!(fake.requests().is_empty());

    let (insecure, _) = new_sink(DatawayConfig {
        tls_insecure: true,
        ..config(vec![url])
    });
    insecure.write(Category::Metric, &points(2)).await.unwrap();
    assert_eq!(fake.points(Category::Metric), points(2));
    server.abort();
}

#[tokio::test]
async fn refuses_bad_configuration_at_construction() {
    let mut registry = Registry::default();
    let no_urls = DatawaySink::new(config(vec![]), &mut registry).unwrap_err();
    assert!(no_urls.to_string().contains("[dataway] urls"), "{no_urls}");
    let bad_scheme =
        DatawaySink::new(config(vec!["ftp://h?token=tkn_x".into()]), &mut registry).unwrap_err();
    assert!(bad_scheme.to_string().contains("ftp"), "{bad_scheme}");
    let bad_proxy = DatawaySink::new(
        DatawayConfig {
            http_proxy: Some("not a url".into()),
            ..config(vec!["https://h?token=tkn_x".into()])
        },
        &mut registry,
    )
    .unwrap_err();
    assert!(bad_proxy.to_string().contains("proxy"), "{bad_proxy}");
}

/// The `PBPoints` message delivery hands a `v2` sink: queued records, concatenated.
fn records_message(records: &[&[Point]]) -> Vec<u8> {
    records
        .iter()
        .flat_map(|r| dk_proto::pb::encode(r))
        .collect()
}

#[tokio::test]
async fn a_body_of_concatenated_records_delivers_exactly_the_points_fed_in_order() {
    let fake = FakeDataway::start(TOKEN).await.unwrap();
    let (sink, registry) = new_sink(DatawayConfig {
        max_raw_body_size: 4096,
        ..config(vec![fake.url()])
    });
    let mut sent = points(200);
    sent.insert(
        77,
        Point::new("big", 1).field("blob", Value::S("x".repeat(10_000))),
    );
    // Records of one point, of a few, and one far larger than max_raw_body_size.
    let (a, rest) = sent.split_at(1);
    let (b, rest) = rest.split_at(3);
    let (c, rest) = rest.split_at(120);
    let message = records_message(&[a, b, c, rest]);
    assert!(dk_proto::pb::encode(c).len() > 4096);
    sink.write_protobuf(Category::Metric, &message, sent.len())
        .await
        .unwrap();
    let from_records = fake.requests();
    let big = sent.remove(77);
    assert_eq!(fake.points(Category::Metric), sent);
    assert!(from_records.len() >= 5, "{} bodies", from_records.len());
    for r in &from_records {
        assert_eq!(r.status, 200);
        assert!(r.raw_len <= 4096, "raw body of {}", r.raw_len);
        assert_eq!(r.header("x-points"), r.points.len().to_string());
    }
    let text = metrics_text(&registry);
    let skipped = r#"datakit_io_dataway_skipped_point_total{category="metric"} 1"#;
    assert!(text.lines().any(|l| l == skipped), "{text}");

    // The same bodies as writing the points themselves.
    fake.clear();
    sent.insert(77, big);
    sink.write(Category::Metric, &sent).await.unwrap();
    let shape = |reqs: &[dk_sinks::testing::Request]| -> Vec<(usize, Vec<Point>)> {
        reqs.iter().map(|r| (r.raw_len, r.points.clone())).collect()
    };
    assert_eq!(shape(&fake.requests()), shape(&from_records));
}

#[tokio::test]
async fn v1_bodies_cut_from_delivered_lines_are_those_of_the_points_themselves() {
    let fake = FakeDataway::start(TOKEN).await.unwrap();
    let (sink, registry) = new_sink(DatawayConfig {
        max_raw_body_size: 4096,
        content_encoding: Encoding::V1,
        ..config(vec![fake.url()])
    });
    let mut sent = points(200);
    sent.insert(
        77,
        Point::new("big", 1).field("blob", Value::S("x".repeat(10_000))),
    );
    // What delivery hands a v1 sink: each queued point's line protocol, from the borrowed
    // point, ending in a newline.
    let mut lines = Vec::new();
    dk_proto::pb::decode_each(&records_message(&[&sent]), |p| {
        dk_proto::lineproto::encode_point_ref(p, &mut lines);
        lines.push(b'\n');
    })
    .unwrap();
    sink.write_lines(Category::Metric, &lines, sent.len())
        .await
        .unwrap();
    let from_lines = fake.requests();
    assert!(from_lines.len() >= 5, "{} bodies", from_lines.len());
    for r in &from_lines {
        assert_eq!(r.status, 200);
        assert!(r.raw_len <= 4096, "raw body of {}", r.raw_len);
        assert_eq!(
            r.header("content-type"),
            CONTENT_TYPE_LINE_PROTOCOL,
            "a v1 body"
        );
    }
    let text = metrics_text(&registry);
    let skipped = r#"datakit_io_dataway_skipped_point_total{category="metric"} 1"#;
    assert!(text.lines().any(|l| l == skipped), "{text}");
    let big = sent.remove(77);
    assert_eq!(fake.points(Category::Metric), sent);

    // Byte for byte the bodies of writing the points themselves.
    fake.clear();
    sent.insert(77, big);
    sink.write(Category::Metric, &sent).await.unwrap();
    let shape = |reqs: &[dk_sinks::testing::Request]| -> Vec<(usize, Vec<Point>)> {
        reqs.iter().map(|r| (r.raw_len, r.points.clone())).collect()
    };
    assert_eq!(shape(&fake.requests()), shape(&from_lines));
}

#[tokio::test]
async fn v2_takes_protobuf_and_v1_takes_lines_but_profiles_as_protobuf() {
    use dk_delivery::SinkInput;
    let (v2, _) = new_sink(config(vec!["http://127.0.0.1:9?token=t".into()]));
    assert_eq!(
        v2.input(1000),
        SinkInput::Protobuf {
            points: 1000,
            bytes: usize::MAX
        }
    );
    let (v1, _) = new_sink(DatawayConfig {
        content_encoding: Encoding::V1,
        ..config(vec!["http://127.0.0.1:9?token=t".into()])
    });
    assert_eq!(
        v1.input_for(Category::Logging, 1000),
        SinkInput::Lines {
            points: 1000,
            bytes: usize::MAX
        }
    );
    for sink in [&v1, &v2] {
        assert_eq!(
            sink.input_for(Category::Profiling, 1000),
            SinkInput::Protobuf {
                points: 1000,
                bytes: usize::MAX
            }
        );
    }

    // Handed protobuf anyway, v1 sends line protocol.
    let fake = FakeDataway::start(TOKEN).await.unwrap();
    let (v1, _) = new_sink(DatawayConfig {
        content_encoding: Encoding::V1,
        ..config(vec![fake.url()])
    });
    let sent = points(5);
    v1.write_protobuf(Category::Logging, &records_message(&[&sent]), 5)
        .await
        .unwrap();
    assert_eq!(
        fake.requests()[0].header("content-type"),
        CONTENT_TYPE_LINE_PROTOCOL
    );
    assert_eq!(fake.points(Category::Logging), sent);
    let message = expect_rejected(
        v1.write_protobuf(Category::Logging, b"\x0a\x05abc", 1)
            .await,
    );
    assert!(message.contains("not valid protobuf"), "{message}");
}

#[tokio::test]
async fn delivery_uploads_queued_records_to_dataway_as_they_were_fed() {
    delivery_uploads_queued_records_as_they_were_fed(Encoding::V2).await;
}

#[tokio::test]
async fn delivery_uploads_queued_records_to_dataway_as_they_were_fed_in_line_protocol() {
    delivery_uploads_queued_records_as_they_were_fed(Encoding::V1).await;
}

async fn delivery_uploads_queued_records_as_they_were_fed(encoding: Encoding) {
    let fake = FakeDataway::start(TOKEN).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut registry = Registry::default();
    let sink = DatawaySink::new(
        DatawayConfig {
            max_raw_body_size: 2048,
            content_encoding: encoding,
            ..config(vec![fake.url()])
        },
        &mut registry,
    )
    .unwrap();
    let delivery = dk_delivery::Delivery::start(
        dk_delivery::DeliveryConfig {
            max_cache_count: 40,
            queue: dk_delivery::QueueSettings::new(dir.path()),
            ..dk_delivery::DeliveryConfig::default()
        },
        vec![Arc::new(sink)],
        &mut registry,
    )
    .unwrap();
    let sent: Vec<Point> = (0..150)
        .map(|i| {
            Point::new("cpu", 1_700_000_000_000_000_000 + i)
                .tag("host", "web-1")
                .field("usage", Value::F(i as f64 / 4.0))
                .field("n", Value::I(i))
        })
        .collect();
    for record in [&sent[..1], &sent[1..60], &sent[60..]] {
        let outcome = delivery
            .feed(
                Category::Metric,
                "test",
                dk_proto::FeedOpts::default(),
                record.to_vec(),
            )
            .await
            .unwrap();
        assert_eq!(outcome.accepted as usize, record.len());
    }
    let mut got = fake.wait_points(Category::Metric, 150, WAIT).await.unwrap();
    // Two bodies are in flight at once, so bodies may arrive in either order (as with
    // Datakit's parallel flush workers); within a body the points keep queue order.
    got.sort_by_key(|p| p.time);
    assert_eq!(got, sent);
    let content_type = match encoding {
        Encoding::V1 => CONTENT_TYPE_LINE_PROTOCOL,
        Encoding::V2 => CONTENT_TYPE_PROTOBUF,
    };
    for r in fake.requests() {
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), content_type);
        assert!(r.raw_len <= 2048, "raw body of {}", r.raw_len);
        assert!(r.points.len() <= 40, "{} points in a body", r.points.len());
    }
    delivery.shutdown().await.unwrap();
}

/// Host time now, in Unix seconds.
fn host_secs() -> i64 {
    dk_delivery::host_now_secs()
}

#[tokio::test]
async fn the_clock_reads_the_first_urls_v1_ntp_with_the_token_and_the_agents_headers() {
    let first = FakeDataway::start(TOKEN).await.unwrap();
    let second = FakeDataway::start(TOKEN).await.unwrap();
    first.set_clock_skew(3_600);
    second.set_clock_skew(-50);
    let (sink, _registry) = new_sink(config(vec![first.url(), second.url()]));
    let clock = sink.clock().unwrap();
    let diff = clock.time_diff().await.unwrap();
    assert!((3_599..=3_601).contains(&diff), "measured {diff}");
    let reqs = first.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].category, "ntp");
    assert_eq!(reqs[0].status, 200);
    assert_eq!(reqs[0].query, format!("token={TOKEN}"));
    assert!(
        reqs[0].header("user-agent").starts_with("datakit-linux-"),
        "{:?}",
        reqs[0].headers
    );
    assert!(second.requests().is_empty(), "only the first URL is asked");
}

#[tokio::test]
async fn the_clock_measures_against_the_host_clock_whatever_offset_is_in_force() {
    let fake = FakeDataway::start(TOKEN).await.unwrap();
    fake.set_clock_skew(600);
    let (sink, _registry) = new_sink(config(vec![fake.url()]));
    let clock = sink.clock().unwrap();
    // As after a first sync: "now" for points is already 600 s ahead.
    dk_proto::clock::set_offset_ns(600_000_000_000);
    let diff = clock.time_diff().await;
    dk_proto::clock::set_offset_ns(0);
    let diff = diff.unwrap();
    assert!((599..=601).contains(&diff), "measured {diff}");
}

#[tokio::test]
async fn the_clock_names_the_endpoint_and_status_when_dataway_refuses() {
    let fake = FakeDataway::start(TOKEN).await.unwrap();
    let (sink, _registry) = new_sink(config(vec![fake.url()]));
    let clock = sink.clock().unwrap();
    fake.fail_next(1, 503);
    let err = clock.time_diff().await.unwrap_err().to_string();
    assert!(
        err.contains(&format!("http://{}/v1/ntp answered HTTP 503", fake.addr())),
        "{err}"
    );
    fake.set_mode(Mode::StatusBody(200, "{\"time\":1}".into()));
    let err = clock.time_diff().await.unwrap_err().to_string();
    assert!(err.contains("not {\"timestamp_sec\""), "{err}");
    fake.set_mode(Mode::Ok);
    let (other, _r) = new_sink(config(vec![format!(
        "http://{}?token=tkn_other",
        fake.addr()
    )]));
    let err = other
        .clock()
        .unwrap()
        .time_diff()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("HTTP 403"), "{err}");
}

/// Delivery uploading to `fake`, with Datakit's 2 h time correction and a clock synced from
/// `fake` every minute from a 30 s difference.
async fn delivery_synced_with(
    fake: &FakeDataway,
    dir: &std::path::Path,
) -> (dk_delivery::Delivery, Registry) {
    let mut registry = Registry::default();
    let sink = DatawaySink::new(config(vec![fake.url()]), &mut registry).unwrap();
    let clock = sink.clock().unwrap();
    let delivery = dk_delivery::Delivery::start(
        dk_delivery::DeliveryConfig {
            queue: dk_delivery::QueueSettings::new(dir),
            time_correction: Some(dk_delivery::TIME_CORRECTION_WINDOW),
            ..dk_delivery::DeliveryConfig::default()
        },
        vec![Arc::new(sink)],
        &mut registry,
    )
    .unwrap();
    delivery.spawn_clock_sync(
        dk_delivery::ClockSync {
            interval: Duration::from_secs(60),
            threshold: Duration::from_secs(30),
        },
        move || {
            let clock = clock.clone();
            async move { clock.time_diff().await }
        },
    );
    (delivery, registry)
}

/// Waits until the first `/v1/ntp` answer was applied (the offset leaves `from`) or `WAIT`.
async fn wait_offset_change(delivery: &dk_delivery::Delivery, fake: &FakeDataway, from: i64) {
    fake.wait_requests(1, WAIT).await.unwrap();
    let deadline = Instant::now() + WAIT;
    while delivery.clock_offset_secs() == from {
        assert!(Instant::now() < deadline, "the offset stayed {from}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn points_fed_while_dataway_is_three_hours_ahead_get_dataways_time_and_keep_theirs() {
    let fake = FakeDataway::start(TOKEN).await.unwrap();
    fake.set_clock_skew(3 * 3_600);
    let dir = tempfile::tempdir().unwrap();
    let (delivery, registry) = delivery_synced_with(&fake, dir.path()).await;
    wait_offset_change(&delivery, &fake, 0).await;
    let offset = delivery.clock_offset_secs();
    assert!((10_799..=10_801).contains(&offset), "offset {offset}");

    // Stamped by the host clock, 3 h behind Dataway's: out of the 2 h window.
    let host_time = host_secs() * 1_000_000_000;
    let point = Point::new("cpu", host_time).field("usage", Value::F(1.5));
    delivery
        .feed(
            Category::Metric,
            "cpu",
            dk_proto::FeedOpts::default(),
            vec![point],
        )
        .await
        .unwrap();
    let got = fake.wait_points(Category::Metric, 1, WAIT).await.unwrap();
    let shift = (got[0].time - host_time) / 1_000_000_000;
    assert!((10_798..=10_802).contains(&shift), "moved by {shift}s");
    assert_eq!(got[0].get_field("__orig_time"), Some(&Value::I(host_time)));

    let text = metrics_text(&registry);
    assert_eq!(sample(&text, "datakit_ntp_sync_total"), Some(1.0), "{text}");
    let diff = sample(&text, "datakit_ntp_time_diff").unwrap();
    assert!((10_799.0..=10_801.0).contains(&diff), "{text}");
    delivery.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_difference_under_the_threshold_leaves_point_times_as_given() {
    let fake = FakeDataway::start(TOKEN).await.unwrap();
    fake.set_clock_skew(10);
    let dir = tempfile::tempdir().unwrap();
    let (delivery, registry) = delivery_synced_with(&fake, dir.path()).await;
    fake.wait_requests(1, WAIT).await.unwrap();
    // The answer is applied right after it arrives: wait for the gauge it sets.
    let deadline = Instant::now() + WAIT;
    while sample(&metrics_text(&registry), "datakit_ntp_time_diff") == Some(0.0) {
        assert!(Instant::now() < deadline, "no measurement applied");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(delivery.clock_offset_secs(), 0);

    // Three hours old by the host clock: corrected to the host's now, not Dataway's.
    let old = (host_secs() - 3 * 3_600) * 1_000_000_000;
    let point = Point::new("cpu", old).field("usage", Value::F(1.5));
    delivery
        .feed(
            Category::Metric,
            "cpu",
            dk_proto::FeedOpts::default(),
            vec![point],
        )
        .await
        .unwrap();
    let got = fake.wait_points(Category::Metric, 1, WAIT).await.unwrap();
    let lag = host_secs() - got[0].time / 1_000_000_000;
    assert!(
        (0..=2).contains(&lag),
        "time is {lag}s behind the host clock"
    );
    assert_eq!(got[0].get_field("__orig_time"), Some(&Value::I(old)));
    assert_eq!(
        sample(&metrics_text(&registry), "datakit_ntp_sync_total"),
        Some(0.0)
    );
    delivery.shutdown().await.unwrap();
}

/// One election request to the fake: (HTTP status, `content` of the answer).
async fn elect(fake: &FakeDataway, route: &str, ns: &str, id: &str) -> (u16, serde_json::Value) {
    let url = format!(
        "http://{}/v1/{route}?token={}&namespace={ns}&id={id}",
        fake.addr(),
        fake.token()
    );
    dk_sinks::http::ensure_crypto_provider();
    let resp = reqwest::Client::new().post(url).send().await.unwrap();
    let status = resp.status().as_u16();
    let body: serde_json::Value =
        serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap_or_default();
    (status, body["content"].clone())
}

#[tokio::test]
async fn the_fake_elects_one_leader_per_namespace_and_hands_over_when_its_heartbeats_stop() {
    let fake = FakeDataway::start(TOKEN).await.unwrap();
    // A lease long enough for a busy machine while the leader is expected to hold it.
    fake.set_election_timing(Duration::from_secs(1), Duration::from_secs(30));
    let (s, a) = elect(&fake, "election", "ns1", "a").await;
    assert_eq!((s, a["status"].as_str()), (200, Some("success")), "{a}");
    assert_eq!(a["interval"], 1);
    let (_, b) = elect(&fake, "election", "ns1", "b").await;
    assert_eq!(b["status"], "defeat");
    assert_eq!(b["incumbency_id"], "a");
    // Another namespace has its own leader.
    let (_, c) = elect(&fake, "election", "ns2", "b").await;
    assert_eq!(c["status"], "success");
    let (_, hb) = elect(&fake, "election/heartbeat", "ns1", "a").await;
    assert_eq!(hb["status"], "success");
    let (_, hb_b) = elect(&fake, "election/heartbeat", "ns1", "b").await;
    assert_eq!(hb_b["status"], "defeat");
    assert_eq!(fake.election_leader("ns1").as_deref(), Some("a"));
    // No heartbeat for longer than the lease: the next candidate wins, the old leader's
    // heartbeat is a defeat.
    fake.set_election_timing(Duration::from_secs(1), Duration::from_millis(50));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while fake.election_leader("ns1").is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the lease never ran out"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (_, b) = elect(&fake, "election", "ns1", "b").await;
    assert_eq!(b["status"], "success");
    // The new leader's lease is fresh: long again, so it holds while `a` asks.
    fake.set_election_timing(Duration::from_secs(1), Duration::from_secs(30));
    let (_, hb) = elect(&fake, "election/heartbeat", "ns1", "a").await;
    assert_eq!(hb["status"], "defeat");
    assert_eq!(hb["incumbency_id"], "b");
    // The token is checked as for uploads.
    let url = format!(
        "http://{}/v1/election?token=tkn_other&namespace=ns1&id=c",
        fake.addr()
    );
    let resp = reqwest::Client::new().post(url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let reqs = fake.requests();
    assert_eq!(reqs.iter().filter(|r| r.category == "heartbeat").count(), 3);
}

/// A profile point as the pyroscope input makes it.
fn profile_point(pprof: &[u8]) -> Point {
    let event = serde_json::json!({
        "format": "pprof", "profiler": "pyroscope", "attachments": ["auto.pprof"],
        "language": "python", "tags_profiler": "service:app",
        "start": "2023-11-14T22:13:20Z", "end": "2023-11-14T22:13:30Z",
    });
    Point::new("pyroscope", 1_700_000_010_000_000_000)
        .tag("service", "app")
        .field(dk_proto::profile::EVENT_FIELD, Value::S(event.to_string()))
        .field("auto.pprof", Value::D(pprof.to_vec()))
}

#[tokio::test]
async fn uploads_each_profile_as_datakits_multipart_to_the_profiling_upload() {
    let dw = FakeDataway::start(TOKEN).await.unwrap();
    let (sink, registry) = new_sink(config(vec![dw.url()]));
    let pprofs: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 1000 + usize::from(i)]).collect();
    let pts: Vec<Point> = pprofs.iter().map(|p| profile_point(p)).collect();
    // Through the protobuf path delivery uses with v2, as records come from the queue.
    let message = dk_proto::pb::encode(&pts);
    sink.write_protobuf(Category::Profiling, &message, pts.len())
        .await
        .unwrap();
    let got = dw.wait_points(Category::Profiling, 3, WAIT).await.unwrap();
    for (point, pprof) in got.iter().zip(&pprofs) {
        assert_eq!(
            point.get_field("auto.pprof"),
            Some(&Value::D(pprof.clone()))
        );
        let Some(Value::S(json)) = point.get_field(dk_proto::profile::EVENT_FIELD) else {
            panic!("{point:?}")
        };
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["language"], "python");
    }
    let reqs = dw.requests();
    assert_eq!(reqs.len(), 3, "one upload per profile");
    for r in &reqs {
        assert_eq!(r.category, "profiling");
        assert_eq!(r.status, 200);
        assert!(
            r.header("content-type")
                .starts_with("multipart/form-data; boundary=")
        );
        assert_eq!(r.header("x-datakit-version"), "1.84.1");
        assert_eq!(r.header("content-encoding"), "", "profiles are not gzipped");
        assert!(r.query.contains(TOKEN));
    }
    let text = metrics_text(&registry);
    assert_eq!(
        sample(
            &text,
            r#"datakit_io_dataway_point_total{category="profiling",status="OK"}"#
        ),
        Some(3.0),
        "{text}"
    );
}

#[tokio::test]
async fn a_failing_profiling_upload_is_retried_and_a_point_that_is_no_profile_is_dropped() {
    let dw = FakeDataway::start(TOKEN).await.unwrap();
    let (sink, _registry) = new_sink(config(vec![dw.url()]));
    let pts = vec![profile_point(b"pprof")];
    dw.fail_next(1, 503);
    expect_unavailable(sink.write(Category::Profiling, &pts).await);
    sink.write(Category::Profiling, &pts).await.unwrap();
    assert_eq!(
        dw.wait_points(Category::Profiling, 1, WAIT)
            .await
            .unwrap()
            .len(),
        1
    );
    let not_profile = vec![Point::new("pyroscope", 1).field("x", Value::I(1))];
    let msg = expect_rejected(sink.write(Category::Profiling, &not_profile).await);
    assert!(msg.contains("event.json"), "{msg}");
    // The fake refuses what Dataway refuses: a wrong token, a multipart without event.json.
    let (bad, _r) = new_sink(config(vec![format!(
        "http://{}?token=tkn_other",
        dw.addr()
    )]));
    let msg = expect_rejected(bad.write(Category::Profiling, &pts).await);
    assert!(msg.contains("403"), "{msg}");
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("http://{}/v1/upload/profiling?token={TOKEN}", dw.addr()))
        .header("content-type", "multipart/form-data; boundary=xx")
        .body("--xx\r\nContent-Disposition: form-data; name=\"auto.pprof\"; filename=\"auto.pprof\"\r\n\r\nP\r\n--xx--\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.text().await.unwrap().contains("event.json"));
}
