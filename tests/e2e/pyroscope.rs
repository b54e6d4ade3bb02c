//! The pyroscope input on the real binary: the real `pyroscope-io` client (PyPI, 0.8 line:
//! the `/ingest` push API Datakit serves; 1.x speaks Grafana Pyroscope's newer
//! `/push.v1.PusherService/Push` instead) profiling Python programs against port 4040 and 9529, and
//! `curl` uploads (multipart and octet-stream) to `/ingest` on 9529. Each accepted upload
//! reaches the fake Dataway's profiling upload as Datakit's multipart with the right
//! `event.json` and the bytes that were sent; bad uploads get 400; `/ingest` on 9529 answers
//! 503 while the worker restarts and a `kill -9` of the worker never takes 9529 down.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dk_proto::profile::EVENT_FIELD;
use dk_proto::{Category, Point, Value};
use dk_sinks::testing::FakeDataway;

use crate::harness::{Agent, free_port, try_request, wait_for};

const TOKEN: &str = "tkn_0123456789abcdef0123456789abcdef";

fn conf(port: u16) -> String {
    format!(
        r#"
[[inputs.pyroscope]]
  endpoints = ["/ingest"]
  listen = "tcp://127.0.0.1:{port}"
  [inputs.pyroscope.tags]
    team = "e2e"
"#
    )
}

struct Setup {
    rt: tokio::runtime::Runtime,
    dataway: FakeDataway,
    agent: Agent,
    port: u16,
}

fn start() -> Setup {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dataway = rt.block_on(FakeDataway::start(TOKEN)).unwrap();
    let port = free_port();
    let extra = format!("[dataway]\n  urls = [\"{}\"]\n", dataway.url());
    let agent = Agent::start_with(&[("pyroscope/pyroscope.conf", &conf(port))], &extra, &[]);
    Setup {
        rt,
        dataway,
        agent,
        port,
    }
}

/// The `event.json` of a received profile, parsed.
fn event(p: &Point) -> serde_json::Value {
    match p.get_field(EVENT_FIELD) {
        Some(Value::S(s)) => serde_json::from_str(s).unwrap(),
        other => panic!("no event.json in {p:?}: {other:?}"),
    }
}

fn attachment<'a>(p: &'a Point, name: &str) -> &'a [u8] {
    match p.get_field(name) {
        Some(Value::D(d)) => d,
        other => panic!("no attachment {name} in {p:?}: {other:?}"),
    }
}

/// Runs curl, returning (status, body).
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn curl_multipart_and_octet_stream_uploads_to_9529_reach_dataway_byte_for_byte() {
    if !dk_proto::testing::require_program("curl", "curl") {
        return;
    }
    let s = start();
    let dir = tempfile::tempdir().unwrap();
    // Profiles are opaque bytes to the agent: any bytes must arrive unchanged.
    let go_profile: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let py_profile: Vec<u8> = (0..25_000u32).map(|i| (i * 13 % 251) as u8).collect();
    let go_path = dir.path().join("cpu.pprof");
    let py_path = dir.path().join("py.pprof");
    let stc_path = dir.path().join("sample_type_config.json");
    std::fs::write(&go_path, &go_profile).unwrap();
    std::fs::write(&py_path, &py_profile).unwrap();
    std::fs::write(&stc_path, br#"{"inuse_space":{"units":"bytes"}}"#).unwrap();
    let api = format!("http://{}", s.agent.api);

    let url = format!(
        "{api}/ingest?name=go-app%7Benv%3Dprod,version%3D1.2%7D&from=1700000000&until=1700000010&spyName=gospy&sampleRate=100"
    );
    let (code, body) = wait_for("the /ingest route served", Duration::from_secs(20), || {
        let r = curl(&[
            "-F",
            &format!("profile=@{}", go_path.display()),
            "-F",
            &format!("sample_type_config=@{}", stc_path.display()),
            &url,
        ]);
        (r.0 != 503).then_some(r)
    });
    assert_eq!(code, 200, "{body}");
    let url = format!(
        "{api}/ingest?name=py-app&from=1700000020000&until=1700000030000&spyName=pyspy&format=pprof"
    );
    let (code, body) = curl(&[
        "-H",
        "Content-Type: binary/octet-stream",
        "--data-binary",
        &format!("@{}", py_path.display()),
        &url,
    ]);
    assert_eq!(code, 200, "{body}");

    // Refused before acceptance, with why.
    let (code, body) = curl(&[
        "-H",
        "Content-Type: binary/octet-stream",
        "--data-binary",
        "x",
        &format!("{api}/ingest?from=1&until=2"),
    ]);
    assert_eq!(code, 400);
    assert!(body.contains("no name parameter"), "{body}");
    let (code, body) = curl(&[
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        "{}",
        &format!("{api}/ingest?name=a&from=1&until=2"),
    ]);
    assert_eq!(code, 400);
    assert!(body.contains("unsupported Content-Type"), "{body}");

    // Over the limit: refused whole, on 9529 (whose own cap is larger) and on 4040.
    let big = dir.path().join("big.pprof");
    std::fs::write(&big, vec![1u8; 9 << 20]).unwrap();
    for base in [api, format!("http://127.0.0.1:{}", s.port)] {
        let (code, body) = curl(&[
            "-H",
            "Content-Type: binary/octet-stream",
            "--data-binary",
            &format!("@{}", big.display()),
            &format!("{base}/ingest?name=big&from=1700000000&until=1700000010"),
        ]);
        assert!(matches!(code, 400 | 413), "{base}: {code} {body}");
    }
    let worker = s.agent.worker_pid("pyroscope");

    let got =
        s.rt.block_on(
            s.dataway
                .wait_points(Category::Profiling, 2, Duration::from_secs(30)),
        )
        .unwrap();
    let go = got
        .iter()
        .find(|p| event(p)["language"] == "golang")
        .unwrap();
    let ev = event(go);
    assert_eq!(ev["profiler"], "pyroscope");
    assert_eq!(ev["format"], "pprof");
    assert_eq!(ev["attachments"], serde_json::json!(["delta-heap.pprof"]));
    assert_eq!(ev["start"], "2023-11-14T22:13:20Z");
    assert_eq!(ev["end"], "2023-11-14T22:13:30Z");
    let tags = ev["tags_profiler"].as_str().unwrap();
    for t in [
        "service:go-app",
        "env:prod",
        "version:1.2",
        "team:e2e",
        "language:golang",
    ] {
        assert!(tags.contains(t), "{t} in {tags}");
    }
    assert_eq!(attachment(go, "delta-heap.pprof"), &go_profile[..]);
    assert_eq!(
        attachment(go, "sample_type_config"),
        br#"{"inuse_space":{"units":"bytes"}}"#
    );
    let py = got
        .iter()
        .find(|p| event(p)["language"] == "python")
        .unwrap();
    assert_eq!(event(py)["start"], "2023-11-14T22:13:40Z");
    assert_eq!(attachment(py, "auto.pprof"), &py_profile[..]);
    let uploads: Vec<_> = s
        .dataway
        .requests()
        .into_iter()
        .filter(|r| r.category == "profiling")
        .collect();
    assert_eq!(uploads.len(), 2, "refused uploads never reach Dataway");
    assert_eq!(s.agent.worker_pid("pyroscope"), worker, "no worker restart");
    assert!(
        uploads
            .iter()
            .all(|r| r.status == 200 && !r.header("x-datakit-version").is_empty())
    );
    // Counted: two refusals.
    let refused = s.agent.wait_metric_at_least(
        r#"datakit_input_parse_errors_total{input="pyroscope",reason="content_type"}"#,
        1.0,
        Duration::from_secs(10),
    );
    assert_eq!(refused, 1.0);
}

/// A Python program profiled by pyroscope-io as application `app`, uploading to `server`,
/// running until `stop` exists or 60 s have passed.
const PROFILED: &str = r#"
import os, sys, time, pyroscope
server, stop, app = sys.argv[1], sys.argv[2], sys.argv[3]
pyroscope.configure(application_name=app, server_address=server,
                    tags={"region": "eu"}, sample_rate=100)
def busy():
    return sum(i * i for i in range(20000))
deadline = time.time() + 60
while time.time() < deadline and not os.path.exists(stop):
    busy()
pyroscope.shutdown()
"#;

#[test]
fn pyroscope_io_profiling_python_programs_on_4040_and_9529_reaches_dataways_profiling_upload() {
    if !dk_proto::testing::require_python_modules(&["pyroscope"], "'pyroscope-io<1'") {
        return;
    }
    let version = Command::new("python3")
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('pyroscope-io'))",
        ])
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    assert!(
        version.starts_with("0."),
        "pyroscope-io {version} speaks the push.v1 API, not /ingest: pip install 'pyroscope-io<1' (scripts/test.sh does)"
    );
    let s = start();
    let dir = tempfile::tempdir().unwrap();
    let stop = dir.path().join("stop");
    let spawn = |server: String, app: &str| {
        Command::new("python3")
            .args(["-c", PROFILED])
            .arg(server)
            .arg(&stop)
            .arg(app)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut children = [
        spawn(format!("http://127.0.0.1:{}", s.port), "e2e.py.app"),
        spawn(format!("http://{}", s.agent.api), "e2e.py.api"),
    ];
    // pyroscope-io uploads every 10 s: wait for one profile of each program.
    let service = |p: &Point| {
        p.get_field(EVENT_FIELD)
            .map(|_| event(p)["tags_profiler"].to_string())
    };
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut want = 1;
    let got = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let got =
            s.rt.block_on(s.dataway.wait_points(Category::Profiling, want, left))
                .unwrap_or_else(|e| panic!("{e}\n{}", s.agent.log()));
        let seen = |app: &str| {
            got.iter()
                .any(|p| service(p).is_some_and(|t| t.contains(&format!("service:{app},"))))
        };
        if seen("e2e.py.app") && seen("e2e.py.api") {
            break got;
        }
        want = got.len() + 1;
    };
    std::fs::write(&stop, b"").unwrap();
    for c in &mut children {
        let _ = c.wait();
    }
    let from_api = got
        .iter()
        .find(|p| service(p).is_some_and(|t| t.contains("service:e2e.py.api,")))
        .unwrap();
    assert_eq!(event(from_api)["language"], "python");
    // 9529 forwards the body as sent too (Content-Encoding: gzip, kept as Datakit does).
    let raw = attachment(from_api, "auto.pprof");
    assert!(
        raw.len() > 20 && raw[..2] == *b"\x1f\x8b",
        "{:?}",
        &raw[..2]
    );
    let p = got
        .iter()
        .find(|p| service(p).is_some_and(|t| t.contains("service:e2e.py.app,")))
        .unwrap();
    let ev = event(p);
    assert_eq!(ev["language"], "python", "{ev}");
    assert_eq!(ev["format"], "pprof");
    assert_eq!(ev["attachments"], serde_json::json!(["auto.pprof"]));
    let tags = ev["tags_profiler"].as_str().unwrap();
    // (pyroscope-io 0.8 sends its configured tags only with later uploads, if at all.)
    for t in [
        "service:e2e.py.app",
        "spyName:pyspy",
        "sampleRate:100",
        "team:e2e",
    ] {
        assert!(tags.contains(t), "{t} in {tags}");
    }
    // The span is the client's 10 s upload window.
    let secs = |k: &str| {
        let t = ev[k].as_str().unwrap();
        let hms = &t[11..19];
        let v: Vec<u64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
        v[0] * 3600 + v[1] * 60 + v[2]
    };
    let span = (secs("end") + 86_400 - secs("start")) % 86_400;
    assert!((1..=11).contains(&span), "{ev}");
    // The gzip pprof pyroscope-io sends, forwarded as sent.
    let pprof = attachment(p, "auto.pprof");
    assert_eq!(&pprof[..2], b"\x1f\x8b", "a gzip pprof");
    assert!(pprof.len() > 20);
}

#[test]
fn ingest_on_9529_answers_503_while_the_worker_restarts_and_a_kill_9_never_takes_9529_down() {
    let s = start();
    let api = s.agent.api;
    let body = vec![7u8; 2048];
    let post = |api: std::net::SocketAddr| {
        try_request(
            api,
            "POST",
            "/ingest?name=loop&from=1700000000&until=1700000010&spyName=gospy",
            &[("Content-Type", "binary/octet-stream")],
            &body,
        )
    };
    wait_for("the /ingest route served", Duration::from_secs(20), || {
        post(api).ok().filter(|(c, _)| *c == 200)
    });
    // A request loop runs while the worker is killed.
    let stop = Arc::new(AtomicBool::new(false));
    let looping = {
        let (stop, body) = (stop.clone(), body.clone());
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let r = try_request(
                    api,
                    "POST",
                    "/ingest?name=loop&from=1700000000&until=1700000010&spyName=gospy",
                    &[("Content-Type", "binary/octet-stream")],
                    &body,
                );
                seen.push(r.map(|(c, b)| (c, String::from_utf8_lossy(&b).to_string())));
            }
            seen
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let worker = s.agent.worker_pid("pyroscope").unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(worker as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    wait_for("a new pyroscope worker", Duration::from_secs(20), || {
        s.agent
            .worker_pid("pyroscope")
            .filter(|p| *p != worker)
            .map(|_| ())
    });
    wait_for(
        "/ingest served by the new worker",
        Duration::from_secs(20),
        || post(api).ok().filter(|(c, _)| *c == 200),
    );
    stop.store(true, Ordering::Relaxed);
    let seen = looping.join().unwrap();
    assert!(Instant::now() < deadline);
    let mut unavailable = 0;
    for r in &seen {
        let (code, body) = r.as_ref().expect("9529 always answers");
        match code {
            200 => {}
            503 => {
                unavailable += 1;
                assert!(
                    body.contains("pyroscope") && body.contains("retry"),
                    "{body}"
                );
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(seen.len() > 3, "{} requests", seen.len());
    assert!(
        unavailable >= 1,
        "a 503 while the worker restarted: {seen:?}"
    );
    assert_eq!(s.agent.request("GET", "/v1/ping", &[], b"").0, 200);
}
