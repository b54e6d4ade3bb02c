//! The 9529 write API on the real binary: decoding, normalisation, echo, errors.

use dk_proto::{Point, Value};

use crate::harness::Agent;

fn echo_points(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("echo body is JSON ({e}): {}", String::from_utf8_lossy(body)))
}

#[test]
fn write_api_echoes_normalised_points_for_every_body_format() {
    let agent = Agent::start(&[]);

    // Line protocol with escapes, explicit precision, and a string field a metric must drop.
    let lp = b"cpu\\,x,host\\ name=a\\=b usage=1.5,count=3i,note=\"hi\" 1700000000\n";
    let (status, body) = agent.request("POST", "/v1/write/metric?echo=json&precision=s", &[], lp);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let echoed = echo_points(&body);
    let text = echoed.to_string();
    assert!(text.contains("cpu,x"), "measurement unescaped: {text}");
    assert!(text.contains("host name"), "tag key unescaped: {text}");
    assert!(text.contains("a=b"), "tag value unescaped: {text}");
    assert!(
        !text.contains("note"),
        "string fields are dropped from metrics: {text}"
    );
    assert!(
        text.contains("1700000000000000000"),
        "seconds scaled to ns: {text}"
    );

    // JSON body, with the precision applied as Datakit does for every body format.
    let json = br#"[{"measurement":"jm","tags":{"t":"v"},"fields":{"f":2.5},"time":1700000000}]"#;
    let (status, body) = agent.request(
        "POST",
        "/v1/write/metric?echo=json&precision=s",
        &[("Content-Type", "application/json")],
        json,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let text = echo_points(&body).to_string();
    assert!(
        text.contains("jm") && text.contains("1700000000000000000"),
        "{text}"
    );

    // Protobuf body.
    let p = Point::new("pbm", 1_700_000_000_000_000_000)
        .tag("t", "v")
        .field("f", Value::I(7));
    let pb = dk_proto::pb::encode(&[p]);
    let (status, body) = agent.request(
        "POST",
        "/v1/write/metric?echo=lp",
        &[(
            "Content-Type",
            "application/protobuf; proto=com.guance.Point",
        )],
        &pb,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        String::from_utf8_lossy(&body).trim(),
        "pbm,t=v f=7i 1700000000000000000"
    );

    // Malformed line protocol: Datakit's error envelope.
    let (status, body) = agent.request("POST", "/v1/write/metric", &[], b"no_fields_here\n");
    assert_eq!(status, 400);
    let err: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(err["error_code"], "datakit.invalidLinePoint", "{err}");

    // Bad category.
    let (status, body) = agent.request("POST", "/v1/write/nope", &[], b"m f=1\n");
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("datakit.invalidCategory"));
}

#[test]
fn written_points_reach_the_local_sink_with_global_tags() {
    let agent = Agent::start(&[]);
    let (status, _) = agent.request(
        "POST",
        "/v1/write/logging",
        &[],
        b"app message=\"hello\" 1700000000000000000\n",
    );
    assert_eq!(status, 200);
    let points = crate::harness::wait_for(
        "the logging point",
        std::time::Duration::from_secs(10),
        || {
            let pts = agent.local_points("logging");
            (!pts.is_empty()).then_some(pts)
        },
    );
    let p = &points[0];
    assert_eq!(p.name, "app");
    assert_eq!(p.get_tag("e2e"), Some("yes"));
    assert!(p.get_tag("host").is_some());
    assert_eq!(
        p.get_field("status"),
        Some(&Value::S("info".into())),
        "logging gets status=info: {p:?}"
    );
}

#[test]
fn a_route_a_family_serves_on_9529_is_forwarded_to_its_worker_answers_503_while_it_restarts_and_follows_the_config()
 {
    use std::time::Duration;

    use crate::harness::{free_port, wait_for};

    // The debug echo route stands for the routes of input families (OpenTelemetry, Pyroscope).
    let conf = format!(
        "[[inputs.logging]]\n  sockets = [\"tcp://127.0.0.1:{}\"]\n",
        free_port()
    );
    let agent = Agent::start_with(
        &[("log/logging.conf", &conf)],
        "",
        &[("DK_DEBUG_ECHO_ROUTE", "logging")],
    );
    let post = |body: &str| agent.request("POST", "/v1/debug/echo", &[], body.as_bytes());
    let (status, body) = wait_for("the echo route served", Duration::from_secs(10), || {
        Some(post("one\ntwo\nthree\n")).filter(|(s, _)| *s == 200)
    });
    assert_eq!((status, body.as_slice()), (200, b"3 lines".as_slice()));
    let messages = |agent: &Agent| -> Vec<String> {
        agent
            .local_points("logging")
            .iter()
            .filter(|p| p.name == "echo")
            .filter_map(|p| match p.get_field("message") {
                Some(Value::S(s)) => Some(s.clone()),
                _ => None,
            })
            .collect()
    };
    wait_for("the echoed points", Duration::from_secs(10), || {
        (messages(&agent) == ["one", "two", "three"]).then_some(())
    });

    // The worker dies: the route says so with 503 while 9529 keeps answering, then serves again.
    let worker = agent.worker_pid("logging").unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(worker as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let (status, body) = wait_for(
        "a 503 while the worker restarts",
        Duration::from_secs(10),
        || Some(post("lost?\n")).filter(|(s, _)| *s == 503),
    );
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.contains("the logging worker") && body.contains("retry"),
        "{status} {body}"
    );
    assert_eq!(agent.request("GET", "/v1/ping", &[], b"").0, 200);
    wait_for(
        "the route served by the new worker",
        Duration::from_secs(20),
        || Some(post("four\n")).filter(|(s, _)| *s == 200),
    );
    wait_for(
        "the point of the new worker",
        Duration::from_secs(10),
        || messages(&agent).iter().any(|m| m == "four").then_some(()),
    );
    assert_ne!(agent.worker_pid("logging"), Some(worker));

    // Another method on a served path is 405; an unknown path the 404 page.
    assert_eq!(agent.request("GET", "/v1/debug/echo", &[], b"").0, 405);
    assert_eq!(agent.request("POST", "/v1/debug/nothing", &[], b"").0, 404);

    // Routes come from the config: once no input of the family is configured, the route is gone.
    std::fs::remove_file(agent.workdir().join("conf.d/log/logging.conf")).unwrap();
    agent.signal(nix::sys::signal::Signal::SIGHUP);
    wait_for(
        "the route gone after the reload",
        Duration::from_secs(20),
        || (post("five\n").0 == 404).then_some(()),
    );
    assert_eq!(agent.request("GET", "/v1/ping", &[], b"").0, 200);
}
