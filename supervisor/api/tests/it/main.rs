//! Router tests through `tower::ServiceExt::oneshot`, plus one real-socket test of `serve`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode, header};
use bytes::Bytes;
use dk_api::{
    AgentInfo, ApiConfig, ApiMetrics, ApiState, CONTENT_TYPE_PBJSON, CONTENT_TYPE_PROTOBUF,
    FeedError, Feeder, LastErrors, WorkerMetrics, router, serve,
};
use dk_proto::{Category, FeedOpts, Point, Value};
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use prometheus_client::registry::Registry;
use tower::ServiceExt;

const LOOPBACK: ([u8; 4], u16) = ([127, 0, 0, 1], 40000);
const EXTERNAL: ([u8; 4], u16) = ([10, 0, 0, 7], 40000);

type Call = (Category, String, FeedOpts, Vec<Point>);

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Accept,
    Busy,
    TooLarge,
    Hang,
    Panic,
}

struct Recorder {
    mode: Mode,
    calls: Mutex<Vec<Call>>,
}

impl Recorder {
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

impl Feeder for Recorder {
    fn feed(
        &self,
        category: Category,
        input: String,
        opts: FeedOpts,
        points: Vec<Point>,
    ) -> BoxFuture<'_, Result<(), FeedError>> {
        Box::pin(async move {
            match self.mode {
                Mode::Accept => {
                    if let Ok(mut c) = self.calls.lock() {
                        c.push((category, input, opts, points));
                    }
                    Ok(())
                }
                Mode::Busy => Err(FeedError::Busy("queue of metric is full".into())),
                Mode::TooLarge => Err(FeedError::Rejected(
                    "record larger than the metric queue cap".into(),
                )),
                Mode::Hang => std::future::pending().await,
                Mode::Panic => panic!("feeder exploded"),
            }
        })
    }
}

struct Harness {
    app: Router,
    feeder: Arc<Recorder>,
    last_errors: Arc<LastErrors>,
    state: ApiState,
}

fn harness_with(config: ApiConfig, mode: Mode) -> Harness {
    let mut reg = Registry::default();
    let last_errors = LastErrors::new(&mut reg);
    let metrics = Arc::new(ApiMetrics::new(&mut reg));
    let feeder = Arc::new(Recorder {
        mode,
        calls: Mutex::new(Vec::new()),
    });
    let state = ApiState {
        routes: None,
        feeder: feeder.clone(),
        info: Arc::new(AgentInfo {
            version: "1.84.1".into(),
            commit: "abc123".into(),
            hostname: "host-1".into(),
            os_arch: "linux/amd64".into(),
            started: Instant::now(),
        }),
        config: Arc::new(config),
        last_errors: last_errors.clone(),
        metrics,
        registry: Arc::new(reg),
        worker_metrics: {
            let w = Arc::new(WorkerMetrics::default());
            w.set(
                "statsd",
                "# TYPE datakit_test_worker_packets counter\ndatakit_test_worker_packets_total 3\n"
                    .into(),
            );
            w
        },
        election: None,
    };
    Harness {
        app: router(state.clone()),
        feeder,
        last_errors,
        state,
    }
}

fn harness() -> Harness {
    harness_with(ApiConfig::default(), Mode::Accept)
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    fn error_code(&self) -> String {
        self.json()["error_code"].as_str().unwrap_or("").to_string()
    }
}

async fn send_from(app: &Router, mut req: Request<Body>, peer: impl Into<SocketAddr>) -> Reply {
    req.extensions_mut().insert(ConnectInfo(peer.into()));
    let resp = app
        .clone()
        .oneshot(req)
        .await
        .unwrap_or_else(|e| match e {});
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    Reply {
        status,
        headers,
        body,
    }
}

async fn send(app: &Router, req: Request<Body>) -> Reply {
    send_from(app, req, LOOPBACK).await
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap_or_default()
}

fn post(uri: &str, content_type: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut b = Request::post(uri);
    if let Some(ct) = content_type {
        b = b.header(header::CONTENT_TYPE, ct);
    }
    b.body(body.into()).unwrap_or_default()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap_or_default();
    gz.finish().unwrap_or_default()
}

const T: i64 = 1_700_000_000_000_000_000;
const LP: &str = "cpu,host=a usage=1.5 1700000000000000000";

fn cpu_point() -> Point {
    Point::new("cpu", T)
        .tag("host", "a")
        .field("usage", Value::F(1.5))
}

// ---------------------------------------------------------------- ping, ntp, headers

#[tokio::test]
async fn ping_answers_wrapped_identity_with_x_datakit_header() {
    let h = harness();
    let r = send_from(&h.app, get("/v1/ping"), EXTERNAL).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-datakit"), "1.84.1/host-1");
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.header("x-content-type-options"), "nosniff");
    let j = r.json();
    assert_eq!(j["content"]["version"], "1.84.1");
    assert_eq!(j["content"]["host"], "host-1");
    assert_eq!(j["content"]["commit"], "abc123");
    let uptime = j["content"]["uptime"].as_str().unwrap_or("");
    assert!(
        dk_proto::duration::parse(uptime).is_ok(),
        "uptime {uptime:?}"
    );
    // Field order is Datakit's.
    assert!(
        r.text().starts_with(r#"{"content":{"version":"#),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn ntp_answers_unwrapped_unix_seconds() {
    let h = harness();
    let r = send_from(&h.app, get("/v1/ntp"), EXTERNAL).await;
    assert_eq!(r.status, StatusCode::OK);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let ts = r.json()["timestamp_sec"].as_u64().unwrap_or(0);
    assert!(ts.abs_diff(now) <= 2, "ts {ts} now {now}");
    assert_eq!(r.json().as_object().map(|o| o.len()), Some(1));
}

// ---------------------------------------------------------------- write: feed

#[tokio::test]
async fn line_protocol_write_feeds_normalised_points_under_the_default_name() {
    let h = harness();
    let r = send(&h.app, post("/v1/write/metric", None, LP)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.body.is_empty());
    let calls = h.feeder.calls();
    assert_eq!(calls.len(), 1);
    let (cat, name, opts, points) = &calls[0];
    assert_eq!(*cat, Category::Metric);
    assert_eq!(name, "v1-write.metric");
    assert_eq!(*opts, FeedOpts::default());
    assert_eq!(points, &vec![cpu_point()]);
}

#[tokio::test]
async fn input_and_global_tag_params_reach_the_feeder() {
    let h = harness();
    let r = send(
        &h.app,
        post(
            "/v1/write/logging?input=nginx&ignore_global_tags=1",
            None,
            "nginx message=\"hi\" 1700000000000000000",
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = send(
        &h.app,
        post(
            "/v1/write/metric?ignore_global_host_tags=1&global_election_tags=1",
            None,
            LP,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let calls = h.feeder.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].0, Category::Logging);
    assert_eq!(calls[0].1, "v1-write.nginx");
    assert_eq!(
        calls[0].2,
        FeedOpts {
            election: false,
            no_global_tags: true
        }
    );
    // Logging normalisation adds the default status (as a string field).
    assert_eq!(
        calls[0].3[0].get_field("status"),
        Some(&Value::S("info".into()))
    );
    assert_eq!(
        calls[1].2,
        FeedOpts {
            election: true,
            no_global_tags: false
        }
    );
}

#[tokio::test]
async fn json_pbjson_and_protobuf_bodies_decode_to_the_same_points() {
    let h = harness();
    let json = r#"[{"measurement":"cpu","tags":{"host":"a"},"fields":{"usage":1.5},"time":1700000000000000000}]"#;
    let r = send(
        &h.app,
        post("/v1/write/metric", Some("application/json"), json),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "json: {}", r.text());

    let pb = dk_proto::pb::encode(&[cpu_point()]);
    let r = send(
        &h.app,
        post("/v1/write/metric", Some(CONTENT_TYPE_PROTOBUF), pb),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "protobuf: {}", r.text());

    let calls = h.feeder.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].3, vec![cpu_point()]);
    assert_eq!(calls[1].3, vec![cpu_point()]);
}

#[tokio::test]
async fn gzip_bodies_decode_by_header_or_query() {
    let h = harness();
    let mut req = post("/v1/write/metric", None, gzip(LP.as_bytes()));
    req.headers_mut().insert(
        header::CONTENT_ENCODING,
        "gzip".parse().unwrap_or_else(|_| unreachable!()),
    );
    let r = send(&h.app, req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = send(
        &h.app,
        post("/v1/write/metric?encoding=gzip", None, gzip(LP.as_bytes())),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let calls = h.feeder.calls();
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c.3 == vec![cpu_point()]));
}

#[tokio::test]
async fn precision_param_scales_timestamps_and_absent_means_auto() {
    let h = harness();
    for q in ["?precision=s", ""] {
        let r = send(
            &h.app,
            post(
                &format!("/v1/write/metric{q}"),
                None,
                "cpu usage=1 1700000000",
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.text());
    }
    let r = send(
        &h.app,
        post(
            "/v1/write/metric?precision=ms",
            None,
            "cpu usage=1 1700000000000",
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let times: Vec<i64> = h.feeder.calls().iter().map(|c| c.3[0].time).collect();
    assert_eq!(times, vec![T, T, T]);
}

#[tokio::test]
async fn dry_run_decodes_but_does_not_feed() {
    let h = harness();
    let r = send(&h.app, post("/v1/write/metric?dry=1", None, LP)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(h.feeder.calls().is_empty());
}

#[tokio::test]
async fn rum_points_get_location_and_ip_tags() {
    let h = harness();
    let mut req = post(
        "/v1/write/rum",
        None,
        "view,app_id=x duration=1i 1700000000000000000",
    );
    req.headers_mut().insert(
        "x-forwarded-for",
        "1.2.3.4".parse().unwrap_or_else(|_| unreachable!()),
    );
    let r = send(&h.app, req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let calls = h.feeder.calls();
    let p = &calls[0].3[0];
    assert_eq!(p.get_tag("ip"), Some("1.2.3.4"));
    assert_eq!(p.get_tag("city"), Some("unknown"));
    assert_eq!(p.get_tag("isp"), Some("unknown"));
}

// ---------------------------------------------------------------- write: echo

#[tokio::test]
async fn echo_json_returns_the_normalised_points_of_a_line_protocol_body() {
    let h = harness();
    let r = send(&h.app, post("/v1/write/metric?echo=json", None, LP)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.body, dk_proto::json::encode(&[cpu_point()]));
    assert_eq!(h.feeder.calls().len(), 1);
}

#[tokio::test]
async fn echo_lp_returns_line_protocol_of_json_and_protobuf_bodies() {
    let h = harness();
    let expected = dk_proto::lineproto::encode(&[cpu_point()]);
    let json = r#"[{"measurement":"cpu","tags":{"host":"a"},"fields":{"usage":1.5},"time":1700000000000000000}]"#;
    let r = send(
        &h.app,
        post("/v1/write/metric?echo=lp", Some("application/json"), json),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.body, expected);

    let pb = dk_proto::pb::encode(&[cpu_point()]);
    let r = send(
        &h.app,
        post(
            "/v1/write/metric?echo_line_proto=1&dry=1",
            Some(CONTENT_TYPE_PROTOBUF),
            pb,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.text(), LP);
}

// ---------------------------------------------------------------- write: errors

#[tokio::test]
async fn unknown_and_unwritable_categories_are_invalid() {
    let h = harness();
    for cat in ["nope", "profiling", "dialtesting", "metrics", "M"] {
        let r = send(&h.app, post(&format!("/v1/write/{cat}"), None, LP)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{cat}");
        assert_eq!(r.error_code(), "datakit.invalidCategory", "{cat}");
    }
    assert!(h.feeder.calls().is_empty());
}

#[tokio::test]
async fn empty_body_and_no_points_are_rejected() {
    let h = harness();
    let r = send(&h.app, post("/v1/write/metric", None, "")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "datakit.emptyBody");
    let r = send(&h.app, post("/v1/write/metric", None, "# only a comment\n")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert_eq!(r.error_code(), "datakit.noPoints");
}

#[tokio::test]
async fn decode_errors_carry_the_parser_message() {
    let h = harness();
    let r = send(&h.app, post("/v1/write/metric", None, "cpu usage=")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "datakit.invalidLinePoint");
    let msg = r.json()["message"].as_str().unwrap_or("").to_string();
    assert!(msg.starts_with("lineproto parse error"), "{msg}");

    let r = send(
        &h.app,
        post("/v1/write/metric", Some("application/json"), "{nope"),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "datakit.invalidJsonPoint");
    let r = send(
        &h.app,
        post("/v1/write/metric", Some(CONTENT_TYPE_PBJSON), "[1]"),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "datakit.invalidJsonPoint");
    let r = send(
        &h.app,
        post(
            "/v1/write/metric",
            Some(CONTENT_TYPE_PROTOBUF),
            vec![0xffu8, 0xff, 0xff],
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "datakit.invalidProtobufPoint");
    assert!(h.feeder.calls().is_empty());
}

#[tokio::test]
async fn bad_or_unsupported_encodings_fail_to_decode() {
    let h = harness();
    let r = send(&h.app, post("/v1/write/metric?encoding=gzip", None, LP)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "datakit.decodeBodyFailed");
    let r = send(&h.app, post("/v1/write/metric?encoding=br", None, LP)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "datakit.decodeBodyFailed");
}

#[tokio::test]
async fn bodies_over_the_cap_are_413_compressed_or_not() {
    let h = harness_with(
        ApiConfig {
            max_body_bytes: 1024,
            ..ApiConfig::default()
        },
        Mode::Accept,
    );
    let big = format!("{LP}\n").repeat(100);
    let r = send(&h.app, post("/v1/write/metric", None, big.clone())).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.error_code(), "datakit.bodyTooLarge");
    // Chunked, without Content-Length.
    let stream = futures::stream::iter(
        big.as_bytes()
            .chunks(100)
            .map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let r = send(
        &h.app,
        post("/v1/write/metric", None, Body::from_stream(stream)),
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    // A small gzip body that inflates past the cap.
    let gz = gzip(big.as_bytes());
    assert!(gz.len() < 1024);
    let r = send(&h.app, post("/v1/write/metric?encoding=gzip", None, gz)).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.error_code(), "datakit.bodyTooLarge");
    assert!(h.feeder.calls().is_empty());
}

#[tokio::test]
async fn strict_turns_any_warning_into_400_even_when_set_to_false() {
    let h = harness();
    let body = "cpu,host=a usage=1.5,note=\"text\" 1700000000000000000";
    for q in ["?strict=1", "?strict=false"] {
        let r = send(&h.app, post(&format!("/v1/write/metric{q}"), None, body)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}: {}", r.text());
        assert_eq!(r.error_code(), "datakit.pointGotWarning");
        let msg = r.json()["message"].as_str().unwrap_or("").to_string();
        assert!(msg.contains(": "), "{msg}");
    }
    assert!(h.feeder.calls().is_empty());
    // Without strict the string field of a metric is dropped and the point fed.
    let r = send(&h.app, post("/v1/write/metric?strict=", None, body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(h.feeder.calls()[0].3, vec![cpu_point()]);
}

#[tokio::test]
async fn busy_delivery_answers_503_and_records_the_error() {
    let h = harness_with(ApiConfig::default(), Mode::Busy);
    let r = send(&h.app, post("/v1/write/metric?input=app", None, LP)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert_eq!(r.error_code(), "datakit.ioBusy");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap_or("")
            .contains("queue of metric is full")
    );
    let recent = h.last_errors.recent();
    assert_eq!(recent.len(), 1);
    assert_eq!(recent[0].input, "v1-write.app");
    assert_eq!(recent[0].category, "metric");
    let listed = send(&h.app, get("/v1/lasterror")).await;
    assert_eq!(listed.json()["content"][0]["input"], "v1-write.app");
}

#[tokio::test]
async fn points_delivery_can_never_store_answer_413_naming_the_key() {
    let h = harness_with(ApiConfig::default(), Mode::TooLarge);
    let r = send(&h.app, post("/v1/write/metric", None, LP)).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
    let message = r.json()["message"].as_str().unwrap_or("").to_string();
    assert!(
        message.contains("larger than the metric queue cap"),
        "{message}"
    );
    assert!(message.contains("max_capacity_gb"), "{message}");
}

#[tokio::test]
async fn a_hanging_handler_times_out_with_408_text() {
    let h = harness_with(
        ApiConfig {
            timeout: Duration::from_millis(100),
            ..ApiConfig::default()
        },
        Mode::Hang,
    );
    let r = send(&h.app, post("/v1/write/metric", None, LP)).await;
    assert_eq!(r.status, StatusCode::REQUEST_TIMEOUT);
    assert!(r.header("content-type").starts_with("text/plain"));
    assert_eq!(r.text(), "timeout(100ms)");
    assert_eq!(r.header("x-datakit"), "1.84.1/host-1");
}

#[tokio::test]
async fn a_panicking_handler_answers_500_and_the_router_keeps_serving() {
    let h = harness_with(ApiConfig::default(), Mode::Panic);
    let r = send(&h.app, post("/v1/write/metric", None, LP)).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(r.error_code(), "internalError");
    assert_eq!(send(&h.app, get("/v1/ping")).await.status, StatusCode::OK);
}

// ---------------------------------------------------------------- lasterror

#[tokio::test]
async fn lasterror_records_and_shows_up_in_metrics() {
    let h = harness();
    let body = r#"{"input":"ext-input","source":"ext-src","err_content":"disk on fire"}"#;
    let r = send(
        &h.app,
        post("/v1/lasterror", Some("application/json"), body),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.is_empty());
    let recent = h.last_errors.recent();
    assert_eq!(recent.len(), 1);
    assert_eq!(
        (
            recent[0].input.as_str(),
            recent[0].source.as_str(),
            recent[0].message.as_str()
        ),
        ("ext-input", "ext-src", "disk on fire")
    );
    let m = send(&h.app, get("/metrics")).await.text();
    assert!(
        m.contains(r#"datakit_last_err{input="ext-input",source="ext-src",category="unknown",error="disk on fire"}"#),
        "{m}"
    );
    assert!(
        m.contains(r#"datakit_error_total{source="ext-src",category="unknown"} 1"#),
        "{m}"
    );
}

#[tokio::test]
async fn lasterror_with_a_bad_body_is_400_naming_what_is_missing() {
    let h = harness();
    let r = send(&h.app, post("/v1/lasterror", None, r#"{"input":"x"}"#)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "datakit.badRequest");
    assert!(r.text().contains("err_content"), "{}", r.text());
    let r = send(&h.app, post("/v1/lasterror", None, "not json")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "datakit.badRequest");
    assert!(r.text().contains("JSON object"), "{}", r.text());
    assert!(h.last_errors.recent().is_empty());
}

#[tokio::test]
async fn election_info_shows_the_state_to_loopback_clients_only() {
    let h = harness();
    let r = send(&h.app, get("/v1/election/info")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["content"]["status"], "disabled");
    let mut state = h.state.clone();
    state.election = Some(Arc::new(
        || serde_json::json!({ "status": "success", "leader": "node-a" }),
    ));
    let app = router(state);
    let r = send(&app, get("/v1/election/info")).await;
    assert_eq!(r.json()["content"]["leader"], "node-a");
    let r = send_from(&app, get("/v1/election/info"), EXTERNAL).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.error_code(), "datakit.publicAccessDisabled");
}

#[tokio::test]
async fn lasterror_listing_is_loopback_only() {
    let h = harness();
    h.last_errors.record("cpu", "", "metric", "boom");
    let r = send(&h.app, get("/v1/lasterror")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["content"][0]["message"], "boom");
    assert_eq!(r.json()["content"][0]["category"], "metric");
    // Even when an operator makes the POST public, the listing stays local.
    let h = harness_with(
        ApiConfig {
            public_apis: vec!["v1/lasterror".into()],
            ..ApiConfig::default()
        },
        Mode::Accept,
    );
    let r = send_from(&h.app, get("/v1/lasterror"), EXTERNAL).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.error_code(), "datakit.publicAccessDisabled");
    let r = send_from(
        &h.app,
        post("/v1/lasterror", None, r#"{"input":"a","err_content":"b"}"#),
        EXTERNAL,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

// ---------------------------------------------------------------- access control

#[tokio::test]
async fn non_public_routes_refuse_external_and_proxied_clients() {
    let h = harness();
    let r = send_from(&h.app, get("/metrics"), EXTERNAL).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        r.text(),
        r#"{"error_code":"datakit.publicAccessDisabled","message":"api /metrics disabled from external IP, only loopback(localhost) allowed"}"#
    );
    let mut req = get("/metrics");
    req.headers_mut().insert(
        "x-real-ip",
        "127.0.0.1".parse().unwrap_or_else(|_| unreachable!()),
    );
    let r = send(&h.app, req).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = send(&h.app, get("/metrics")).await;
    assert_eq!(r.status, StatusCode::OK);
    // Write URLs and ping are public by default.
    let r = send_from(
        &h.app,
        post("/v1/write/logging", None, "x message=\"m\""),
        EXTERNAL,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // Without any peer information the client is external.
    let resp = h
        .app
        .clone()
        .oneshot(get("/metrics"))
        .await
        .unwrap_or_else(|e| match e {});
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_custom_public_api_list_replaces_the_write_urls() {
    let h = harness_with(
        ApiConfig {
            public_apis: vec!["/metrics".into()],
            ..ApiConfig::default()
        },
        Mode::Accept,
    );
    let r = send_from(&h.app, get("/metrics"), EXTERNAL).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = send_from(&h.app, post("/v1/write/metric", None, LP), EXTERNAL).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = send_from(&h.app, get("/v1/ping"), EXTERNAL).await;
    assert_eq!(r.status, StatusCode::OK);
}

// ---------------------------------------------------------------- 404, CORS, rate limit

#[tokio::test]
async fn unknown_routes_get_the_welcome_page_or_a_plain_404() {
    let h = harness();
    let r = send(&h.app, get("/no/such/route")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.header("content-type"), "text/html");
    let page = r.text();
    assert!(page.contains("Welcome to use DataKit"));
    assert!(page.contains("Version: 1.84.1"));
    assert!(page.contains("OS/Arch: linux/amd64"));
    assert!(page.contains("Uptime: "));
    // A known path with the wrong method is also the 404 page, as in gin.
    let r = send(&h.app, get("/v1/write/metric")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.text().contains("Welcome to use DataKit"));

    let h = harness_with(
        ApiConfig {
            disable_404page: true,
            ..ApiConfig::default()
        },
        Mode::Accept,
    );
    let r = send(&h.app, get("/no/such/route")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(!r.text().contains("Welcome"));
    assert_eq!(r.header("x-datakit"), "1.84.1/host-1");
}

#[tokio::test]
async fn every_path_the_config_keeps_free_for_the_api_is_served_by_the_router() {
    let h = harness();
    for own in dk_proto::family::API_PATHS {
        // A prefix stands for the paths under it: take one the router serves.
        let path = match *own {
            "/v1/write/" => "/v1/write/metric".to_string(),
            "/v1/election/" => "/v1/election/info".to_string(),
            p => {
                assert!(!p.ends_with('/'), "a new API prefix {p} needs a path here");
                p.to_string()
            }
        };
        let by_get = send(&h.app, get(&path)).await.status;
        let by_post = send(
            &h.app,
            Request::post(path.as_str())
                .body(Body::from("m f=1i 1\n"))
                .unwrap_or_default(),
        )
        .await
        .status;
        assert!(
            by_get != StatusCode::NOT_FOUND || by_post != StatusCode::NOT_FOUND,
            "{own} is kept free of input routes but the API does not serve {path}"
        );
    }
    assert_eq!(
        dk_proto::family::shadowed_api_path("/v1/write/logging"),
        Some("/v1/write/")
    );
    assert_eq!(dk_proto::family::shadowed_api_path("/otel/v1/traces"), None);
}

#[tokio::test]
async fn options_is_204_with_cors_headers_everywhere() {
    let h = harness();
    for path in ["/v1/write/metric", "/anything", "/metrics"] {
        let req = Request::options(path)
            .header(header::ORIGIN, "https://app.example")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "X-Custom")
            .body(Body::empty())
            .unwrap_or_default();
        let r = send_from(&h.app, req, EXTERNAL).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{path}");
        assert_eq!(
            r.header("access-control-allow-origin"),
            "https://app.example"
        );
        assert_eq!(r.header("access-control-allow-credentials"), "true");
        assert_eq!(
            r.header("access-control-allow-methods"),
            "POST, OPTIONS, GET, PUT"
        );
        assert_eq!(r.header("access-control-max-age"), "7200");
        let allow = r.header("access-control-allow-headers");
        assert!(allow.starts_with("Content-Type, Content-Length"), "{allow}");
        assert!(allow.ends_with(", X-Custom"), "{allow}");
    }
    // Without Origin the allowed origin is `*`.
    let r = send(&h.app, get("/v1/ping")).await;
    assert_eq!(r.header("access-control-allow-origin"), "*");
}

#[tokio::test]
async fn only_allowed_origins_get_cors_headers() {
    let h = harness_with(
        ApiConfig {
            allowed_cors_origins: vec!["https://ok.example".into()],
            ..ApiConfig::default()
        },
        Mode::Accept,
    );
    let with_origin = |o: &str| {
        Request::get("/v1/ping")
            .header(header::ORIGIN, o)
            .body(Body::empty())
            .unwrap_or_default()
    };
    let r = send(&h.app, with_origin("https://ok.example")).await;
    assert_eq!(
        r.header("access-control-allow-origin"),
        "https://ok.example"
    );
    let r = send(&h.app, with_origin("https://evil.example")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers.get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn rate_limit_is_per_client_and_path() {
    let h = harness_with(
        ApiConfig {
            request_rate_limit: 1.0,
            ..ApiConfig::default()
        },
        Mode::Accept,
    );
    let r = send(&h.app, get("/v1/ping")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-rate-limit-limit"), "1.00");
    assert_eq!(r.header("x-rate-limit-duration"), "1");
    let r = send(&h.app, get("/v1/ping")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.text(), r#"{"error_code":"datakit.reachMaxAPILimit"}"#);
    // Another path, another client: own buckets.
    assert_eq!(send(&h.app, get("/v1/ntp")).await.status, StatusCode::OK);
    assert_eq!(
        send_from(&h.app, get("/v1/ping"), EXTERNAL).await.status,
        StatusCode::OK
    );
    // Disabled with a rate of zero.
    let h = harness_with(
        ApiConfig {
            request_rate_limit: 0.0,
            ..ApiConfig::default()
        },
        Mode::Accept,
    );
    for _ in 0..5 {
        assert_eq!(send(&h.app, get("/v1/ping")).await.status, StatusCode::OK);
    }
}

// ---------------------------------------------------------------- metrics

#[tokio::test]
async fn metrics_count_requests_by_api_method_and_status() {
    let h = harness();
    send(&h.app, get("/v1/ping")).await;
    send(&h.app, get("/v1/ping")).await;
    send(&h.app, post("/v1/write/nope", None, LP)).await;
    send(&h.app, get("/nowhere")).await;
    send(&h.app, post("/v1/write/metric", None, LP)).await;
    let r = send(&h.app, get("/metrics")).await;
    assert_eq!(r.status, StatusCode::OK);
    let m = r.text();
    assert!(
        m.contains(r#"datakit_http_api_total{api="/v1/ping",method="GET",status="OK"} 2"#),
        "{m}"
    );
    assert!(
        m.contains(r#"datakit_http_api_total{api="/v1/write/:category",method="POST",status="Bad Request"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"datakit_http_api_total{api="404-page",method="GET",status="Not Found"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(
            r#"datakit_http_api_elapsed_seconds_count{api="/v1/ping",method="GET",status="OK"} 2"#
        ),
        "{m}"
    );
    assert!(
        m.contains(r#"datakit_http_write_point_total{category="metric"} 1"#),
        "{m}"
    );
    // The registry shared with the supervisor is what /metrics serves.
    assert!(Arc::strong_count(&h.state.registry) >= 2);
    // Worker metrics come after the supervisor's and before the single final `# EOF`.
    assert!(
        m.contains("datakit_test_worker_packets_total 3\n# EOF\n"),
        "{m}"
    );
    assert_eq!(m.matches("# EOF").count(), 1, "{m}");
}

// ---------------------------------------------------------------- real socket

async fn raw_http(addr: SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = match tokio::net::TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => return format!("connect failed: {e}"),
    };
    if let Err(e) = s.write_all(request.as_bytes()).await {
        return format!("write failed: {e}");
    }
    let mut out = Vec::new();
    if let Err(e) = s.read_to_end(&mut out).await {
        return format!("read failed: {e}");
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn serve_sees_the_loopback_peer_over_a_real_socket() {
    let h = harness();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("addr: {e}"));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, h.state.clone(), async {
        let _ = stop_rx.await;
    }));

    let local = raw_http(
        addr,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(local.starts_with("HTTP/1.1 200"), "{local}");
    assert!(
        local
            .to_ascii_lowercase()
            .contains("x-datakit: 1.84.1/host-1"),
        "{local}"
    );

    let proxied = raw_http(
        addr,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: 1.2.3.4\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(proxied.starts_with("HTTP/1.1 403"), "{proxied}");
    assert!(
        proxied.contains("datakit.publicAccessDisabled"),
        "{proxied}"
    );

    let body = LP;
    let write = raw_http(
        addr,
        &format!(
            "POST /v1/write/metric HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert!(write.starts_with("HTTP/1.1 200"), "{write}");

    let _ = stop_tx.send(());
    let res = tokio::time::timeout(Duration::from_secs(5), server).await;
    assert!(
        matches!(res, Ok(Ok(Ok(())))),
        "serve did not stop cleanly: {res:?}"
    );
}

// ---------------------------------------------------------------- limits

fn metric_line(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
}

#[tokio::test]
async fn a_metric_whose_only_field_is_a_string_is_400_saying_which_field_was_dropped() {
    let h = harness();
    let r = send(&h.app, post("/v1/write/metric", None, "m,t=a s=\"text\" 1")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "datakit.noPoints");
    let m = r.json()["message"].as_str().unwrap_or("").to_string();
    assert!(m.contains("field \"s\""), "{m}");
    assert!(m.contains("numeric and boolean"), "{m}");
}

#[tokio::test]
async fn the_413_message_names_the_max_body_size_mb_key() {
    let h = harness_with(
        ApiConfig {
            max_body_bytes: 1024,
            ..ApiConfig::default()
        },
        Mode::Accept,
    );
    let r = send(
        &h.app,
        post("/v1/write/metric", None, "m f=1 1\n".repeat(200)),
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        r.text().contains("[http_api] max_body_size_mb"),
        "{}",
        r.text()
    );
    let m = send(&h.app, get("/metrics")).await.text();
    assert_eq!(
        metric_line(
            &m,
            "datakit_http_api_rejected_total{reason=\"body_too_large\"}"
        ),
        Some(1.0),
        "{m}"
    );
}

#[tokio::test]
async fn a_spent_budget_answers_503_with_retry_after_counts_it_and_holds_nothing_after() {
    let h = harness_with(
        ApiConfig {
            max_inflight_bytes: 64 * 1024,
            ..ApiConfig::default()
        },
        Mode::Accept,
    );
    let big = "m f=1 1\n".repeat(20_000);
    let r = send(&h.app, post("/v1/write/metric", None, big)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert_eq!(r.error_code(), "datakit.ioBusy");
    assert_eq!(r.header("retry-after"), "1");
    assert!(r.text().contains("max_inflight_body_mb"), "{}", r.text());
    let m = send(&h.app, get("/metrics")).await.text();
    assert_eq!(
        metric_line(
            &m,
            "datakit_http_api_rejected_total{reason=\"memory_budget\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric_line(&m, "datakit_http_api_inflight_body_bytes "),
        Some(0.0),
        "{m}"
    );
    assert!(h.feeder.calls().is_empty());
}

#[tokio::test]
async fn a_large_body_is_fed_in_bounded_chunks_and_every_point_arrives() {
    let h = harness();
    let n = 40_000;
    let body: String = (0..n)
        .map(|i| format!("m,k=value-{i} f={i}i {}\n", i + 1))
        .collect();
    assert!(body.len() > 512 * 1024);
    let r = send(&h.app, post("/v1/write/metric?precision=ns", None, body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let calls = h.feeder.calls();
    assert!(calls.len() >= 3, "{} feeds", calls.len());
    assert!(calls.iter().all(|c| c.3.len() <= 10_000));
    assert_eq!(calls.iter().map(|c| c.3.len()).sum::<usize>(), n);
    let m = send(&h.app, get("/metrics")).await.text();
    assert_eq!(
        metric_line(&m, "datakit_http_api_inflight_body_bytes "),
        Some(0.0),
        "{m}"
    );
}

#[tokio::test]
async fn a_late_parse_error_in_a_large_body_says_how_many_points_were_accepted() {
    let h = harness();
    let mut body: String = (0..40_000)
        .map(|i| format!("m,k=value-{i} f={i}i {}\n", i + 1))
        .collect();
    body.push_str("broken line\n");
    let r = send(&h.app, post("/v1/write/metric?precision=ns", None, body)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "datakit.invalidLinePoint");
    let accepted: usize = h.feeder.calls().iter().map(|c| c.3.len()).sum();
    assert!(accepted > 0);
    assert!(
        r.text()
            .contains(&format!("the {accepted} points before it were accepted")),
        "{}",
        r.text()
    );
}

async fn serve_with(config: ApiConfig) -> (Harness, SocketAddr, tokio::sync::oneshot::Sender<()>) {
    serve_with_mode(config, Mode::Accept).await
}

async fn serve_with_mode(
    config: ApiConfig,
    mode: Mode,
) -> (Harness, SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let h = harness_with(config, mode);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("addr: {e}"));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, h.state.clone(), async {
        let _ = stop_rx.await;
    }));
    (h, addr, stop_tx)
}

/// Waits until the API counts `n` open connections.
async fn wait_open_connections(h: &Harness, n: f64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = send(&h.app, get("/metrics")).await.text();
        if metric_line(&m, "datakit_http_api_open_connections ") == Some(n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never {n} open connections:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends a GET on an open connection and reads the answer until the server closes it.
async fn http_get(s: &mut tokio::net::TcpStream, path: &str) -> String {
    use tokio::io::AsyncWriteExt;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (_, out) = closed_within(s, Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("no answer to GET {path}"));
    String::from_utf8_lossy(&out).into_owned()
}

/// A raw client connection to the served API.
async fn connect(addr: SocketAddr) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A raw client connection that has sent `bytes` (headers, maybe part of a body).
async fn connect_sending(addr: SocketAddr, bytes: &[u8]) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut s = connect(addr).await;
    s.write_all(bytes).await.unwrap_or_else(|e| panic!("{e}"));
    s
}

/// Reads until the server closes; the time it took, or `None` past `limit`.
async fn closed_within(
    s: &mut tokio::net::TcpStream,
    limit: Duration,
) -> Option<(Duration, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let start = Instant::now();
    let mut out = Vec::new();
    match tokio::time::timeout(limit, s.read_to_end(&mut out)).await {
        Ok(_) => Some((start.elapsed(), out)),
        Err(_) => None,
    }
}

#[tokio::test]
async fn clients_slow_to_send_headers_are_cut_off_after_the_header_timeout() {
    let (h, addr, _stop) = serve_with(ApiConfig {
        header_timeout: Duration::from_millis(300),
        ..ApiConfig::default()
    })
    .await;
    // One that sends part of a header line and then nothing, one that sends nothing at all.
    let mut partial = connect_sending(addr, b"GET /v1/ping HTTP/1.1\r\nHo").await;
    let mut silent = connect(addr).await;
    let p = closed_within(&mut partial, Duration::from_secs(5)).await;
    let s = closed_within(&mut silent, Duration::from_secs(5)).await;
    assert!(p.is_some(), "the partial-header client was never cut off");
    assert!(s.is_some(), "the silent client was never cut off");
    let m = send(&h.app, get("/metrics")).await.text();
    assert!(
        metric_line(
            &m,
            "datakit_http_api_rejected_total{reason=\"header_timeout\"}"
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{m}"
    );
}

#[tokio::test]
async fn a_declared_length_over_the_cap_is_413_before_the_body_is_sent() {
    let (_h, addr, _stop) = serve_with(ApiConfig {
        max_body_bytes: 1024,
        ..ApiConfig::default()
    })
    .await;
    let mut s = connect_sending(
        addr,
        b"POST /v1/write/metric HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n",
    )
    .await;
    let (_, out) = closed_within(&mut s, Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("no answer without a body"));
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
}

#[tokio::test]
async fn a_chunked_body_announcing_a_huge_chunk_is_cut_off_by_the_request_timeout() {
    let (_h, addr, _stop) = serve_with(ApiConfig {
        timeout: Duration::from_millis(500),
        ..ApiConfig::default()
    })
    .await;
    let mut s = connect_sending(addr, b"POST /v1/write/metric HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nm f=1 1\n").await;
    let (took, out) = closed_within(&mut s, Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("the endless chunked body was never cut off"));
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with("HTTP/1.1 408") || text.starts_with("HTTP/1.1 413") || text.is_empty(),
        "{text}"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[tokio::test]
async fn at_the_cap_the_connection_idle_the_longest_makes_room_for_a_new_one() {
    let (h, addr, _stop) = serve_with(ApiConfig {
        max_connections: 2,
        ..ApiConfig::default()
    })
    .await;
    let mut a = connect(addr).await;
    let _b = connect(addr).await;
    wait_open_connections(&h, 2.0).await;
    // A third client at the cap: the oldest idle one (a) is closed, the new one is served.
    let mut c = connect(addr).await;
    let (took, out) = closed_within(&mut a, Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("the oldest idle connection was kept"));
    assert!(out.is_empty());
    assert!(took < Duration::from_secs(2), "{took:?}");
    let answer = http_get(&mut c, "/v1/ping").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let m = send(&h.app, get("/metrics")).await.text();
    assert_eq!(
        metric_line(
            &m,
            "datakit_http_api_rejected_total{reason=\"evicted_idle\"}"
        ),
        Some(1.0),
        "{m}"
    );
}

#[tokio::test]
async fn at_the_cap_with_every_connection_in_a_request_new_ones_are_closed_and_counted() {
    let (h, addr, _stop) = serve_with_mode(
        ApiConfig {
            max_connections: 2,
            ..ApiConfig::default()
        },
        Mode::Hang,
    )
    .await;
    // Two clients in the middle of a write that never completes (the feeder hangs).
    let mut busy = Vec::new();
    for _ in 0..2 {
        busy.push(
            connect_sending(
                addr,
                b"POST /v1/write/metric HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\nm f=1 1",
            )
            .await,
        );
    }
    wait_open_connections(&h, 2.0).await;
    let mut c = connect(addr).await;
    let (took, out) = closed_within(&mut c, Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("the connection past the cap was kept"));
    assert!(out.is_empty());
    assert!(took < Duration::from_secs(2), "{took:?}");
    let m = send(&h.app, get("/metrics")).await.text();
    assert_eq!(
        metric_line(
            &m,
            "datakit_http_api_rejected_total{reason=\"connection_limit\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric_line(
            &m,
            "datakit_http_api_rejected_total{reason=\"evicted_idle\"}"
        ),
        None,
        "{m}"
    );
}
