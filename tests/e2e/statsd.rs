//! StatsD / DogStatsD input: real clients (`nc`, Python `statsd`, Python `datadog`) over UDP
//! and a Unix datagram socket, aggregated values checked in the local sink, errors in /metrics.

use std::io::Write;
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dk_proto::{Point, Value};

use crate::harness::{Agent, bin, free_port, main_conf, wait_for, write_confd};

/// A free UDP port on loopback.
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends `data` as one datagram with OpenBSD netcat.
fn nc_udp(port: u16, data: &str) {
    let mut child = Command::new("nc")
        .args(["-u", "-w1", "127.0.0.1", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("nc runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(data.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "nc failed");
}

fn python(code: &str) {
    let out = Command::new("python3")
        .arg("-c")
        .arg(code)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn float(p: &Point, key: &str) -> f64 {
    match p.get_field(key) {
        Some(Value::F(v)) => *v,
        Some(Value::I(v)) => *v as f64,
        other => panic!("{} field {key} is {other:?}: {p:?}", p.name),
    }
}

/// Sum of a field over every point of a measurement whose tags include `tags`.
fn sum(points: &[Point], name: &str, field: &str, tags: &[(&str, &str)]) -> f64 {
    matching(points, name, field, tags)
        .iter()
        .map(|p| float(p, field))
        .sum()
}

fn matching<'a>(
    points: &'a [Point],
    name: &str,
    field: &str,
    tags: &[(&str, &str)],
) -> Vec<&'a Point> {
    points
        .iter()
        .filter(|p| p.name == name && p.get_field(field).is_some())
        .filter(|p| tags.iter().all(|(k, v)| p.get_tag(k) == Some(v)))
        .collect()
}

fn last<'a>(points: &'a [Point], name: &str, field: &str, tags: &[(&str, &str)]) -> &'a Point {
    matching(points, name, field, tags)
        .into_iter()
        .last()
        .unwrap_or_else(|| panic!("no {name}.{field} with {tags:?}"))
}

fn conf(port: u16, unix: &str, extra: &str) -> String {
    format!(
        r#"
[[inputs.statsd]]
  interval = "1s"
  protocol = "udp"
  service_address = "127.0.0.1:{port}"
  service_unix_address = "{unix}"
  datadog_extensions = true
  datadog_distributions = true
  percentiles = [50.0, 90.0, 100.0]
{extra}
"#
    )
}

#[test]
fn statsd_aggregates_every_type_from_nc_and_python_clients_over_udp_and_unix() {
    if !dk_proto::testing::require_program("nc", "netcat-openbsd")
        || !dk_proto::testing::require_python_modules(&["statsd", "datadog"], "statsd datadog")
    {
        return;
    }
    let port = free_udp_port();
    let sockdir = tempfile::tempdir().unwrap();
    let sock = sockdir.path().join("dsd.sock");
    let sock_text = sock.to_str().unwrap();
    let agent = Agent::start(&[("statsd/statsd.conf", &conf(port, sock_text, ""))]);

    // Raw lines with netcat: every type, rates, deltas, Influx bucket tags, both multi-value
    // forms, and two bad lines.
    nc_udp(
        port,
        "nc.hits:1|c\nnc.hits:2|c|@0.5\nnc.temp:10|g\nnc.temp:+5|g\nnc.temp:-3|g\n\
         nc.users:a|s\nnc.users:b|s\nnc.users:a|s\n\
         nc.lat:10|ms\nnc.lat:20|ms|@0.5\nnc.lat:30|ms\nnc.size,region=eu:100|h\n\
         nc.multi:1|c:7|g\nnc.packed:1:2:3|d\nnot a metric\nnc.bad:x|c\n",
    );
    // Python `statsd`, pipelined into one datagram.
    python(&format!(
        "import statsd\nc = statsd.StatsClient('127.0.0.1', {port})\n\
         with c.pipeline() as p:\n    p.incr('py.hits', 3); p.incr('py.hits'); p.decr('py.hits', 1)\n    \
         p.gauge('py.temp', 20); p.gauge('py.temp', 5, delta=True)\n    \
         p.timing('py.lat', 12); p.timing('py.lat', 18)\n    p.set('py.users', 'alice'); p.set('py.users', 'bob')\n"
    ));
    // Python `datadog` DogStatsD over UDP: tags, histogram, distribution, an event, a service
    // check and a timestamped gauge; then over the Unix socket.
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 60;
    python(&format!(
        "from datadog.dogstatsd import DogStatsd\n\
         d = DogStatsd(host='127.0.0.1', port={port}, disable_telemetry=True)\n\
         d.increment('dd.req', 2, tags=['env:prod', 'canary'])\n\
         d.increment('dd.req', 1, tags=['env:prod', 'canary'])\n\
         d.gauge('dd.conns', 42, tags=['env:prod'])\n\
         d.histogram('dd.size', 100)\n\
         d.distribution('dd.dur', 7)\n\
         d.event('Deploy', 'v2 is\\nlive', alert_type='success', tags=['env:prod'], hostname='web-1')\n\
         d.service_check('dd.up', 2, tags=['env:prod'], message='down')\n\
         d.gauge_with_timestamp('dd.ts', 5, {ts})\n\
         u = DogStatsd(socket_path='{sock_text}', disable_telemetry=True)\n\
         u.increment('uds.hits', 5, tags=['via:uds'])\n"
    ));

    let points = wait_for("every statsd series", Duration::from_secs(20), || {
        let pts = agent.local_points("metric");
        let done = sum(&pts, "nc", "hits", &[]) >= 5.0
            && sum(&pts, "py", "hits", &[]) >= 3.0
            && sum(&pts, "dd", "req", &[]) >= 3.0
            && sum(&pts, "uds", "hits", &[]) >= 5.0
            && !matching(&pts, "service_check", "status", &[]).is_empty()
            && !matching(&pts, "dd", "ts", &[]).is_empty()
            && !matching(&pts, "nc", "packed_count", &[]).is_empty();
        done.then_some(pts)
    });

    // Counters: summed, divided by the sample rate; tags as Datakit adds them.
    assert_eq!(sum(&points, "nc", "hits", &[]), 5.0);
    let hits = last(&points, "nc", "hits", &[]);
    assert_eq!(hits.get_tag("metric_type"), Some("counter"));
    assert_eq!(hits.get_tag("e2e"), Some("yes"), "global host tags added");
    assert!(hits.get_tag("host").is_some());
    assert_eq!(sum(&points, "py", "hits", &[]), 3.0);
    // Gauges: last value with signed deltas.
    assert_eq!(float(last(&points, "nc", "temp", &[]), "temp"), 12.0);
    assert_eq!(float(last(&points, "py", "temp", &[]), "temp"), 25.0);
    // Sets: distinct members.
    assert_eq!(sum(&points, "nc", "users", &[]), 2.0);
    assert_eq!(sum(&points, "py", "users", &[]), 2.0);
    // Timings (one datagram, so one flush): every statistic and the percentiles.
    let lat = last(&points, "nc", "lat_count", &[("metric_type", "timing")]);
    assert_eq!(lat.get_field("lat_count"), Some(&Value::I(4)));
    assert_eq!(float(lat, "lat_sum"), 80.0);
    assert_eq!(float(lat, "lat_mean"), 20.0);
    assert_eq!(float(lat, "lat_lower"), 10.0);
    assert_eq!(float(lat, "lat_upper"), 30.0);
    assert!((float(lat, "lat_stddev") - 50f64.sqrt()).abs() < 1e-9);
    assert_eq!(float(lat, "lat_50_percentile"), 20.0);
    assert_eq!(float(lat, "lat_90_percentile"), 30.0);
    assert_eq!(float(lat, "lat_100_percentile"), 30.0);
    let py_lat = last(&points, "py", "lat_mean", &[]);
    assert_eq!(float(py_lat, "lat_mean"), 15.0);
    let size = last(&points, "nc", "size_count", &[("region", "eu")]);
    assert_eq!(size.get_tag("metric_type"), Some("histogram"));
    assert_eq!(float(size, "size_mean"), 100.0);
    // Multi-value lines.
    let multi_c = last(&points, "nc", "multi", &[("metric_type", "counter")]);
    assert_eq!(float(multi_c, "multi"), 1.0);
    let multi_g = last(&points, "nc", "multi", &[("metric_type", "gauge")]);
    assert_eq!(float(multi_g, "multi"), 7.0);
    let packed = last(&points, "nc", "packed_count", &[]);
    assert_eq!(packed.get_tag("metric_type"), Some("distribution"));
    assert_eq!(float(packed, "packed_sum"), 6.0);
    // DogStatsD.
    assert_eq!(
        sum(&points, "dd", "req", &[("env", "prod"), ("canary", "true")]),
        3.0
    );
    assert_eq!(float(last(&points, "dd", "conns", &[]), "conns"), 42.0);
    assert_eq!(
        float(last(&points, "dd", "size_count", &[]), "size_count"),
        1.0
    );
    assert_eq!(float(last(&points, "dd", "dur_sum", &[]), "dur_sum"), 7.0);
    let check = last(
        &points,
        "service_check",
        "status",
        &[("check", "dd.up"), ("env", "prod")],
    );
    assert_eq!(check.get_field("status"), Some(&Value::I(2)));
    let stamped = last(&points, "dd", "ts", &[]);
    assert_eq!(stamped.time, ts as i64 * 1_000_000_000);
    assert_eq!(float(stamped, "ts"), 5.0);
    assert_eq!(sum(&points, "uds", "hits", &[("via", "uds")]), 5.0);

    // The event is a keyevent.
    let events = wait_for("the DogStatsD event", Duration::from_secs(10), || {
        let e = agent.local_points("keyevent");
        (!e.is_empty()).then_some(e)
    });
    let e = &events[0];
    assert_eq!(e.name, "event");
    assert_eq!(e.get_field("df_title"), Some(&Value::S("Deploy".into())));
    assert_eq!(
        e.get_field("df_message"),
        Some(&Value::S("v2 is\nlive".into()))
    );
    assert_eq!(e.get_tag("df_status"), Some("ok"));
    assert_eq!(e.get_tag("host"), Some("web-1"));
    assert_eq!(e.get_tag("env"), Some("prod"));

    // Errors and traffic are counted on /metrics.
    let instance = format!("127.0.0.1:{port}");
    let errors = |reason: &str| {
        agent.metric(&format!(
            "datakit_input_parse_errors_total{{input=\"statsd\",reason=\"{reason}\"}}"
        ))
    };
    wait_for("parse errors on /metrics", Duration::from_secs(10), || {
        (errors("no_value") == Some(1.0) && errors("bad_value") == Some(1.0)).then_some(())
    });
    let packets = agent
        .metric(&format!(
            "datakit_input_received_events_total{{input=\"statsd\",listener=\"{instance}\"}}"
        ))
        .unwrap_or(0.0);
    assert!(packets >= 10.0, "packets {packets}");
    assert_eq!(
        agent.metric(&format!(
            "datakit_input_received_events_total{{input=\"statsd\",listener=\"{sock_text}\"}}"
        )),
        Some(1.0)
    );
    assert_eq!(
        agent.metric("datakit_input_dropped_total{input=\"statsd\",reason=\"kernel\"}"),
        Some(0.0)
    );
}

#[test]
fn statsd_applies_mapping_drop_tags_and_config_tags_per_instance() {
    if !dk_proto::testing::require_program("nc", "netcat-openbsd") {
        return;
    }
    let port_a = free_udp_port();
    let port_b = free_udp_port();
    let mapped = format!(
        "{}\n[[inputs.statsd]]\n  interval = \"1s\"\n  service_address = \"127.0.0.1:{port_b}\"\n  \
         service_unix_address = \"\"\n  datadog_extensions = true\n  \
         metric_mapping = [\"map_me_:mapped\"]\n  drop_tags = [\"runtime-id\"]\n  \
         [inputs.statsd.tags]\n  team = \"e2e\"\n",
        conf(port_a, "", "")
    );
    let agent = Agent::start(&[("statsd/statsd.conf", &mapped)]);
    nc_udp(
        port_b,
        "map_me.a:1|c|#runtime-id:1\nmap_me.a:2|c|#runtime-id:2\nother.b:3|g|#team:x\n",
    );
    nc_udp(port_a, "plain.a:4|c|#runtime-id:1\n");
    let points = wait_for("mapped and plain points", Duration::from_secs(20), || {
        let pts = agent.local_points("metric");
        (sum(&pts, "mapped", "a", &[]) >= 3.0
            && !matching(&pts, "other_b", "other_b", &[]).is_empty()
            && sum(&pts, "plain", "a", &[]) >= 4.0)
            .then_some(pts)
    });
    // Mapped by prefix; the dropped tag merged both series into one sum.
    let m = matching(&points, "mapped", "a", &[]);
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(float(m[0], "a"), 3.0);
    assert_eq!(m[0].get_tag("runtime-id"), None);
    assert_eq!(m[0].get_tag("team"), Some("e2e"));
    // No prefix matched: measurement and field are the whole name; config tags win.
    let o = last(&points, "other_b", "other_b", &[]);
    assert_eq!(float(o, "other_b"), 3.0);
    assert_eq!(o.get_tag("team"), Some("e2e"));
    // The other instance is unaffected.
    let p = last(&points, "plain", "a", &[]);
    assert_eq!(p.get_tag("runtime-id"), Some("1"));
    assert_eq!(p.get_tag("team"), None);
}

#[test]
fn statsd_over_tcp_is_a_config_error_with_a_fix() {
    let dir = tempfile::tempdir().unwrap();
    write_confd(
        dir.path(),
        &main_conf(free_port(), ""),
        &[(
            "statsd/statsd.conf",
            "[[inputs.statsd]]\n  protocol = \"tcp\"\n  service_address = \":8125\"\n",
        )],
    );
    let out = Command::new(bin())
        .args(["check", "--config", "--workdir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    for needle in [
        "statsd.conf",
        "protocol",
        "TCP is not supported",
        "protocol = \"udp\"",
    ] {
        assert!(stderr.contains(needle), "names {needle}:\n{stderr}");
    }
}

/// Rows of `/proc/net/udp{,6}` bound to `port`.
fn udp_sockets_on(port: u16) -> usize {
    let needle = format!(":{port:04X} ");
    ["/proc/net/udp", "/proc/net/udp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|t| {
            t.lines()
                .skip(1)
                .filter(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .is_some_and(|a| format!("{a} ").contains(&needle))
                })
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .count()
}

#[test]
fn statsd_reads_every_reuseport_socket_and_an_unusable_unix_path_is_only_a_warning() {
    if !dk_proto::testing::require_python_modules(&["datadog"], "datadog") {
        return;
    }
    let port = free_udp_port();
    let dir = tempfile::tempdir().unwrap();
    // Not a socket: the agent must neither delete it nor refuse to start.
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, b"keep me").unwrap();
    // In a directory that does not exist yet: the agent creates it.
    let nested = dir.path().join("run/datakit/dsd.sock");
    let confs = format!(
        "{}\n[[inputs.statsd]]\n  interval = \"1s\"\n  service_address = \"\"\n  \
         service_unix_address = \"{}\"\n",
        conf(port, file.to_str().unwrap(), "  udp_sockets = 4"),
        nested.display()
    );
    let agent = Agent::start(&[("statsd/statsd.conf", &confs)]);
    assert_eq!(udp_sockets_on(port), 4, "four SO_REUSEPORT sockets bound");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
    assert!(agent.log().contains("not a socket"), "{}", agent.log());

    // 64 senders (source ports) spread over the four sockets; every count must arrive.
    let senders: Vec<UdpSocket> = (0..64)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    for s in &senders {
        s.send_to(b"rp.hits:1|c", ("127.0.0.1", port)).unwrap();
    }
    python(&format!(
        "from datadog.dogstatsd import DogStatsd\n\
         u = DogStatsd(socket_path='{}', disable_telemetry=True)\n\
         u.increment('nested.hits', 2)\n",
        nested.display()
    ));
    let points = wait_for(
        "all 64 counts and the nested socket",
        Duration::from_secs(20),
        || {
            let pts = agent.local_points("metric");
            (sum(&pts, "rp", "hits", &[]) >= 64.0 && sum(&pts, "nested", "hits", &[]) >= 2.0)
                .then_some(pts)
        },
    );
    assert_eq!(sum(&points, "rp", "hits", &[]), 64.0);
    assert_eq!(sum(&points, "nested", "hits", &[]), 2.0);
    assert_eq!(
        agent.metric(&format!(
            "datakit_input_received_events_total{{input=\"statsd\",listener=\"127.0.0.1:{port}\"}}"
        )),
        Some(64.0)
    );
}

#[test]
fn a_reload_grows_a_reuseport_group_and_says_when_the_count_needs_a_restart() {
    let port = free_udp_port();
    let with = |n: u16| conf(port, "", &format!("  udp_sockets = {n}"));
    let agent = Agent::start(&[("statsd/statsd.conf", &with(2))]);
    assert_eq!(udp_sockets_on(port), 2);
    let first = wait_for("statsd worker", Duration::from_secs(10), || {
        agent.worker_pid("statsd")
    });

    // 2 -> 3: the new sockets join the group; the worker restarts on them.
    agent.write_conf("statsd/statsd.conf", &with(3));
    let second = wait_for("a new statsd worker", Duration::from_secs(15), || {
        agent.worker_pid("statsd").filter(|p| *p != first)
    });
    wait_for("three sockets", Duration::from_secs(10), || {
        (udp_sockets_on(port) == 3).then_some(())
    });
    let senders: Vec<UdpSocket> = (0..48)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    for s in &senders {
        s.send_to(b"grown.hits:1|c", ("127.0.0.1", port)).unwrap();
    }
    wait_for(
        "all 48 counts after the reload",
        Duration::from_secs(20),
        || (sum(&agent.local_points("metric"), "grown", "hits", &[]) == 48.0).then_some(()),
    );

    // 3 -> 1 cannot leave a plain socket on a SO_REUSEPORT port: the agent says so and keeps
    // the running sockets.
    agent.write_conf("statsd/statsd.conf", &with(1));
    wait_for("the restart hint", Duration::from_secs(10), || {
        let (_, body) = agent.request("GET", "/v1/lasterror", &[], b"");
        String::from_utf8_lossy(&body)
            .contains("needs an agent restart")
            .then_some(())
    });
    let third = wait_for(
        "the statsd worker after the last edit",
        Duration::from_secs(15),
        || agent.worker_pid("statsd").filter(|p| *p != second),
    );
    assert_ne!(third, second);
    assert_eq!(udp_sockets_on(port), 3);
    for s in &senders {
        s.send_to(b"kept.hits:1|c", ("127.0.0.1", port)).unwrap();
    }
    wait_for(
        "all 48 counts on the kept sockets",
        Duration::from_secs(20),
        || (sum(&agent.local_points("metric"), "kept", "hits", &[]) == 48.0).then_some(()),
    );
}

/// The value of one exact `/metrics` sample line (name with labels) in `text`, 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Sum of every `/metrics` sample whose line starts with `prefix`.
fn samples_total(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_million_distinct_statsd_series_stay_under_the_cap_and_the_worker_keeps_its_health() {
    use std::collections::{BTreeMap, HashSet};
    use std::fmt::Write as _;
    use std::time::Instant;

    // Small enough that a debug build's parser fills it in every interval of the flood.
    const CAP: usize = 50_000;
    const SERIES: usize = 1_000_000;
    const PER_DATAGRAM: usize = 40;
    const DATAGRAMS: usize = SERIES / PER_DATAGRAM;
    // The worker's memory cap: the supervisor kills a worker whose RSS is over it at a health
    // check, and the test wants its peak below it too. Before the series cap and the compact
    // series, 1 M series took the worker to 730 MB (and it was killed for missing health
    // checks while flushing).
    const MEM_MAX_MB: u64 = 128;

    let port = free_udp_port();
    let listener = format!("127.0.0.1:{port}");
    // Every series is new and sent once: each admitted one gives exactly one point. A short
    // parse queue (2 MiB) drops, and counts, what a debug build cannot parse in time, so the
    // test does not wait for a long backlog.
    let confd = format!(
        "[[inputs.statsd]]\n  interval = \"1s\"\n  service_address = \"{listener}\"\n  \
         service_unix_address = \"\"\n  max_series = {CAP}\n  allowed_pending_messages = 32\n"
    );
    let limits = format!(
        "[resource_limit]\n  enable = true\n  cpu_cores = 0.0\n  mem_max_mb = {MEM_MAX_MB}"
    );
    let agent = Agent::start_with(&[("statsd/statsd.conf", &confd)], &limits, &[]);
    let worker = wait_for("the statsd worker", Duration::from_secs(10), || {
        agent.worker_pid("statsd")
    });
    wait_for("the statsd worker up", Duration::from_secs(10), || {
        (agent.metric("datakit_worker_up{family=\"statsd\"}") == Some(1.0)).then_some(())
    });

    // 1 M distinct counters, 40 per datagram, paced over about a second.
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.connect(&listener).unwrap();
    let started = Instant::now();
    let mut datagram = String::with_capacity(PER_DATAGRAM * 24);
    for d in 0..DATAGRAMS {
        datagram.clear();
        for j in 0..PER_DATAGRAM {
            writeln!(datagram, "hostile.s{}:1|c", d * PER_DATAGRAM + j).unwrap();
        }
        tx.send(datagram.as_bytes()).unwrap();
        if d % 500 == 499 {
            let due = started + Duration::from_secs_f64((d + 1) as f64 / DATAGRAMS as f64);
            if let Some(ahead) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(ahead);
            }
        }
    }
    let send_time = started.elapsed();

    let instance = format!("{{instance=\"{listener}\"}}");
    let (parsed_lines, dropped, handed) = wait_for(
        "every received line flushed or counted as dropped",
        Duration::from_secs(60),
        || {
            let m = agent.metrics();
            let packets = sample(
                &m,
                &format!(
                    "datakit_input_received_events_total{{input=\"statsd\",listener=\"{listener}\"}}"
                ),
            );
            let drops = |reason: &str| {
                sample(
                    &m,
                    &format!("datakit_input_dropped_total{{input=\"statsd\",reason=\"{reason}\"}}"),
                )
            };
            let kernel = drops("kernel");
            if packets + kernel < DATAGRAMS as f64 {
                return None;
            }
            let refused = drops("queue_full") + drops("truncated");
            let parsed = (packets - refused) as usize * PER_DATAGRAM;
            let dropped = sample(
                &m,
                &format!("datakit_statsd_series_dropped_total{instance}"),
            );
            let handed = sample(&m, &format!("datakit_statsd_points_total{instance}"));
            (handed + dropped == parsed as f64).then_some((
                parsed,
                dropped as usize,
                handed as usize,
            ))
        },
    );
    let points = wait_for(
        "the flushed points in the local sink",
        Duration::from_secs(60),
        || {
            let pts: Vec<Point> = agent
                .local_points("metric")
                .into_iter()
                .filter(|p| p.name == "hostile")
                .collect();
            (pts.len() >= handed).then_some(pts)
        },
    );
    let (rss_kib, hwm_kib) = dk_worker::testing::load::rss_kib(worker).unwrap();
    eprintln!(
        "sent {SERIES} series in {send_time:?}; parsed {parsed_lines}, flushed {}, dropped past the cap {dropped}; \
         worker VmRSS {rss_kib} KiB, VmHWM {hwm_kib} KiB",
        points.len()
    );

    // What was flushed is exactly what was admitted, once each, with the values sent.
    assert_eq!(points.len(), handed);
    assert_eq!(points.len() + dropped, parsed_lines);
    let fields: HashSet<&str> = points.iter().map(|p| p.fields[0].0.as_str()).collect();
    assert_eq!(fields.len(), points.len(), "a series was flushed twice");
    for p in &points {
        assert_eq!(p.fields.len(), 1, "{p:?}");
        assert_eq!(p.fields[0].1, Value::F(1.0), "{p:?}");
        assert_eq!(p.get_tag("metric_type"), Some("counter"), "{p:?}");
    }
    assert!(fields.contains("s0"), "the first series sent is flushed");
    // No flush holds more than the cap, and the cap was reached: series past it were refused.
    let mut per_flush: BTreeMap<i64, usize> = BTreeMap::new();
    for p in &points {
        *per_flush.entry(p.time).or_default() += 1;
    }
    assert!(
        per_flush.values().all(|n| *n <= CAP),
        "a flush held more than {CAP} series: {per_flush:?}"
    );
    assert_eq!(per_flush.values().max(), Some(&CAP), "{per_flush:?}");
    assert!(dropped > 0);
    // Said once (the warning is rate-limited to one a minute), however many were dropped.
    assert_eq!(
        agent
            .log()
            .matches("statsd holds max_series series")
            .count(),
        1,
        "{}",
        agent.log()
    );

    // The worker kept its memory bounded and answered every health check.
    assert!(
        hwm_kib < MEM_MAX_MB * 1024,
        "statsd worker peak RSS {hwm_kib} KiB"
    );
    assert_eq!(
        agent.worker_pid("statsd"),
        Some(worker),
        "the worker was replaced"
    );
    let m = agent.metrics();
    assert_eq!(
        samples_total(&m, "datakit_worker_restarts_total{family=\"statsd\""),
        0.0,
        "{m}"
    );
    assert_eq!(sample(&m, "datakit_worker_up{family=\"statsd\"}"), 1.0);
}
