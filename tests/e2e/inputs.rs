//! Host and socket inputs deliver Datakit's measurements to the local sink.

use std::net::{TcpListener, UdpSocket};
use std::time::Duration;

use dk_proto::{Point, Value};

use crate::harness::{Agent, wait_for};

const HOST_INPUTS: &str = r#"
[[inputs.cpu]]
  interval = "1s"
[[inputs.mem]]
  interval = "1s"
[[inputs.disk]]
  interval = "1s"
[[inputs.net]]
  interval = "1s"
[[inputs.system]]
  interval = "1s"
"#;

fn latest<'a>(points: &'a [Point], name: &str) -> Option<&'a Point> {
    points.iter().rev().find(|p| p.name == name)
}

/// Asserts a field's type; `"integer"` accepts Datakit's signed or unsigned integers (byte
/// counters from the kernel are uint64 in Datakit as here).
fn assert_field(p: &Point, key: &str, kind: &str) {
    let v = p
        .get_field(key)
        .unwrap_or_else(|| panic!("{} lacks field {key}: {p:?}", p.name));
    let ok = match kind {
        "integer" => matches!(v, Value::I(_) | Value::U(_)),
        _ => v.type_name() == kind,
    };
    assert!(
        ok,
        "{}.{key} has type {} ({v:?}), want {kind}",
        p.name,
        v.type_name()
    );
}

#[test]
fn host_points_arrive_in_the_local_sink_with_datakit_names_and_types() {
    let agent = Agent::start(&[("host/host.conf", HOST_INPUTS)]);
    let points = wait_for(
        "cpu, mem, disk, net and system points",
        Duration::from_secs(20),
        || {
            let pts = agent.local_points("metric");
            ["cpu", "mem", "disk", "net", "system"]
                .iter()
                .all(|m| latest(&pts, m).is_some())
                .then_some(pts)
        },
    );
    let hostname = latest(&points, "mem")
        .and_then(|p| p.get_tag("host"))
        .unwrap()
        .to_string();
    assert!(!hostname.is_empty());
    for p in &points {
        assert_eq!(
            p.get_tag("host"),
            Some(hostname.as_str()),
            "every point has the global host tag: {p:?}"
        );
        assert_eq!(
            p.get_tag("e2e"),
            Some("yes"),
            "global host tags are attached: {p:?}"
        );
    }
    let cpu = latest(&points, "cpu").unwrap();
    assert_eq!(cpu.get_tag("cpu"), Some("cpu-total"));
    for f in ["usage_user", "usage_system", "usage_idle", "usage_total"] {
        assert_field(cpu, f, "float");
    }
    let mem = latest(&points, "mem").unwrap();
    for f in ["total", "available", "used", "free"] {
        assert_field(mem, f, "integer");
    }
    assert_field(mem, "used_percent", "float");
    let total = match mem.get_field("total") {
        Some(Value::I(v)) => u64::try_from(*v).unwrap_or(0),
        Some(Value::U(v)) => *v,
        other => panic!("mem.total: {other:?}"),
    };
    assert!(total > 0);
    let disk = latest(&points, "disk").unwrap();
    for t in ["device", "fstype", "mount_point"] {
        assert!(disk.get_tag(t).is_some(), "disk tag {t}: {disk:?}");
    }
    for f in ["total", "free", "used"] {
        assert_field(disk, f, "integer");
    }
    assert_field(disk, "used_percent", "float");
    // Datakit also sends a `net` point with `interface=all` carrying the TCP/UDP protocol
    // counters; the per-interface points carry the byte and packet counters.
    let net = points
        .iter()
        .rev()
        .find(|p| p.name == "net" && p.get_tag("interface") != Some("all"))
        .expect("a per-interface net point");
    let all = points
        .iter()
        .find(|p| p.name == "net" && p.get_tag("interface") == Some("all"));
    assert!(
        all.is_some_and(|p| p.get_field("tcp_insegs").is_some()),
        "{all:?}"
    );
    assert!(net.get_tag("interface").is_some());
    for f in ["bytes_sent", "bytes_recv", "packets_sent", "packets_recv"] {
        assert_field(net, f, "integer");
    }
    let system = latest(&points, "system").unwrap();
    for f in ["load1", "load5", "load15"] {
        assert_field(system, f, "float");
    }
    for f in ["n_cpus", "uptime"] {
        assert_field(system, f, "integer");
    }
}

#[test]
fn socket_input_reports_tcp_and_udp_reachability() {
    let open_tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_tcp = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let open_udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let closed_udp = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let open_tcp_port = open_tcp.local_addr().unwrap().port();
    let open_udp_port = open_udp.local_addr().unwrap().port();
    // Keep accepting so the listener's backlog never fills.
    std::thread::spawn(move || {
        for s in open_tcp.incoming() {
            drop(s)
        }
    });
    let conf = format!(
        r#"
[[inputs.socket]]
  dest_url = ["tcp://127.0.0.1:{open_tcp_port}", "tcp://127.0.0.1:{closed_tcp}",
              "udp://127.0.0.1:{open_udp_port}", "udp://127.0.0.1:{closed_udp}"]
  interval = "10s"
  tcp_timeout = "2s"
  udp_timeout = "2s"
"#
    );
    let agent = Agent::start(&[("network/socket.conf", &conf)]);
    let find = |pts: &[Point], proto: &str, port: u16| -> Option<Point> {
        pts.iter()
            .find(|p| p.name == proto && p.get_tag("dest_port") == Some(port.to_string().as_str()))
            .cloned()
    };
    let points = wait_for(
        "tcp and udp dial-test points",
        Duration::from_secs(40),
        || {
            let pts = agent.local_points("metric");
            let all = find(&pts, "tcp", open_tcp_port).is_some()
                && find(&pts, "tcp", closed_tcp).is_some()
                && find(&pts, "udp", open_udp_port).is_some()
                && find(&pts, "udp", closed_udp).is_some();
            all.then_some(pts)
        },
    );
    let ok = find(&points, "tcp", open_tcp_port).unwrap();
    assert_eq!(ok.get_field("success"), Some(&Value::I(1)));
    assert_eq!(ok.get_tag("proto"), Some("tcp"));
    assert_eq!(ok.get_tag("dest_host"), Some("127.0.0.1"));
    let Some(Value::I(rt)) = ok.get_field("response_time") else {
        panic!("response_time: {ok:?}")
    };
    assert!(
        *rt > 0 && *rt < 2_000_000,
        "connect time {rt} µs is plausible on loopback"
    );
    assert!(matches!(ok.get_field("response_time_with_dns"), Some(Value::I(v)) if *v >= *rt));
    let refused = find(&points, "tcp", closed_tcp).unwrap();
    assert_eq!(refused.get_field("success"), Some(&Value::I(-1)));
    let udp_ok = find(&points, "udp", open_udp_port).unwrap();
    assert_eq!(
        udp_ok.get_field("success"),
        Some(&Value::I(1)),
        "a bound UDP port that stays silent counts as open"
    );
    let udp_closed = find(&points, "udp", closed_udp).unwrap();
    assert_eq!(
        udp_closed.get_field("success"),
        Some(&Value::I(-1)),
        "ICMP port unreachable means closed"
    );
    drop(open_udp);
}

/// A Python process listening on an ephemeral loopback port; killed on drop.
struct Listener(std::process::Child, u16);

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn python_listener() -> Listener {
    use std::io::BufRead;
    let mut child = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import socket,time\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen()\n\
             print(s.getsockname()[1],flush=True)\ntime.sleep(120)",
        )
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().unwrap();
    Listener(child, port)
}

#[test]
fn a_test_started_process_arrives_at_dataway_as_a_host_processes_object_with_its_port() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let fake = rt
        .block_on(dk_sinks::testing::FakeDataway::start("tkn_procs"))
        .unwrap();
    let py = python_listener();
    let conf = "[[inputs.host_processes]]\n  min_run_time = \"0s\"\n  enable_listen_ports = true\n  \
                open_metric = true\n  process_name = [\"^python3$\"]\n";
    let _agent = Agent::start_with(
        &[("host/host_processes.conf", conf)],
        &format!("[dataway]\n  urls = [\"{}\"]\n", fake.url()),
        &[],
    );
    let pid = i64::from(py.0.id());
    let object = wait_for(
        "the python process as a host_processes object at Dataway",
        Duration::from_secs(30),
        || {
            fake.points(dk_proto::Category::Object)
                .into_iter()
                .find(|p| p.name == "host_processes" && p.get_field("pid") == Some(&Value::I(pid)))
        },
    );
    assert_eq!(object.get_tag("process_name"), Some("python3"));
    assert_eq!(
        object.get_field("listen_ports"),
        Some(&Value::S(format!("[{}]", py.1)))
    );
    assert_eq!(object.get_tag("e2e"), Some("yes"), "global host tags");
    let host = object.get_tag("host").unwrap().to_string();
    assert_eq!(
        object.get_tag("name"),
        Some(format!("{host}_{pid}").as_str())
    );
    let metric = wait_for(
        "the python process as a host_processes metric at Dataway",
        Duration::from_secs(30),
        || {
            fake.points(dk_proto::Category::Metric)
                .into_iter()
                .find(|p| p.name == "host_processes" && p.get_tag("pid") == Some(&*pid.to_string()))
        },
    );
    assert_field(&metric, "rss", "integer");
    assert_field(&metric, "cpu_usage", "float");
    // The name filter applies to metrics: no other process is reported.
    assert!(
        fake.points(dk_proto::Category::Metric)
            .iter()
            .filter(|p| p.name == "host_processes")
            .all(|p| p.get_tag("process_name") == Some("python3"))
    );
}
