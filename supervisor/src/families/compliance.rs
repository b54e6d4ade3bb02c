//! The input compliance test (the idea of Vector's source compliance tests): every family of
//! [`super::all`], run from its own `conf.d` samples on loopback sockets, must expose the
//! uniform self-metrics of `dk_worker::telemetry` with its input names; a family that
//! listens must also count bytes, events, connections, parse errors and drops the same way.
//! A family added to the registry is checked without touching this file.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dk_proto::rpc::{InheritedListener, ListenerKind};
use dk_worker::telemetry::{UNIFORM, UNIFORM_ALL, encode, missing, sample};
use dk_worker::testing::{instances, spec, worker_config};
use dk_worker::{Emitter, Family, InputContext, ListenSpec};
use prometheus_client::registry::Registry;

/// A socket bound on loopback for one listen spec, whatever port the sample names.
struct Bound {
    spec: ListenSpec,
    fd: OwnedFd,
    /// Where to send to it.
    target: Target,
}

enum Target {
    Tcp(std::net::SocketAddr),
    Udp(std::net::SocketAddr),
    Unix(std::path::PathBuf),
    UnixStream(std::path::PathBuf),
}

fn bind(spec: &ListenSpec, dir: &std::path::Path, n: usize) -> Bound {
    let (fd, target) = match spec.kind {
        ListenerKind::Tcp => {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind tcp");
            let at = l.local_addr().expect("addr");
            (OwnedFd::from(l), Target::Tcp(at))
        }
        ListenerKind::Udp => {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
            let at = s.local_addr().expect("addr");
            (OwnedFd::from(s), Target::Udp(at))
        }
        ListenerKind::UnixDatagram => {
            let path = dir.join(format!("s{n}.sock"));
            let s = std::os::unix::net::UnixDatagram::bind(&path).expect("bind unixgram");
            (OwnedFd::from(s), Target::Unix(path))
        }
        ListenerKind::UnixStream => {
            let path = dir.join(format!("s{n}.sock"));
            let l = std::os::unix::net::UnixListener::bind(&path).expect("bind unix");
            (OwnedFd::from(l), Target::UnixStream(path))
        }
    };
    Bound {
        spec: spec.clone(),
        fd,
        target,
    }
}

fn send(target: &Target) {
    use std::io::Write;
    match target {
        Target::Tcp(at) => {
            let mut c = std::net::TcpStream::connect(at).expect("connect");
            c.write_all(b"compliance.probe 1\n").expect("write");
        }
        Target::Udp(at) => {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            s.send_to(b"compliance.probe:1|c\n", at).expect("send");
        }
        Target::Unix(path) => {
            let s = std::os::unix::net::UnixDatagram::unbound().expect("socket");
            s.send_to(b"compliance.probe:1|c\n", path).expect("send");
        }
        Target::UnixStream(path) => {
            let mut c = std::os::unix::net::UnixStream::connect(path).expect("connect");
            c.write_all(b"compliance.probe 1\n").expect("write");
        }
    }
}

/// Runs `family` from its samples, sends one message to every socket, and returns the
/// metrics text once `want` are all there (or the last text after 10 s), with the count of
/// instances per input.
async fn run_family(family: &'static dyn Family) -> (String, Vec<(String, usize)>, bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut specs = Vec::new();
    let mut bound = Vec::new();
    let mut counts = Vec::new();
    for (input, text) in family.samples() {
        let tables = instances(text, input);
        counts.push((input.to_string(), tables.len()));
        for toml in tables {
            assert_eq!(
                family.validate(input, &toml),
                Vec::new(),
                "{} sample of {input}",
                family.name()
            );
            for l in family.listeners(input, &toml) {
                let n = bound.len();
                bound.push(bind(&l, dir.path(), n));
            }
            specs.push(spec(input, "compliance.conf", &toml));
        }
    }
    let listens = !bound.is_empty();
    let inputs = family
        .build(&worker_config(family.name(), specs))
        .unwrap_or_else(|p| panic!("{} builds from its samples: {p:?}", family.name()));
    let (emitter, mut rx) = Emitter::channel(1024);
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let (mut ctx, stop, _pause) = InputContext::for_test(emitter);
    ctx.metrics = Arc::new(Mutex::new(Registry::default()));
    ctx.listeners = bound
        .iter()
        .map(|b| InheritedListener {
            address: b.spec.address.clone(),
            kind: b.spec.kind,
            fd: b.fd.as_raw_fd(),
        })
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for input in inputs {
        tasks.spawn(input.run(ctx.clone()));
    }
    let want: Vec<&str> = if listens {
        UNIFORM.to_vec()
    } else {
        UNIFORM_ALL.to_vec()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut sent = false;
    let text = loop {
        if !sent && listens {
            // Once the inputs run (their metrics registered), every socket gets a message.
            if !encode(&ctx).is_empty() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                for b in &bound {
                    send(&b.target);
                }
                sent = true;
            }
        }
        let text = encode(&ctx);
        let counted = !listens || events(&text, family.inputs()[0]) >= 1.0;
        if (counted && missing(&text, &want).is_empty()) || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    drop(bound);
    (text, counts, listens)
}

/// Datagrams and reads counted for `input` on all its sockets.
fn events(text: &str, input: &str) -> f64 {
    let label = format!("input=\"{input}\"");
    text.lines()
        .filter(|l| l.starts_with("datakit_input_received_events_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_exposes_the_uniform_self_metrics() {
    let mut failures = Vec::new();
    for family in super::all() {
        let (text, counts, listens) = run_family(family).await;
        let want: &[&str] = if listens { UNIFORM } else { UNIFORM_ALL };
        let gone = missing(&text, want);
        if !gone.is_empty() {
            failures.push(format!("{} does not expose {gone:?}", family.name()));
        }
        for (input, n) in counts {
            let got = sample(
                &text,
                "datakit_inputs_instance",
                &format!("input=\"{input}\""),
            );
            if got != n as f64 {
                failures.push(format!(
                    "{}: datakit_inputs_instance{{input=\"{input}\"}} is {got}, its samples have {n}",
                    family.name()
                ));
            }
        }
        if listens {
            // The message sent to each socket was counted under the family's input name.
            if events(&text, family.inputs()[0]) < 1.0 {
                failures.push(format!("{}: no received event counted", family.name()));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
