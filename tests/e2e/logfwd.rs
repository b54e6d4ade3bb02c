//! The logfwdserver input on the real binary, driven by the real Python `websockets` client
//! sending log messages as the logfwd sidecar does (text frames, one JSON message each): the
//! points arrive with their tags and fields; a message that is not JSON is counted and
//! dropped while the connection stays; an oversized frame closes the connection with 1009.

use std::process::Command;
use std::time::Duration;

use dk_proto::{Point, Value};

use crate::harness::{Agent, free_port, wait_for};

fn conf(port: u16) -> String {
    format!(
        r#"
[inputs.logfwdserver]
  address = "127.0.0.1:{port}"
  [inputs.logfwdserver.tags]
    cluster = "k8s-test"
    filename = "overridden-by-the-message"
"#
    )
}

/// Connects (retrying until the listener is up), sends `n` logfwd messages, a bad one, two
/// more, pings, then a 2 MiB message; prints `pong`, then `closed <code>`.
const CLIENT: &str = r#"
import json, sys, time
from websockets.sync.client import connect
from websockets.exceptions import ConnectionClosed
port, n = int(sys.argv[1]), int(sys.argv[2])
deadline = time.time() + 20
while True:
    try:
        ws = connect(f"ws://127.0.0.1:{port}/logfwd", open_timeout=5, close_timeout=5)
        break
    except OSError:
        if time.time() > deadline:
            raise
        time.sleep(0.05)
def msg(i):
    return json.dumps({"type": "1", "source": "shop-api",
                       "tags": {"filename": "/var/log/shop/api.log", "pod_name": "api-0"},
                       "fields": {"line_no": i},
                       "log": f"line {i}"})
for i in range(n):
    ws.send(msg(i))
ws.send("not json")
ws.send(msg(n))
ws.send(msg(n + 1))
ws.ping().wait(5)
print("pong", flush=True)
ws.send("x" * (2 * 1024 * 1024))
try:
    ws.recv(timeout=10)
    print("no close", flush=True)
except ConnectionClosed as e:
    print(f"closed {e.rcvd.code if e.rcvd else None}", flush=True)
"#;

fn points(agent: &Agent) -> Vec<Point> {
    agent
        .local_points("logging")
        .into_iter()
        .filter(|p| p.name == "shop-api")
        .collect()
}

#[test]
fn websockets_messages_become_logs_bad_json_is_dropped_and_an_oversized_frame_closes_with_1009() {
    if !dk_proto::testing::require_python_modules(&["websockets"], "websockets") {
        return;
    }
    let port = free_port();
    let agent = Agent::start(&[("log/logfwdserver.conf", &conf(port))]);
    let n = 50usize;
    let out = Command::new("python3")
        .args(["-c", CLIENT, &port.to_string(), &n.to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "websockets client failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        agent.log()
    );
    assert_eq!(stdout.lines().collect::<Vec<_>>(), ["pong", "closed 1009"]);

    let got = wait_for(
        "every good message in the local sink",
        Duration::from_secs(20),
        || {
            let p = points(&agent);
            (p.len() >= n + 2).then_some(p)
        },
    );
    assert_eq!(
        got.len(),
        n + 2,
        "the bad message is dropped, the ones after it kept"
    );
    let mut lines: Vec<i64> = got
        .iter()
        .map(|p| match p.get_field("line_no") {
            Some(Value::I(i)) => *i,
            other => panic!("line_no {other:?} in {p:?}"),
        })
        .collect();
    lines.sort_unstable();
    assert_eq!(lines, (0..(n as i64 + 2)).collect::<Vec<_>>());
    let p = &got[0];
    assert_eq!(p.get_tag("filename"), Some("/var/log/shop/api.log"));
    assert_eq!(p.get_tag("pod_name"), Some("api-0"));
    assert_eq!(p.get_tag("cluster"), Some("k8s-test"));
    assert_eq!(p.get_field("status"), Some(&Value::S("info".into())));
    assert!(
        matches!(p.get_field("message"), Some(Value::S(m)) if m.starts_with("line ")),
        "{p:?}"
    );
    let errors = |reason: &str| {
        agent
            .metric(&format!(
                "datakit_input_parse_errors_total{{input=\"logfwdserver\",reason=\"{reason}\"}}"
            ))
            .unwrap_or(0.0)
    };
    wait_for(
        "the bad message and the big frame counted",
        Duration::from_secs(20),
        || (errors("json") == 1.0 && errors("too_big") == 1.0).then_some(()),
    );
}
