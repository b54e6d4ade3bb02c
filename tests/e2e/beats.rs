//! The beats_output input on the real binary, driven by the real `pylogbeat` client: batches
//! are acknowledged only once durable, so with the agent killed (`kill -9` of the
//! supervisor) in the middle, the client resends what was not acknowledged and every event
//! it was told is safe is in the local sink after the restart.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dk_proto::Value;

use crate::harness::{Agent, free_port, wait_for};

fn conf(port: u16) -> String {
    format!(
        r#"
[[inputs.beats_output]]
  listen = "tcp://127.0.0.1:{port}"
  source = "pybeat"
  [inputs.beats_output.tags]
    team = "ops"
"#
    )
}

/// Sends `batches` batches of `size` events with pylogbeat; a batch that fails (agent gone)
/// is sent again on a new connection until it is acknowledged. Prints `acked <batch>` after
/// each acknowledged batch.
const CLIENT: &str = r#"
import sys, time
from pylogbeat import PyLogBeatClient
port, batches, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
deadline = time.time() + 90
client = None
for b in range(batches):
    events = [{"message": f"ev-{b * size + i}", "host": {"name": "web-1"},
               "log": {"file": {"path": "/var/log/app.log"}}, "fields": {"batch": b, "kind": "e2e"}}
              for i in range(size)]
    while True:
        try:
            if client is None:
                client = PyLogBeatClient("127.0.0.1", port, timeout=5)
                client.connect()
            client.send(events)
            break
        except Exception as e:
            if time.time() > deadline:
                raise
            try:
                client.close()
            except Exception:
                pass
            client = None
            time.sleep(0.05)
    print(f"acked {b}", flush=True)
print("done", flush=True)
"#;

#[test]
fn pylogbeat_batches_survive_a_kill_9_mid_stream_and_nothing_acknowledged_is_lost() {
    if !dk_proto::testing::require_python_modules(&["pylogbeat"], "pylogbeat") {
        return;
    }
    let port = free_port();
    let mut agent = Agent::start(&[("beats_output/beats_output.conf", &conf(port))]);
    let (batches, size) = (120usize, 50usize);
    let mut client = Command::new("python3")
        .args(["-c", CLIENT])
        .args([port.to_string(), batches.to_string(), size.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let out = client.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    // Kill the agent once a few batches are through, while the client keeps sending.
    let mut acked: Vec<usize> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.len() < 10 {
        assert!(
            Instant::now() < deadline,
            "no batches acknowledged; log:\n{}",
            agent.log()
        );
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200))
            && let Some(b) = line.strip_prefix("acked ")
        {
            acked.push(b.parse().unwrap());
        }
    }
    agent.crash_and_restart();
    let mut done = false;
    while !done {
        assert!(
            Instant::now() < deadline + Duration::from_secs(60),
            "client did not finish; log:\n{}",
            agent.log()
        );
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) if line == "done" => done = true,
            Ok(line) => acked.push(line.strip_prefix("acked ").unwrap().parse().unwrap()),
            Err(_) => {}
        }
    }
    let status = client.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut client.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "pylogbeat client failed: {err}");
    assert_eq!(
        acked,
        (0..batches).collect::<Vec<_>>(),
        "every batch acknowledged in order"
    );

    // Every acknowledged event is in the local sink (at least once).
    let want: HashSet<String> = (0..batches * size).map(|i| format!("ev-{i}")).collect();
    let seen = wait_for(
        "every acknowledged event in the local sink",
        Duration::from_secs(30),
        || {
            let mut seen: HashMap<String, usize> = HashMap::new();
            for p in agent
                .local_points("logging")
                .iter()
                .filter(|p| p.name == "pybeat")
            {
                if let Some(Value::S(m)) = p.get_field("message") {
                    *seen.entry(m.clone()).or_default() += 1;
                }
            }
            want.iter().all(|m| seen.contains_key(m)).then_some(seen)
        },
    );
    let dupes: usize = seen.values().map(|n| n - 1).sum();
    assert!(seen.keys().all(|m| want.contains(m)), "no stray events");
    // Resent windows may arrive twice; at most the batches in flight at the kill.
    assert!(dupes <= 4 * size, "{dupes} duplicates");
    let p = agent
        .local_points("logging")
        .into_iter()
        .find(|p| p.name == "pybeat")
        .unwrap();
    let tag = |k: &str| p.tags.iter().find(|(t, _)| t == k).map(|(_, v)| v.clone());
    assert_eq!(tag("host").as_deref(), Some("web-1"));
    assert_eq!(tag("filepath").as_deref(), Some("/var/log/app.log"));
    assert_eq!(tag("service").as_deref(), Some("pybeat"));
    assert_eq!(tag("team").as_deref(), Some("ops"));
    assert_eq!(tag("kind").as_deref(), Some("e2e"));
    assert_eq!(p.get_field("status"), Some(&Value::S("info".into())));
    assert!(matches!(p.get_field("batch"), Some(Value::F(_))));
    eprintln!(
        "beats e2e: {} events, {dupes} duplicates after the kill",
        want.len()
    );
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// pylogbeat over TLS (`ssl_enable`, `ssl_verify` against the test CA's `ca_certs`): batches are
/// acknowledged and stored; pylogbeat without TLS on the TLS port, and pylogbeat trusting
/// another CA, get nothing acknowledged and are counted as failed handshakes.
const TLS_CLIENT: &str = r#"
import sys
from pylogbeat import PyLogBeatClient
port, ca, batches = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
for b in range(batches):
    client = PyLogBeatClient("127.0.0.1", port, timeout=10, ssl_enable=True, ssl_verify=True,
                             ca_certs=ca)
    client.connect()
    client.send([{"message": f"tls-{b}-{i}", "host": {"name": "web-2"}} for i in range(20)])
    client.close()
    print(f"acked {b}", flush=True)
for ssl, ca_file in [(False, None), (True, sys.argv[4])]:
    client = PyLogBeatClient("127.0.0.1", port, timeout=3, ssl_enable=ssl, ssl_verify=True,
                             ca_certs=ca_file)
    try:
        client.connect()
        client.send([{"message": "must not arrive"}])
        print("unexpected ack", flush=True)
    except Exception as e:
        print(f"refused {type(e).__name__}", flush=True)
"#;

#[test]
fn pylogbeat_over_tls_trusting_the_test_ca_is_acknowledged_and_others_are_refused() {
    if !dk_proto::testing::require_python_modules(&["pylogbeat"], "pylogbeat") {
        return;
    }
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let ca_for = |name: &str| {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    };
    let ca = ca_for("beats test CA");
    let other = ca_for("another CA");
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    std::fs::write(path("ca.pem"), pem("CERTIFICATE", ca.der())).unwrap();
    std::fs::write(path("other.pem"), pem("CERTIFICATE", other.der())).unwrap();
    std::fs::write(path("cert.pem"), pem("CERTIFICATE", cert.der())).unwrap();
    std::fs::write(path("key.pem"), pem("PRIVATE KEY", &key.serialize_der())).unwrap();

    let port = free_port();
    let conf = format!(
        r#"
[[inputs.beats_output]]
  listen = "tcp://127.0.0.1:{port}"
  source = "tlsbeat"
  tls_cert_file = "{}"
  tls_key_file = "{}"
  tls_handshake_timeout = "2s"
"#,
        path("cert.pem"),
        path("key.pem")
    );
    let agent = Agent::start(&[("beats_output/beats_output.conf", &conf)]);
    let batches = 5usize;
    let out = Command::new("python3")
        .args(["-c", TLS_CLIENT])
        .args([
            port.to_string(),
            path("ca.pem"),
            batches.to_string(),
            path("other.pem"),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pylogbeat over TLS failed: {stdout}{}\nagent log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        agent.log()
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        &lines[..batches],
        &(0..batches)
            .map(|b| format!("acked {b}"))
            .collect::<Vec<_>>()
    );
    assert_eq!(lines.len(), batches + 2, "{stdout}");
    assert!(
        lines[batches..].iter().all(|l| l.starts_with("refused")),
        "{stdout}"
    );
    let want: HashSet<String> = (0..batches)
        .flat_map(|b| (0..20).map(move |i| format!("tls-{b}-{i}")))
        .collect();
    let got = wait_for(
        "every TLS event in the local sink",
        Duration::from_secs(30),
        || {
            let got: HashSet<String> = agent
                .local_points("logging")
                .iter()
                .filter(|p| p.name == "tlsbeat")
                .filter_map(|p| match p.get_field("message") {
                    Some(Value::S(m)) => Some(m.clone()),
                    _ => None,
                })
                .collect();
            want.is_subset(&got).then_some(got)
        },
    );
    assert_eq!(got, want, "nothing from the refused clients");
    agent.wait_metric_at_least(
        "datakit_input_dropped_total{input=\"beats_output\",reason=\"tls_handshake\"}",
        2.0,
        Duration::from_secs(10),
    );
}
