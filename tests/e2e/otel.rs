//! The opentelemetry input on the real binary, fed by the real OpenTelemetry Python SDK with
//! its OTLP gRPC and HTTP exporters (`otel_emit.py`) and by `curl` with protobuf, JSON and
//! gzip bodies; its 9529 routes answer 503 while the otel worker restarts, and a `kill -9` of
//! the worker during a request loop never takes 9529 down.

use std::process::Command;
use std::time::{Duration, Instant};

use dk_proto::{Point, Value};

use crate::harness::{Agent, free_port, wait_for};

const EMIT: &str = include_str!("otel_emit.py");
const TRACES_PB: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../workers/otel/fixtures/python-sdk-traces.pb"
);

fn conf(grpc_port: u16) -> String {
    format!(
        r#"
[[inputs.opentelemetry]]
  [inputs.opentelemetry.grpc]
    addr = "127.0.0.1:{grpc_port}"
  [inputs.opentelemetry.tags]
    team = "e2e"
"#
    )
}

fn sdk_present() -> bool {
    dk_proto::testing::require_python_modules(
        &[
            "opentelemetry.sdk",
            "opentelemetry.exporter.otlp.proto.grpc",
            "opentelemetry.exporter.otlp.proto.http",
        ],
        "opentelemetry-sdk opentelemetry-exporter-otlp-proto-grpc opentelemetry-exporter-otlp-proto-http",
    )
}

/// Runs `otel_emit.py <proto> <endpoint>` until it succeeds (the agent's worker may still be
/// starting); panics after 60 s.
fn emit(agent: &Agent, proto: &str, endpoint: &str) {
    let dir = agent.workdir().join("otel_emit.py");
    std::fs::write(&dir, EMIT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = Command::new("python3")
            .arg(&dir)
            .args([proto, endpoint])
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .output()
            .unwrap();
        if out.status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "otel_emit.py {proto} failed: {}\nagent log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn s(p: &Point, k: &str) -> String {
    match p.get_field(k) {
        Some(Value::S(s)) => s.clone(),
        other => panic!("field {k} is {other:?} in {p:?}"),
    }
}

fn int(p: &Point, k: &str) -> i64 {
    match p.get_field(k) {
        Some(Value::I(i)) => *i,
        other => panic!("field {k} is {other:?} in {p:?}"),
    }
}

/// The spans, metrics and log of one `otel_emit.py` run in the local sink, checked.
fn check_signals(agent: &Agent) {
    let spans = wait_for("the three spans", Duration::from_secs(30), || {
        let spans: Vec<Point> = agent
            .local_points("tracing")
            .into_iter()
            .filter(|p| p.name == "opentelemetry")
            .collect();
        (spans.len() >= 3).then_some(spans)
    });
    assert_eq!(spans.len(), 3, "{spans:?}");
    let span = |name: &str| {
        spans
            .iter()
            .find(|p| p.get_field("resource") == Some(&Value::S(name.into())))
            .unwrap_or_else(|| panic!("span {name} in {spans:?}"))
    };
    let (parent, child, db) = (span("GET /checkout"), span("charge"), span("SELECT orders"));
    for p in &spans {
        assert_eq!(p.get_tag("source"), Some("opentelemetry"));
        assert_eq!(p.get_tag("team"), Some("e2e"), "input tags");
        assert_eq!(p.get_tag("e2e"), Some("yes"), "host tags");
        assert_eq!(s(p, "trace_id"), s(parent, "trace_id"));
        assert_eq!(s(p, "trace_id").len(), 32);
        assert_eq!(p.time / 1_000, int(p, "start"));
    }
    assert_eq!(s(parent, "parent_id"), "0");
    assert_eq!(parent.get_tag("span_type"), Some("entry"));
    assert_eq!(parent.get_tag("span_kind"), Some("server"));
    assert_eq!(parent.get_tag("service"), Some("shop"));
    assert_eq!(parent.get_tag("http_status_code"), Some("200"));
    assert!(int(parent, "duration") >= int(child, "duration"));
    assert_eq!(s(child, "parent_id"), s(parent, "span_id"));
    assert_eq!(child.get_tag("status"), Some("error"));
    assert_eq!(s(child, "error_type"), "ValueError");
    assert_eq!(s(child, "error_message"), "card declined");
    assert_eq!(db.get_tag("service"), Some("postgresql"));
    assert_eq!(db.get_tag("base_service"), Some("shop"));
    assert_eq!(db.get_tag("db_host"), Some("db.local"));
    assert_eq!(db.get_tag("source_type"), Some("db"));

    let metrics = wait_for("the counter and histogram", Duration::from_secs(30), || {
        let m: Vec<Point> = agent
            .local_points("metric")
            .into_iter()
            .filter(|p| p.name == "otel_service")
            .collect();
        (m.iter().any(|p| p.get_field("orders.placed").is_some())
            && m.iter()
                .any(|p| p.get_field("checkout.duration_count").is_some()))
        .then_some(m)
    });
    let counter = metrics
        .iter()
        .find(|p| p.get_field("orders.placed").is_some())
        .unwrap();
    assert_eq!(counter.get_field("orders.placed"), Some(&Value::I(3)));
    assert_eq!(counter.get_tag("service_name"), Some("shop"));
    assert_eq!(counter.get_tag("region"), Some("eu"));
    let hist = metrics
        .iter()
        .find(|p| p.get_field("checkout.duration_count").is_some())
        .unwrap();
    assert_eq!(
        hist.get_field("checkout.duration_sum"),
        Some(&Value::F(262.5))
    );
    assert!(
        metrics.iter().any(|p| p.get_tag("le") == Some("+Inf")
            && p.get_field("checkout.duration_bucket") == Some(&Value::I(2))),
        "{metrics:?}"
    );

    let log = wait_for("the log record", Duration::from_secs(30), || {
        agent
            .local_points("logging")
            .into_iter()
            .find(|p| p.name == "shop")
    });
    assert_eq!(s(&log, "message"), "payment slow for order 42");
    assert_eq!(log.get_tag("status"), Some("warn"));
    assert_eq!(log.get_tag("service"), Some("shop"));
    assert_eq!(s(&log, "trace_id"), s(parent, "trace_id"));
}

#[test]
fn python_sdk_grpc_exporters_deliver_spans_metrics_and_logs_to_the_sink() {
    if !sdk_present() {
        return;
    }
    let port = free_port();
    let agent = Agent::start(&[("opentelemetry/opentelemetry.conf", &conf(port))]);
    emit(&agent, "grpc", &format!("http://127.0.0.1:{port}"));
    check_signals(&agent);
    // Worker metrics reach /metrics with its health reports.
    agent.wait_metric_at_least(
        &format!(
            "datakit_input_connections_total{{input=\"opentelemetry\",listener=\"tcp://127.0.0.1:{port}\"}}"
        ),
        1.0,
        Duration::from_secs(30),
    );
}

#[test]
fn python_sdk_http_exporters_deliver_spans_metrics_and_logs_through_9529() {
    if !sdk_present() {
        return;
    }
    let agent = Agent::start(&[("opentelemetry/opentelemetry.conf", &conf(free_port()))]);
    emit(&agent, "http", &format!("http://{}", agent.api));
    check_signals(&agent);
}

fn curl(agent: &Agent, path: &str, headers: &[&str], body_file: &std::path::Path) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", "POST"]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    cmd.arg("--data-binary")
        .arg(format!("@{}", body_file.display()))
        .arg(format!("http://{}{path}", agent.api));
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_string())
}

#[test]
fn curl_protobuf_json_and_gzip_bodies_are_accepted_and_bad_ones_get_400() {
    if !dk_proto::testing::require_program("curl", "curl") {
        return;
    }
    let agent = Agent::start(&[("opentelemetry/opentelemetry.conf", &conf(free_port()))]);
    let dir = agent.workdir();
    let json = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"curl-svc"}}]},
      "scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
      "name":"json-span","kind":2,"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000",
      "attributes":[{"key":"http.request.method","value":{"stringValue":"POST"}}]}]}]}]}"#;
    std::fs::write(dir.join("body.json"), json).unwrap();
    let gz_json = String::from_utf8_lossy(json).replace("json-span", "gzip-span");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, gz_json.as_bytes()).unwrap();
    std::fs::write(dir.join("body.json.gz"), gz.finish().unwrap()).unwrap();
    std::fs::write(dir.join("bad.pb"), b"\x0a\xff\xff").unwrap();

    let (code, _) = wait_for("the traces route served", Duration::from_secs(20), || {
        Some(curl(
            &agent,
            "/otel/v1/traces",
            &["Content-Type: application/x-protobuf"],
            std::path::Path::new(TRACES_PB),
        ))
        .filter(|(c, _)| *c != 503)
    });
    assert_eq!(code, 200);
    let (code, body) = curl(
        &agent,
        "/otel/v1/traces",
        &["Content-Type: application/json; charset=utf-8"],
        &dir.join("body.json"),
    );
    assert_eq!(code, 200, "{body}");
    let (code, body) = curl(
        &agent,
        "/otel/v1/traces",
        &["Content-Type: application/json", "Content-Encoding: gzip"],
        &dir.join("body.json.gz"),
    );
    assert_eq!(code, 200, "{body}");
    let (code, body) = curl(
        &agent,
        "/otel/v1/traces",
        &["Content-Type: application/x-protobuf"],
        &dir.join("bad.pb"),
    );
    assert_eq!(code, 400);
    assert!(body.contains("not a valid OTLP protobuf"), "{body}");
    let (code, body) = curl(
        &agent,
        "/otel/v1/logs",
        &["Content-Type: text/plain"],
        &dir.join("body.json"),
    );
    assert_eq!(code, 400);
    assert!(body.contains("Content-Type"), "{body}");

    let spans = wait_for("the curl spans", Duration::from_secs(20), || {
        let spans: Vec<Point> = agent
            .local_points("tracing")
            .into_iter()
            .filter(|p| p.name == "opentelemetry")
            .collect();
        (spans.len() >= 5).then_some(spans)
    });
    let by = |name: &str| {
        spans
            .iter()
            .find(|p| p.get_field("resource") == Some(&Value::S(name.into())))
            .unwrap_or_else(|| panic!("{name} in {spans:?}"))
    };
    for name in ["json-span", "gzip-span"] {
        let p = by(name);
        assert_eq!(s(p, "trace_id"), "5b8efff798038103d269b633813fc60c");
        assert_eq!(p.get_tag("service"), Some("curl-svc"));
        assert_eq!(p.get_field("http_method"), Some(&Value::S("POST".into())));
        assert_eq!(int(p, "duration"), 1_000_000);
    }
    by("GET /checkout");
    agent.wait_metric_at_least(
        "datakit_input_parse_errors_total{input=\"opentelemetry\",reason=\"decode\"}",
        1.0,
        Duration::from_secs(30),
    );
}

#[test]
fn otel_routes_answer_503_while_the_worker_restarts_and_kill_9_never_takes_9529_down() {
    let agent = Agent::start(&[("opentelemetry/opentelemetry.conf", &conf(free_port()))]);
    let body = std::fs::read(TRACES_PB).unwrap();
    let post = || {
        crate::harness::try_request(
            agent.api,
            "POST",
            "/otel/v1/traces",
            &[("Content-Type", "application/x-protobuf")],
            &body,
        )
    };
    wait_for("the traces route served", Duration::from_secs(20), || {
        post().ok().filter(|(s, _)| *s == 200)
    });
    let worker = agent.worker_pid("otel").unwrap();

    // A request loop on another thread while the worker is killed.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let api = agent.api;
    let looping = {
        let stop = stop.clone();
        let body = body.clone();
        std::thread::spawn(move || {
            let mut statuses = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < deadline {
                let r = crate::harness::try_request(
                    api,
                    "POST",
                    "/otel/v1/traces",
                    &[("Content-Type", "application/x-protobuf")],
                    &body,
                );
                statuses.push(r.map(|(s, b)| (s, String::from_utf8_lossy(&b).to_string())));
            }
            statuses
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(worker as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let (status, why) = wait_for(
        "a 503 while the worker restarts",
        Duration::from_secs(10),
        || post().ok().filter(|(s, _)| *s == 503),
    );
    let why = String::from_utf8_lossy(&why);
    assert!(
        why.contains("the otel worker") && why.contains("retry"),
        "{status} {why}"
    );
    assert_eq!(agent.request("GET", "/v1/ping", &[], b"").0, 200);
    wait_for(
        "the route served by the new worker",
        Duration::from_secs(30),
        || post().ok().filter(|(s, _)| *s == 200),
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let statuses = looping.join().unwrap();
    assert!(statuses.len() > 3, "the loop ran: {statuses:?}");
    for r in &statuses {
        let (code, body) = r.as_ref().unwrap_or_else(|e| panic!("9529 went down: {e}"));
        assert!(*code == 200 || *code == 503, "{code} {body}");
    }
    assert_eq!(agent.request("GET", "/v1/ping", &[], b"").0, 200);
    assert_ne!(agent.worker_pid("otel"), Some(worker));
}
