//! The cat input on the real binary. No packaged CAT client exists, so the test carries its
//! own NT1 encoder written from the protocol (the CAT Java client's `NativeMessageCodec`:
//! a big-endian u32 length, `NT1`, ten LEB128-length-prefixed header strings, then `t`/`T`/
//! `E`/`M`/`L`/`H` records), independent of the agent's decoder. It sends a transaction tree
//! and a heartbeat and checks the span and the metrics in the local sink; a stray `T` and an
//! oversized packet do not take the worker down. `GET /cat/s/router` on the API port answers
//! the instance's client settings, and 503 (never a dead API) while the worker restarts.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use dk_proto::{Point, Value};

use crate::harness::{Agent, free_port, wait_for};

fn conf(port: u16) -> String {
    format!(
        r#"
[[inputs.cat]]
  tcp_port = "{port}"
  sample = "0.5"
  routers = "127.0.0.1:{port};"
  [inputs.cat.tags]
    team = "ops"
"#
    )
}

/// The client side of NT1.
struct Nt1(Vec<u8>);

impl Nt1 {
    /// A message tree's body: version and the ten header strings.
    fn tree(header: [&str; 10]) -> Nt1 {
        let mut b = Nt1(b"NT1".to_vec());
        for s in header {
            b.string(s.as_bytes());
        }
        b
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn string(&mut self, s: &[u8]) {
        self.varint(s.len() as u64);
        self.0.extend_from_slice(s);
    }

    fn begin(mut self, ts_ms: u64, kind: &str, name: &str) -> Nt1 {
        self.0.push(b't');
        self.varint(ts_ms);
        self.string(kind.as_bytes());
        self.string(name.as_bytes());
        self
    }

    fn end(mut self, status: &str, duration_us: u64) -> Nt1 {
        self.0.push(b'T');
        self.string(status.as_bytes());
        self.string(b"");
        self.varint(duration_us);
        self
    }

    fn record(mut self, id: u8, ts_ms: u64, kind: &str, name: &str, data: &[u8]) -> Nt1 {
        self.0.push(id);
        self.varint(ts_ms);
        self.string(kind.as_bytes());
        self.string(name.as_bytes());
        self.string(b"0");
        self.string(data);
        self
    }

    /// The packet: length and body.
    fn packet(self) -> Vec<u8> {
        let mut out = (self.0.len() as u32).to_be_bytes().to_vec();
        out.extend(self.0);
        out
    }
}

const HEARTBEAT: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<status timestamp="2026-01-02 03:04:05.678">
   <runtime start-time="1767000000000" up-time="5000" java-version="17.0.9" user-name="app">
      <user-dir>/srv/shop</user-dir>
   </runtime>
   <os name="Linux" arch="amd64" version="6.1" available-processors="8" system-load-average="1.25" total-physical-memory="16000000000" free-physical-memory="4000000000" committed-virtual-memory="1" total-swap-space="0" free-swap-space="0"/>
   <disk><disk-volume id="/" total="100" free="40" usable="30"/></disk>
   <memory max="1000" total="800" free="200" heap-usage="500" non-heap-usage="100">
      <gc name="G1 Young Generation" count="12" time="340"/>
   </memory>
   <thread count="40" daemon-count="30" peek-count="41" total-started-count="90" cat-thread-count="2" pigeon-thread-count="0" http-thread-count="8"/>
   <message produced="1" overflowed="0" bytes="10"/>
</status>"#;

fn transaction(message_id: &str, name: &str) -> Vec<u8> {
    Nt1::tree([
        "shop",
        "web-7",
        "10.1.2.3",
        "main",
        "31",
        "http-nio-8080-exec-1",
        message_id,
        "",
        "",
        "",
    ])
    .begin(1_767_000_000_000, "URL", name)
    .begin(1_767_000_000_005, "SQL", "select")
    .record(b'E', 1_767_000_000_006, "SQL.Method", "SELECT", b"")
    .end("0", 1_200)
    .end("0", 42_000)
    .packet()
}

fn spans(agent: &Agent) -> Vec<Point> {
    agent
        .local_points("tracing")
        .into_iter()
        .filter(|p| p.name == "cat")
        .collect()
}

fn span_with(agent: &Agent, resource: &str) -> Point {
    wait_for(
        &format!("the span {resource} in the local sink"),
        Duration::from_secs(20),
        || {
            spans(agent)
                .into_iter()
                .find(|p| p.get_field("resource") == Some(&Value::S(resource.into())))
        },
    )
}

#[test]
fn nt1_trees_become_spans_heartbeats_become_metrics_and_bad_packets_do_not_stop_the_worker() {
    let port = free_port();
    let agent = Agent::start(&[("cat/cat.conf", &conf(port))]);
    let mut c = wait_for("the cat listener", Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", port)).ok()
    });
    // A stray end first (Datakit's goroutine panics on it), then a tree split across
    // writes, then a heartbeat.
    let stray = Nt1::tree(["shop", "web-7", "", "", "", "", "shop-stray", "", "", ""])
        .end("0", 1)
        .packet();
    c.write_all(&stray).unwrap();
    let tree = transaction("shop-0a010203-1", "/api/order");
    c.write_all(&tree[..17]).unwrap();
    c.flush().unwrap();
    c.write_all(&tree[17..]).unwrap();
    let hb = Nt1::tree([
        "shop",
        "web-7",
        "10.1.2.3",
        "cat",
        "9",
        "cat-StatusUpdateTask",
        "shop-0a010203-2",
        "",
        "",
        "",
    ])
    .begin(1_767_000_000_000, "System", "Status")
    .record(
        b'H',
        1_767_000_000_000,
        "Heartbeat",
        "10.1.2.3",
        HEARTBEAT.as_bytes(),
    )
    .end("0", 900)
    .packet();
    c.write_all(&hb).unwrap();

    let span = span_with(&agent, "/api/order");
    for (k, v) in [
        ("service", "shop"),
        ("source", "cat"),
        ("source_type", "URL"),
        ("span_type", "entry"),
        ("status", "ok"),
        ("address", "10.1.2.3"),
        ("thread_name", "http-nio-8080-exec-1"),
        ("team", "ops"),
    ] {
        assert_eq!(span.get_tag(k), Some(v), "tag {k} of {span:?}");
    }
    assert_eq!(
        span.get_field("trace_id"),
        Some(&Value::S("shop-0a010203-1".into()))
    );
    assert_eq!(span.get_field("parent_id"), Some(&Value::S("0".into())));
    assert_eq!(
        span.get_field("start"),
        Some(&Value::I(1_767_000_000_000_000))
    );
    assert_eq!(span.get_field("duration"), Some(&Value::I(42_000)));
    assert_eq!(
        spans(&agent).len(),
        1,
        "one span per tree, children not kept"
    );

    let metrics = wait_for("the heartbeat metrics", Duration::from_secs(20), || {
        let m: Vec<Point> = agent
            .local_points("metric")
            .into_iter()
            .filter(|p| p.name == "cat")
            .collect();
        (m.len() >= 6).then_some(m)
    });
    assert_eq!(metrics.len(), 6, "runtime, os, disk, memory, gc, thread");
    assert!(
        metrics
            .iter()
            .all(|p| p.get_tag("domain") == Some("shop") && p.get_tag("hostName") == Some("web-7"))
    );
    let thread = metrics
        .iter()
        .find(|p| p.get_field("thread_count").is_some())
        .unwrap();
    assert_eq!(
        thread.get_field("thread_http_thread_count"),
        Some(&Value::I(8))
    );
    let os = metrics
        .iter()
        .find(|p| p.get_tag("os_arch").is_some())
        .unwrap();
    assert_eq!(
        os.get_field("os_system-load-average"),
        Some(&Value::F(1.25))
    );
    let gc = metrics
        .iter()
        .find(|p| p.get_tag("memory_gc_name").is_some())
        .unwrap();
    assert_eq!(gc.get_field("memory_gc_count"), Some(&Value::I(12)));

    // An oversized packet: the agent closes that connection...
    let worker = agent.worker_pid("cat").expect("the cat worker runs");
    c.write_all(&(300 * 1024u32).to_be_bytes()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut rest = Vec::new();
    assert_eq!(
        c.read_to_end(&mut rest).ok(),
        Some(0),
        "closed by the agent"
    );
    // ...and the next good message, on a new connection, still arrives, from the same worker.
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(&transaction("shop-0a010203-3", "/api/after"))
        .unwrap();
    span_with(&agent, "/api/after");
    assert_eq!(
        agent.worker_pid("cat"),
        Some(worker),
        "the worker never restarted"
    );
    let errors = |reason: &str| {
        agent
            .metric(&format!(
                "datakit_input_parse_errors_total{{input=\"cat\",reason=\"{reason}\"}}"
            ))
            .unwrap_or(0.0)
    };
    wait_for("the bad packets counted", Duration::from_secs(20), || {
        (errors("stray_end") >= 1.0 && errors("too_large") >= 1.0).then_some(())
    });
}

#[test]
fn the_router_route_answers_the_configured_kvs_and_503_while_the_cat_worker_restarts() {
    let port = free_port();
    let agent = Agent::start(&[("cat/cat.conf", &conf(port))]);
    let get = || agent.request("GET", "/cat/s/router", &[], b"");
    let (status, body) = wait_for("the router route", Duration::from_secs(20), || {
        Some(get()).filter(|(s, _)| *s == 200)
    });
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"kvs": {
            "startTransactionTypes": "Cache.;Squirrel.",
            "block": "false",
            "routers": format!("127.0.0.1:{port};"),
            "sample": "0.5",
            "matchTransactionTypes": "SQL",
        }}),
        "{status}"
    );

    // kill -9 the worker during a request loop: 200 or a clear 503, never a dead API.
    let worker = agent.worker_pid("cat").unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(worker as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let mut saw_503 = false;
    wait_for(
        "the route served by a new worker",
        Duration::from_secs(20),
        || {
            let (status, body) = get();
            match status {
                503 => {
                    let body = String::from_utf8_lossy(&body);
                    assert!(body.contains("the cat worker"), "{body}");
                    saw_503 = true;
                    None
                }
                200 => agent.worker_pid("cat").filter(|p| *p != worker),
                other => panic!("unexpected {other}: {}", String::from_utf8_lossy(&body)),
            }
        },
    );
    assert!(saw_503, "the route said 503 while the worker was down");
    assert_eq!(agent.request("GET", "/v1/ping", &[], b"").0, 200);
}
