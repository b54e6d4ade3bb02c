//! The graphite input on the real binary: `nc` over TCP and UDP, tagged paths, a line split
//! across TCP writes, mapping rules, counters, and collectd's `write_graphite` plugin sending
//! real host metrics.

use std::io::Write;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dk_proto::{Point, Value};

use crate::harness::{Agent, free_port, wait_for};

const TS: i64 = 1_750_000_000;
const NS: i64 = 1_000_000_000;

fn conf(port: u16, extra: &str) -> String {
    format!(
        r#"
[[inputs.graphite]]
  address = "127.0.0.1:{port}"
  {extra}
  [inputs.graphite.tags]
    team = "ops"
"#
    )
}

/// The graphite points in the local sink that carry field `field`.
fn with_field(agent: &Agent, field: &str) -> Vec<Point> {
    agent
        .local_points("metric")
        .into_iter()
        .filter(|p| p.get_field(field).is_some())
        .collect()
}

fn wait_point(agent: &Agent, field: &str) -> Point {
    wait_for(
        &format!("a point with field {field}"),
        Duration::from_secs(20),
        || with_field(agent, field).into_iter().next(),
    )
}

/// Pipes `input` into `nc` with `args` and waits for it.
fn nc(args: &[&str], input: &[u8]) {
    let mut child = Command::new("nc")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nc (netcat-openbsd) is installed; run scripts/test.sh");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "nc {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The sum over every series of a counter on `/metrics` whose line contains `needle`.
fn counter(agent: &Agent, name: &str, needle: &str) -> f64 {
    agent
        .metrics()
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn assert_graphite_point(p: &Point, field: &str, value: f64, secs: i64) {
    assert_eq!(p.name, "graphite", "{p:?}");
    assert_eq!(p.get_field(field), Some(&Value::F(value)), "{p:?}");
    assert_eq!(
        p.time,
        secs * NS,
        "the client's timestamp is the point time: {p:?}"
    );
    assert_eq!(
        p.get_field("timestamp"),
        Some(&Value::I(secs * NS)),
        "{p:?}"
    );
    assert_eq!(
        p.get_tag("team"),
        Some("ops"),
        "[inputs.graphite.tags] apply: {p:?}"
    );
    assert_eq!(
        p.get_tag("e2e"),
        Some("yes"),
        "global host tags apply: {p:?}"
    );
    assert!(p.get_tag("host").is_some_and(|h| !h.is_empty()), "{p:?}");
}

#[test]
fn graphite_lines_over_tcp_and_udp_arrive_with_their_timestamps_and_tags() {
    if !dk_proto::testing::require_program("nc", "netcat-openbsd") {
        return;
    }
    let port = free_port();
    let agent = Agent::start(&[("graphite/graphite.conf", &conf(port, ""))]);
    let addr = port.to_string();

    nc(
        &["-N", "127.0.0.1", &addr],
        format!(
            "e2e.tcp.one 1.5 {TS}\r\ne2e.tcp.tagged;dc=eu;rack=a1 -2 {}.25\nnot-a-line\ne2e.tcp.last 3e3 {}",
            TS + 1,
            TS + 2
        )
        .as_bytes(),
    );
    nc(
        &["-u", "-w", "1", "127.0.0.1", &addr],
        format!("e2e.udp.one 42 {TS}\ne2e.udp.two;dc=us 0.125 {}\n", TS + 3).as_bytes(),
    );

    assert_graphite_point(&wait_point(&agent, "e2e_tcp_one"), "e2e_tcp_one", 1.5, TS);
    let tagged = wait_point(&agent, "e2e_tcp_tagged");
    assert_eq!(tagged.name, "graphite");
    assert_eq!(tagged.get_field("e2e_tcp_tagged"), Some(&Value::F(-2.0)));
    assert_eq!(tagged.time, (TS + 1) * NS + NS / 4);
    assert_eq!(
        (
            tagged.get_tag("dc"),
            tagged.get_tag("rack"),
            tagged.get_tag("team")
        ),
        (Some("eu"), Some("a1"), Some("ops"))
    );
    // The last line had no newline: it is kept when nc closes the connection.
    assert_graphite_point(
        &wait_point(&agent, "e2e_tcp_last"),
        "e2e_tcp_last",
        3000.0,
        TS + 2,
    );
    assert_graphite_point(&wait_point(&agent, "e2e_udp_one"), "e2e_udp_one", 42.0, TS);
    let two = wait_point(&agent, "e2e_udp_two");
    assert_graphite_point(&two, "e2e_udp_two", 0.125, TS + 3);
    assert_eq!(two.get_tag("dc"), Some("us"));

    // Exactly one point per line.
    assert_eq!(with_field(&agent, "e2e_tcp_one").len(), 1);
    assert_eq!(with_field(&agent, "e2e_udp_one").len(), 1);

    // The malformed line is counted; the connection and the datagram too.
    let needle = format!("127.0.0.1:{port}");
    wait_for(
        "graphite counters on /metrics",
        Duration::from_secs(10),
        || {
            (counter(
                &agent,
                "datakit_input_parse_errors_total",
                "input=\"graphite\"",
            ) >= 1.0
                && counter(&agent, "datakit_input_graphite_points_total", &needle) >= 5.0)
                .then_some(())
        },
    );
    assert_eq!(
        counter(&agent, "datakit_input_graphite_lines_total", &needle),
        6.0
    );
    assert_eq!(
        counter(
            &agent,
            "datakit_input_connections_total",
            &format!("tcp://{needle}")
        ),
        1.0
    );
    assert!(
        counter(
            &agent,
            "datakit_input_received_events_total",
            &format!("udp://{needle}")
        ) >= 1.0
    );
}

#[test]
fn graphite_joins_a_line_split_across_tcp_writes() {
    let port = free_port();
    let agent = Agent::start(&[("graphite/graphite.conf", &conf(port, ""))]);
    let needle = format!("127.0.0.1:{port}");
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(format!("split.first 1 {TS}\nsplit.sec").as_bytes())
        .unwrap();
    // The first read has been processed (its line counted) before the rest is written, so
    // the second line really arrives in two reads.
    wait_for(
        "the first line to be counted",
        Duration::from_secs(10),
        || (counter(&agent, "datakit_input_graphite_lines_total", &needle) >= 1.0).then_some(()),
    );
    s.write_all(format!("ond 2 {}\r\nsplit.third 3 {}", TS + 1, TS + 2).as_bytes())
        .unwrap();
    drop(s);
    assert_graphite_point(&wait_point(&agent, "split_first"), "split_first", 1.0, TS);
    assert_graphite_point(
        &wait_point(&agent, "split_second"),
        "split_second",
        2.0,
        TS + 1,
    );
    assert_graphite_point(
        &wait_point(&agent, "split_third"),
        "split_third",
        3.0,
        TS + 2,
    );
    assert!(with_field(&agent, "split_sec").is_empty());
}

#[test]
fn graphite_mapping_rules_name_measurements_fields_and_tags() {
    if !dk_proto::testing::require_program("nc", "netcat-openbsd") {
        return;
    }
    let port = free_port();
    let rules = r#"
  [inputs.graphite.metric_mapper]
  [[inputs.graphite.metric_mapper.mappings]]
    match = "test.dispatcher.*.*.*"
    name = "dispatcher_events_total"
    measurement_name = "dispatcher_test"
    [inputs.graphite.metric_mapper.mappings.labels]
      action = "$2"
      job = "test_dispatcher"
      outcome = "$3"
      processor = "$1"
  [[inputs.graphite.metric_mapper.mappings]]
    match = '''servers\.(.*)\.networking\.subnetworks\.transmissions\.([a-z0-9-]+)\.(.*)'''
    match_type = "regex"
    name = "servers_networking_transmissions_${3}"
    measurement_name = "servers_networking"
    [inputs.graphite.metric_mapper.mappings.labels]
      hostname = "${1}"
      device = "${2}"
  [[inputs.graphite.metric_mapper.mappings]]
    match = "noisy.*"
    name = "dropped"
    action_type = "drop"
"#;
    let agent = Agent::start(&[("graphite/graphite.conf", &conf(port, rules))]);
    nc(
        &["-N", "127.0.0.1", &port.to_string()],
        format!(
            "test.dispatcher.FooProcessor.send.success 7 {TS}\n\
             servers.rack-003-server-c4de.networking.subnetworks.transmissions.eth0.failure.mean_rate 0.5 {TS}\n\
             noisy.metric 1 {TS}\n\
             test.web-server.foo.bar 9 {TS}\n"
        )
        .as_bytes(),
    );
    let d = wait_point(&agent, "dispatcher_events_total");
    assert_eq!(d.name, "dispatcher_test");
    assert_eq!(d.get_field("dispatcher_events_total"), Some(&Value::F(7.0)));
    for (k, v) in [
        ("processor", "FooProcessor"),
        ("action", "send"),
        ("outcome", "success"),
        ("job", "test_dispatcher"),
        ("team", "ops"),
    ] {
        assert_eq!(d.get_tag(k), Some(v), "{d:?}");
    }
    let s = wait_point(&agent, "servers_networking_transmissions_failure_mean_rate");
    assert_eq!(s.name, "servers_networking");
    assert_eq!(
        (s.get_tag("device"), s.get_tag("hostname")),
        (Some("eth0"), Some("rack-003-server-c4de"))
    );
    assert_graphite_point(
        &wait_point(&agent, "test_web_server_foo_bar"),
        "test_web_server_foo_bar",
        9.0,
        TS,
    );
    let needle = format!("127.0.0.1:{port}");
    wait_for("the drop to be counted", Duration::from_secs(10), || {
        (counter(&agent, "datakit_input_graphite_dropped_total", &needle) >= 1.0).then_some(())
    });
    assert!(
        agent
            .local_points("metric")
            .iter()
            .all(|p| p.get_field("dropped").is_none() && p.get_field("noisy_metric").is_none())
    );
}

/// collectd, killed when dropped.
struct Collectd(Child);

impl Drop for Collectd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn graphite_receives_collectd_write_graphite_host_metrics() {
    if !dk_proto::testing::require_program("/usr/sbin/collectd", "collectd-core") {
        return;
    }
    let port = free_port();
    let rules = r#"
  [inputs.graphite.metric_mapper]
  [[inputs.graphite.metric_mapper.mappings]]
    match = "collectd.*.memory.*"
    name = "${2}"
    measurement_name = "collectd_memory"
    [inputs.graphite.metric_mapper.mappings.labels]
      collectd_host = "$1"
"#;
    let agent = Agent::start(&[("graphite/graphite.conf", &conf(port, rules))]);
    let dir = tempfile::tempdir().unwrap();
    let conf_path = dir.path().join("collectd.conf");
    std::fs::write(
        &conf_path,
        format!(
            r#"# A real collectd for the graphite e2e test: cpu, memory and load every second,
# sent over write_graphite (TCP) to the agent under test.
Hostname "e2e-collectd"
FQDNLookup false
Interval 1
BaseDir "{dir}"
PIDFile "{dir}/collectd.pid"
PluginDir "/usr/lib/collectd"
TypesDB "/usr/share/collectd/types.db"
AutoLoadPlugin false
LoadPlugin cpu
LoadPlugin memory
LoadPlugin load
LoadPlugin write_graphite
<Plugin write_graphite>
  <Node "datakit">
    Host "127.0.0.1"
    Port "{port}"
    Protocol "tcp"
    Prefix "collectd."
    EscapeCharacter "_"
    StoreRates true
    AlwaysAppendDS false
  </Node>
</Plugin>
"#,
            dir = dir.path().display()
        ),
    )
    .unwrap();
    let collectd = Collectd(
        Command::new("/usr/sbin/collectd")
            .arg("-f")
            .arg("-C")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("collectd (collectd-core) is installed; run scripts/test.sh"),
    );

    let (load, cpu, mem) = wait_for(
        "collectd's load, cpu and memory metrics",
        Duration::from_secs(30),
        || {
            let pts = agent.local_points("metric");
            let find = |pred: &dyn Fn(&Point) -> bool| pts.iter().find(|p| pred(p)).cloned();
            let load = find(&|p| {
                p.get_field("collectd_e2e_collectd_load_load_shortterm")
                    .is_some()
            })?;
            let cpu = find(&|p| {
                p.get_field("collectd_e2e_collectd_cpu_0_cpu_idle")
                    .is_some()
            })?;
            let mem =
                find(&|p| p.name == "collectd_memory" && p.get_field("memory_used").is_some())?;
            Some((load, cpu, mem))
        },
    );
    drop(collectd);

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for p in [&load, &cpu, &mem] {
        // collectd stamps whole seconds of its own clock.
        assert_eq!(p.time % NS, 0, "{p:?}");
        assert!((p.time / NS - now).abs() < 120, "{p:?}");
        assert_eq!(p.get_field("timestamp"), Some(&Value::I(p.time)), "{p:?}");
        assert_eq!(p.get_tag("team"), Some("ops"), "{p:?}");
    }
    assert_eq!(load.name, "graphite");
    for f in ["midterm", "longterm"] {
        let key = format!("collectd_e2e_collectd_load_load_{f}");
        assert!(
            with_field(&agent, &key)
                .iter()
                .all(|p| p.name == "graphite"),
            "{key}"
        );
    }
    let Some(Value::F(idle)) = cpu.get_field("collectd_e2e_collectd_cpu_0_cpu_idle") else {
        panic!("{cpu:?}");
    };
    assert!(*idle >= 0.0, "{cpu:?}");
    assert_eq!(mem.get_tag("collectd_host"), Some("e2e-collectd"));
    let Some(Value::F(used)) = mem.get_field("memory_used") else {
        panic!("{mem:?}");
    };
    assert!(*used > 0.0, "{mem:?}");
}
