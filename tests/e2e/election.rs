//! Leader election with three agents on loopback, against a real etcd and against the fake
//! Dataway's election protocol: exactly one agent collects the socket input, a killed leader
//! is replaced within its lease, an isolated leader stops collecting, and the points carry the
//! election tags instead of the host tags.
// The etcd helpers serve only the tests built with the `etcd` feature (scripts/test.sh).
#![cfg_attr(not(feature = "etcd"), allow(dead_code, unused_imports))]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dk_proto::Point;
use dk_sinks::testing::{FakeDataway, Mode};
use serde_json::Value;

use crate::harness::{Agent, free_port, try_request, wait_for};

const NAMESPACE: &str = "e2e-fleet";
const TOKEN: &str = "tkn_0123456789abcdef0123456789abcdef";
const PAUSED_SERIES: &str = "datakit_worker_paused{family=\"socket\"}";

/// A real etcd on loopback ports, its data in a temp dir; restartable on the same data.
struct Etcd {
    bin: PathBuf,
    dir: tempfile::TempDir,
    client: u16,
    peer: u16,
    /// Plain-HTTP `/health`, also when clients need TLS.
    metrics: u16,
    /// (certificate, key) PEM files: clients connect over TLS.
    tls: Option<(PathBuf, PathBuf)>,
    child: Option<Child>,
}

impl Etcd {
    /// Starts etcd, waiting until `/health` says so; `None` when etcd is not installed (and
    /// peers are not required).
    fn start() -> Option<Etcd> {
        Self::start_with(false)
    }

    /// As [`Etcd::start`]; with `tls`, clients must connect over TLS (a self-signed
    /// certificate for 127.0.0.1 in the data dir, `cert.pem`).
    fn start_with(tls: bool) -> Option<Etcd> {
        if !dk_proto::testing::require_program("etcd", "etcd-server") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let tls = tls.then(|| {
            let c = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
            let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            std::fs::write(&cert, pem("CERTIFICATE", c.cert.der())).unwrap();
            std::fs::write(&key, pem("PRIVATE KEY", &c.signing_key.serialize_der())).unwrap();
            (cert, key)
        });
        let mut etcd = Etcd {
            bin: PathBuf::from("etcd"),
            dir,
            client: free_port(),
            peer: free_port(),
            metrics: free_port(),
            tls,
            child: None,
        };
        etcd.spawn();
        Some(etcd)
    }

    fn endpoint(&self) -> String {
        match self.tls {
            Some(_) => format!("https://127.0.0.1:{}", self.client),
            None => format!("127.0.0.1:{}", self.client),
        }
    }

    fn spawn(&mut self) {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let client = format!("{scheme}://127.0.0.1:{}", self.client);
        let peer = format!("http://127.0.0.1:{}", self.peer);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("etcd.log"))
            .unwrap();
        let mut cmd = Command::new(&self.bin);
        if let Some((cert, key)) = &self.tls {
            cmd.arg("--cert-file").arg(cert).arg("--key-file").arg(key);
        }
        let metrics = format!("http://127.0.0.1:{}", self.metrics);
        let child = cmd
            .args(["--name", "e2e"])
            .args(["--listen-metrics-urls", &metrics])
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("e2e={peer}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.child = Some(child);
        let addr = ([127, 0, 0, 1], self.metrics).into();
        wait_for(
            "etcd to be healthy",
            Duration::from_secs(20),
            || match try_request(addr, "GET", "/health", &[], b"") {
                Ok((200, body)) if String::from_utf8_lossy(&body).contains("true") => Some(()),
                _ => None,
            },
        );
    }

    /// kill -9.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// DER as PEM.
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

/// The socket input probing a listener that accepts.
fn socket_conf(port: u16) -> String {
    format!(
        "[[inputs.socket]]\n  dest_url = [\"tcp://127.0.0.1:{port}\"]\n  interval = \"10s\"\n  tcp_timeout = \"2s\"\n"
    )
}

/// `[election]` with `keys` (one per line, indented) and `[election.tags] cluster = "c1"`.
fn election_conf(keys: &str) -> String {
    format!(
        r#"[election]
  enable = true
  namespace = "{NAMESPACE}"
  enable_namespace_tag = true
  {keys}
  [election.tags]
    cluster = "c1"
"#
    )
}

/// The agent's `/v1/election/info` content.
fn info(agent: &Agent) -> Value {
    let (status, body) = agent.request("GET", "/v1/election/info", &[], b"");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice::<Value>(&body).unwrap()["content"].clone()
}

fn status(agent: &Agent) -> String {
    info(agent)["status"].as_str().unwrap_or("").to_string()
}

/// The socket input's `tcp` points in the agent's local files.
fn tcp_points(agent: &Agent) -> Vec<Point> {
    agent
        .local_points("metric")
        .into_iter()
        .filter(|p| p.name == "tcp")
        .collect()
}

/// The fleet: agents by host name (`None` once killed).
struct Fleet {
    agents: Vec<(String, Option<Agent>)>,
}

impl Fleet {
    fn start(extra: &str, files: &[(&str, &str)]) -> Fleet {
        let agents = ["node-a", "node-b", "node-c"]
            .into_iter()
            .map(|name| {
                let agent = Agent::start_with(files, extra, &[("ENV_HOSTNAME", name)]);
                (name.to_string(), Some(agent))
            })
            .collect();
        Fleet { agents }
    }

    fn alive(&self) -> impl Iterator<Item = (&str, &Agent)> {
        self.agents
            .iter()
            .filter_map(|(n, a)| a.as_ref().map(|a| (n.as_str(), a)))
    }

    /// Waits until exactly one live agent leads and every other names it as the leader.
    fn wait_one_leader(&self, within: Duration) -> String {
        wait_for("exactly one leader", within, || {
            let states: Vec<(&str, Value)> = self.alive().map(|(n, a)| (n, info(a))).collect();
            let leaders: Vec<&str> = states
                .iter()
                .filter(|(_, s)| s["status"] == "success")
                .map(|(n, _)| *n)
                .collect();
            let [leader] = leaders[..] else {
                return None;
            };
            states
                .iter()
                .all(|(n, s)| {
                    *n == leader
                        || (s["status"] == "defeat" && s["leader"] == leader && s["paused"] == true)
                })
                .then(|| leader.to_string())
        })
    }

    fn agent(&self, name: &str) -> &Agent {
        self.alive().find(|(n, _)| *n == name).unwrap().1
    }

    fn kill(&mut self, name: &str) {
        let slot = self.agents.iter_mut().find(|(n, _)| n == name).unwrap();
        let mut agent = slot.1.take().unwrap();
        let _ = agent.child.kill();
        let _ = agent.child.wait();
    }
}

/// Checks a leader's socket points: election tags (and the namespace tag), no host tags.
fn assert_election_tags(points: &[Point]) {
    let p = points.first().expect("a point");
    assert_eq!(p.get_tag("cluster"), Some("c1"), "{p:?}");
    assert_eq!(p.get_tag("election_namespace"), Some(NAMESPACE), "{p:?}");
    assert_eq!(
        p.get_tag("e2e"),
        None,
        "host tags are not on election points: {p:?}"
    );
}

/// The scenario both backends pass. `isolate` cuts the backend off, `heal` brings it back.
/// Returns the failover time (leader killed → new leader's first point) and the last leader.
fn scenario(
    fleet: &mut Fleet,
    lease: Duration,
    isolate: &mut dyn FnMut(),
    heal: &mut dyn FnMut(),
) -> (Duration, String) {
    let first = fleet.wait_one_leader(Duration::from_secs(20));
    // The leader collects at once; the others do not.
    let points = wait_for(
        "the leader's socket points",
        Duration::from_secs(10),
        || Some(tcp_points(fleet.agent(&first))).filter(|p| !p.is_empty()),
    );
    assert_election_tags(&points);
    for (name, agent) in fleet.alive() {
        if name != first {
            assert!(
                tcp_points(agent).is_empty(),
                "{name} collected while {first} leads"
            );
            assert_eq!(status(agent), "defeat");
        }
        // The workers themselves report whether they are paused.
        let paused = if name == first { 0.0 } else { 1.0 };
        wait_for(
            &format!("{name}'s socket worker paused = {paused}"),
            Duration::from_secs(5),
            || (agent.metric(PAUSED_SERIES) == Some(paused)).then_some(()),
        );
    }
    assert!(
        fleet.agent(&first).metrics().contains(&format!(
            "datakit_election_status{{elected_id=\"{first}\",id=\"{first}\",namespace=\"{NAMESPACE}\",status=\"success\"}}"
        )),
        "the status metric names the leader"
    );

    // kill -9 of the leader: another takes over within the lease and collects at once.
    fleet.kill(&first);
    let killed = Instant::now();
    let second = fleet.wait_one_leader(lease + Duration::from_secs(8));
    assert_ne!(second, first);
    let points = wait_for(
        "the new leader's socket points",
        Duration::from_secs(10),
        || Some(tcp_points(fleet.agent(&second))).filter(|p| !p.is_empty()),
    );
    let failover = killed.elapsed();
    assert_election_tags(&points);
    assert!(
        failover < lease + Duration::from_secs(6),
        "failover took {failover:?} with a {lease:?} lease"
    );
    for (name, agent) in fleet.alive() {
        if name != second {
            assert!(
                tcp_points(agent).is_empty(),
                "{name} collected while {second} leads"
            );
        }
    }

    // The backend is cut off: the leader stops collecting once its lease is over.
    isolate();
    let cut = Instant::now();
    wait_for(
        "the isolated leader to step down",
        lease * 3 + Duration::from_secs(3),
        || {
            let i = info(fleet.agent(&second));
            (i["status"] == "defeat" && i["paused"] == true).then_some(())
        },
    );
    let stepped_down = cut.elapsed();
    assert!(
        fleet.agent(&second).metrics().contains(&format!(
            "datakit_election_pause_total{{id=\"{second}\",namespace=\"{NAMESPACE}\"}} 1"
        )),
        "paused once, when isolated (it started paused):\n{}",
        fleet.agent(&second).metrics()
    );
    assert!(
        fleet.alive().all(|(_, a)| status(a) != "success"),
        "nobody leads without the backend"
    );
    eprintln!("isolated leader stepped down after {stepped_down:?}");

    // The backend is back: exactly one leader again, and it collects.
    heal();
    let healed = Instant::now();
    let third = fleet.wait_one_leader(lease * 2 + Duration::from_secs(15));
    eprintln!(
        "one leader again {:?} after the backend came back",
        healed.elapsed()
    );
    let before = tcp_points(fleet.agent(&third)).len();
    wait_for("the leader collects again", Duration::from_secs(10), || {
        (tcp_points(fleet.agent(&third)).len() > before).then_some(())
    });
    (failover, third)
}

#[cfg(feature = "etcd")]
#[test]
fn etcd_elects_one_collector_replaces_a_killed_leader_and_an_isolated_leader_stops() {
    let Some(mut etcd) = Etcd::start() else {
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            drop(s);
        }
    });
    let lease = Duration::from_secs(2);
    let extra = election_conf(&format!(
        "backend = \"etcd\"\n  [election.etcd]\n    endpoints = [\"{}\"]\n    lease = \"2s\"",
        etcd.endpoint()
    ));
    let socket = socket_conf(port);
    let mut fleet = Fleet::start(&extra, &[("network/socket.conf", &socket)]);
    let etcd_cell = std::cell::RefCell::new(&mut etcd);
    let (failover, leader) = scenario(
        &mut fleet,
        lease,
        &mut || etcd_cell.borrow_mut().kill(),
        &mut || etcd_cell.borrow_mut().restart(),
    );
    eprintln!("etcd failover (leader killed -> new leader's first point): {failover:?}");
    // A leader that stops resigns: the other node leads at once, not after the lease (which
    // would take at least two thirds of it, 1.33 s, after the last renewal).
    fleet
        .agent(&leader)
        .signal(nix::sys::signal::Signal::SIGTERM);
    let stopping = Instant::now();
    let next = wait_for(
        "a leader after the old one resigned",
        Duration::from_secs(10),
        || {
            fleet
                .alive()
                .find(|(n, a)| *n != leader && status(a) == "success")
                .map(|(n, _)| n.to_string())
        },
    );
    let took = stopping.elapsed();
    eprintln!("{next} leads {took:?} after the leader was asked to stop");
    assert!(
        took < Duration::from_millis(1300),
        "{next} took over after {took:?}"
    );
}

#[test]
fn dataway_election_elects_one_collector_replaces_a_killed_leader_and_an_isolated_leader_stops() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fake = rt.block_on(FakeDataway::start(TOKEN)).unwrap();
    // Candidates ask every second; a leader without a heartbeat for 3 s loses its namespace.
    fake.set_election_timing(Duration::from_secs(1), Duration::from_secs(3));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            drop(s);
        }
    });
    let extra = format!(
        "[dataway]\n  urls = [\"{}\"]\n  [dataway.ntp]\n    enable = false\n[sinks.local]\n  enable = true\n{}",
        fake.url(),
        election_conf("backend = \"dataway\"")
    );
    let socket = socket_conf(port);
    let mut fleet = Fleet::start(&extra, &[("network/socket.conf", &socket)]);
    let (failover, _) = scenario(
        &mut fleet,
        Duration::from_secs(3),
        &mut || fake.set_mode(Mode::Status(503)),
        &mut || fake.set_mode(Mode::Ok),
    );
    eprintln!("Dataway failover (leader killed -> new leader's first point): {failover:?}");
    let reqs = fake.requests();
    assert!(
        reqs.iter()
            .any(|r| r.category == "heartbeat" && r.status == 200)
    );
    assert!(
        reqs.iter()
            .filter(|r| r.category == "election" || r.category == "heartbeat")
            .all(|r| r.query.contains(&format!("namespace={NAMESPACE}"))
                && r.query.contains("token=")),
        "every election request names the namespace and the token"
    );
}

#[test]
fn a_node_outside_the_whitelist_is_banned_and_does_not_collect_election_inputs() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fake = rt.block_on(FakeDataway::start(TOKEN)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // One election-aware instance and one with `election = false`, which always collects.
    let listener2 = TcpListener::bind("127.0.0.1:0").unwrap();
    let port2 = listener2.local_addr().unwrap().port();
    let conf = format!(
        "{}\n[[inputs.socket]]\n  dest_url = [\"tcp://127.0.0.1:{port2}\"]\n  interval = \"10s\"\n  election = false\n",
        socket_conf(port)
    );
    let extra = format!(
        "[dataway]\n  urls = [\"{}\"]\n  [dataway.ntp]\n    enable = false\n[sinks.local]\n  enable = true\n{}",
        fake.url(),
        election_conf("backend = \"dataway\"\n  node_whitelist = [\"node-x\"]")
    );
    let agent = Agent::start_with(
        &[("network/socket.conf", &conf)],
        &extra,
        &[("ENV_HOSTNAME", "node-b")],
    );
    let i = info(&agent);
    assert_eq!(i["status"], "banned", "{i}");
    assert_eq!(i["paused"], true, "{i}");
    // The excluded instance collects (host tags); the election-aware one does not.
    let points = wait_for(
        "the election = false instance's points",
        Duration::from_secs(25),
        || Some(tcp_points(&agent)).filter(|p| !p.is_empty()),
    );
    let port2 = port2.to_string();
    assert!(
        points
            .iter()
            .all(|p| p.get_tag("dest_port") == Some(port2.as_str())),
        "{points:?}"
    );
    assert_eq!(
        points[0].get_tag("e2e"),
        Some("yes"),
        "host tags on a non-election instance"
    );
    assert!(
        fake.requests().iter().all(|r| r.category != "election"),
        "a banned node does not campaign"
    );
    // A restarted worker comes up paused too.
    agent.wait_metric_at_least(PAUSED_SERIES, 1.0, Duration::from_secs(5));
    let old = agent.worker_pid("socket").unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for("a new socket worker", Duration::from_secs(10), || {
        agent.worker_pid("socket").filter(|p| *p != old)
    });
    agent.wait_metric_at_least(PAUSED_SERIES, 1.0, Duration::from_secs(10));
    drop(listener);
}

#[cfg(feature = "etcd")]
#[test]
fn etcd_with_authentication_elects_the_agent_with_the_password_and_refuses_a_wrong_one() {
    let Some(etcd) = Etcd::start() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = etcd_client::Client::connect([etcd.endpoint()], None)
            .await
            .unwrap();
        let _ = c.role_add("root").await;
        c.user_add("root", "s3cret", None).await.unwrap();
        c.user_grant_role("root", "root").await.unwrap();
        c.auth_enable().await.unwrap();
    });
    let conf = |password: &str| {
        election_conf(&format!(
            "backend = \"etcd\"\n  [election.etcd]\n    endpoints = [\"{}\"]\n    lease = \"2s\"\n    username = \"root\"\n    password = \"{password}\"",
            etcd.endpoint()
        ))
    };
    let wrong = Agent::start_with(&[], &conf("wrong"), &[("ENV_HOSTNAME", "node-w")]);
    let right = Agent::start_with(&[], &conf("s3cret"), &[("ENV_HOSTNAME", "node-r")]);
    wait_for(
        "the agent with the password to lead",
        Duration::from_secs(15),
        || (status(&right) == "success").then_some(()),
    );
    let i = wait_for(
        "the wrong password's error",
        Duration::from_secs(15),
        || {
            let i = info(&wrong);
            (!i["last_error"].as_str().unwrap_or("").is_empty()).then_some(i)
        },
    );
    assert_eq!(i["status"], "defeat", "{i}");
    assert_eq!(i["paused"], true, "{i}");
    assert!(
        i["last_error"].as_str().unwrap().contains(&etcd.endpoint()),
        "the error names the endpoint: {i}"
    );
    let (_, body) = wrong.request("GET", "/v1/lasterror", &[], b"");
    assert!(String::from_utf8_lossy(&body).contains("election"));
}

#[cfg(feature = "etcd")]
#[test]
fn etcd_over_tls_elects_an_agent_that_trusts_the_ca_and_refuses_one_that_does_not() {
    let Some(etcd) = Etcd::start_with(true) else {
        return;
    };
    let (cert, _) = etcd.tls.clone().unwrap();
    let other_ca = etcd.dir.path().join("other-ca.pem");
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    std::fs::write(&other_ca, pem("CERTIFICATE", other.cert.der())).unwrap();
    let conf = |ca: &std::path::Path| {
        election_conf(&format!(
            "backend = \"etcd\"\n  [election.etcd]\n    endpoints = [\"{}\"]\n    lease = \"2s\"\n    tls_ca = \"{}\"",
            etcd.endpoint(),
            ca.display()
        ))
    };
    let untrusting = Agent::start_with(&[], &conf(&other_ca), &[("ENV_HOSTNAME", "node-u")]);
    let trusting = Agent::start_with(&[], &conf(&cert), &[("ENV_HOSTNAME", "node-t")]);
    wait_for(
        "the agent that trusts the CA to lead",
        Duration::from_secs(15),
        || (status(&trusting) == "success").then_some(()),
    );
    let i = wait_for("the certificate error", Duration::from_secs(15), || {
        let i = info(&untrusting);
        (!i["last_error"].as_str().unwrap_or("").is_empty()).then_some(i)
    });
    assert_eq!(i["status"], "defeat", "{i}");
    assert_eq!(i["paused"], true, "{i}");
}
