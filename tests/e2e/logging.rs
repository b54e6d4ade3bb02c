//! End-to-end tests of the logging family (socket logs): real clients (`logger`, `socat`, raw
//! sockets) against the real binary, points read back from the local sink.

use std::io::Write;
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use dk_proto::{Point, Value};

use crate::harness::{Agent, free_port, wait_for};

const WAIT: Duration = Duration::from_secs(20);

/// A `[[inputs.logging]]` instance on free TCP and UDP ports.
struct Ports {
    tcp: u16,
    udp: u16,
}

fn start(extra: &str) -> (Agent, Ports) {
    let ports = Ports {
        tcp: free_port(),
        udp: free_port(),
    };
    let conf = format!(
        "[[inputs.logging]]\n  sockets = [\"tcp://127.0.0.1:{}\", \"udp://127.0.0.1:{}\"]\n{extra}\n",
        ports.tcp, ports.udp
    );
    let agent = Agent::start(&[("log/logging.conf", &conf)]);
    (agent, ports)
}

fn message(p: &Point) -> &str {
    match p.get_field("message") {
        Some(Value::S(s)) => s,
        other => panic!("message field is {other:?} in {p:?}"),
    }
}

fn string_field<'a>(p: &'a Point, key: &str) -> &'a str {
    match p.get_field(key) {
        Some(Value::S(s)) => s,
        other => panic!("{key} is {other:?} in {p:?}"),
    }
}

/// Waits until the logging points of `source` satisfy `done`, then returns them all.
fn points_of(agent: &Agent, source: &str, done: impl Fn(&[Point]) -> bool) -> Vec<Point> {
    wait_for(&format!("logging points of {source}"), WAIT, || {
        let pts: Vec<Point> = agent
            .local_points("logging")
            .into_iter()
            .filter(|p| p.name == source)
            .collect();
        done(&pts).then_some(pts)
    })
}

fn messages(points: &[Point]) -> Vec<&str> {
    points.iter().map(message).collect()
}

/// Runs a client command with `input` on stdin and waits for it.
fn run(cmd: &mut Command, input: &[u8]) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn logger_over_tcp_and_udp_feeds_logging_points_with_datakit_tags_and_fields() {
    if !dk_proto::testing::require_program("logger", "bsdutils") {
        return;
    }
    let (agent, ports) =
        start("  source = \"syslogapp\"\n  [inputs.logging.tags]\n  team = \"ops\"");
    for (proto, port, text) in [
        ("--tcp", ports.tcp, "hello over tcp from logger"),
        ("--udp", ports.udp, "hello over udp from logger"),
    ] {
        run(
            Command::new("logger").args([
                proto,
                "-n",
                "127.0.0.1",
                "-P",
                &port.to_string(),
                "-t",
                "e2e",
                text,
            ]),
            b"",
        );
    }
    // logger closes its TCP connection after the message: the end of the stream hands it over.
    let pts = points_of(&agent, "syslogapp", |p| p.len() >= 2);
    for text in ["hello over tcp from logger", "hello over udp from logger"] {
        let p = pts
            .iter()
            .find(|p| message(p).contains(text))
            .unwrap_or_else(|| panic!("no message with {text:?} in {pts:?}"));
        // logger adds a syslog header: <13>1 <time> <host> e2e - - [...] text
        assert!(message(p).starts_with("<13>"), "{}", message(p));
        assert!(message(p).ends_with(text), "{}", message(p));
        assert_eq!(p.get_tag("log_source"), Some("socket"));
        assert_eq!(p.get_tag("service"), Some("syslogapp"));
        assert_eq!(p.get_tag("team"), Some("ops"));
        assert_eq!(p.get_tag("e2e"), Some("yes"), "global host tags attached");
        assert!(p.get_tag("host").is_some());
        assert_eq!(string_field(p, "status"), "info");
        assert_eq!(
            p.get_field("message_length"),
            Some(&Value::I(message(p).len() as i64))
        );
    }
    // Worker metrics reach /metrics with the next health check (every second).
    wait_for("the lines counter", WAIT, || {
        agent
            .metric("datakit_logging_socket_lines_total{source=\"syslogapp\",proto=\"udp\"}")
            .filter(|v| *v == 1.0)
    });
    wait_for("the connections counter", WAIT, || {
        agent
            .metric(&format!(
                "datakit_input_connections_total{{input=\"logging\",listener=\"tcp://127.0.0.1:{}\"}}",
                ports.tcp
            ))
            .filter(|v| *v == 1.0)
    });
}

#[test]
fn logger_reading_many_lines_from_stdin_sends_each_as_a_point() {
    if !dk_proto::testing::require_program("logger", "bsdutils") {
        return;
    }
    let (agent, ports) = start("  source = \"batch\"");
    let input: String = (0..50).map(|i| format!("line number {i}\n")).collect();
    run(
        Command::new("logger").args([
            "--tcp",
            "-n",
            "127.0.0.1",
            "-P",
            &ports.tcp.to_string(),
            "-t",
            "e2e",
        ]),
        input.as_bytes(),
    );
    let pts = points_of(&agent, "batch", |p| p.len() >= 50);
    let got = messages(&pts);
    for i in 0..50 {
        let want = format!("line number {i}");
        assert!(got.iter().any(|m| m.ends_with(&want)), "{want} missing");
    }
    assert_eq!(got.len(), 50, "no duplicates: {got:?}");
}

#[test]
fn socat_tcp_keeps_a_final_line_without_newline_and_udp_splits_datagrams() {
    if !dk_proto::testing::require_program("socat", "socat") {
        return;
    }
    let (agent, ports) = start("  source = \"socatapp\"");
    run(
        Command::new("socat").args(["-u", "-", &format!("TCP:127.0.0.1:{}", ports.tcp)]),
        b"first over socat\nsecond over socat\nlast without newline",
    );
    run(
        Command::new("socat").args(["-u", "-", &format!("UDP:127.0.0.1:{}", ports.udp)]),
        b"udp one\nudp two\n",
    );
    let pts = points_of(&agent, "socatapp", |p| p.len() >= 5);
    let mut got = messages(&pts);
    got.sort_unstable();
    assert_eq!(
        got,
        vec![
            "first over socat",
            "last without newline",
            "second over socat",
            "udp one",
            "udp two"
        ]
    );
}

#[test]
fn lines_split_across_tcp_segments_are_joined_and_a_client_closing_mid_line_keeps_it() {
    let (agent, ports) = start("  source = \"segments\"");
    let mut c = TcpStream::connect(("127.0.0.1", ports.tcp)).unwrap();
    c.set_nodelay(true).unwrap();
    for piece in [
        &b"seg"[..],
        b"mented li",
        b"ne one\nline ",
        b"two\r\npartial li",
        b"ne cut by close",
    ] {
        c.write_all(piece).unwrap();
        c.flush().unwrap();
        // Separate segments: each piece leaves before the next one is written.
        std::thread::sleep(Duration::from_millis(30));
    }
    c.shutdown(Shutdown::Both).unwrap();
    drop(c);
    let pts = points_of(&agent, "segments", |p| p.len() >= 3);
    assert_eq!(
        messages(&pts),
        vec![
            "segmented line one",
            "line two",
            "partial line cut by close"
        ]
    );
    // Receive times keep the order of the lines.
    assert!(pts.windows(2).all(|w| w[0].time < w[1].time));
}

#[test]
fn a_line_over_512_kib_is_cut_into_pieces_and_counted() {
    let (agent, ports) = start("  source = \"longline\"");
    let long: String = (0..1_200_000u32)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let mut c = TcpStream::connect(("127.0.0.1", ports.tcp)).unwrap();
    c.write_all(long.as_bytes()).unwrap();
    c.write_all(b"\nafter the long line\n").unwrap();
    drop(c);
    let pts = points_of(&agent, "longline", |p| p.len() >= 4);
    let got = messages(&pts);
    assert_eq!(got.len(), 4);
    assert_eq!(got[0].len(), 512 * 1024);
    assert_eq!(got[1].len(), 512 * 1024);
    assert_eq!(got[2].len(), 1_200_000 - 2 * 512 * 1024);
    assert_eq!(
        got[..3].concat(),
        long,
        "the pieces hold the whole line in order"
    );
    assert_eq!(got[3], "after the long line");
    wait_for("the truncation counter", WAIT, || {
        agent
            .metric(
                "datakit_logging_socket_truncated_lines_total{source=\"longline\",proto=\"tcp\"}",
            )
            .filter(|v| *v == 2.0)
    });
}

#[test]
fn multiline_match_joins_a_stack_trace_into_one_record() {
    if !dk_proto::testing::require_program("socat", "socat") {
        return;
    }
    let (agent, ports) =
        start("  source = \"javaapp\"\n  multiline_match = '''^\\d{4}-\\d{2}-\\d{2}'''");
    let text = "\
2024-05-01 12:00:00 INFO started\n\
2024-05-01 12:00:01 ERROR request failed\n\
java.lang.IllegalStateException: boom\n\
\tat com.example.Service.call(Service.java:42)\n\
\tat com.example.Main.main(Main.java:7)\n\
2024-05-01 12:00:02 INFO recovered\n";
    run(
        Command::new("socat").args(["-u", "-", &format!("TCP:127.0.0.1:{}", ports.tcp)]),
        text.as_bytes(),
    );
    let pts = points_of(&agent, "javaapp", |p| p.len() >= 3);
    assert_eq!(
        messages(&pts),
        vec![
            "2024-05-01 12:00:00 INFO started",
            "2024-05-01 12:00:01 ERROR request failed\njava.lang.IllegalStateException: boom\n\tat com.example.Service.call(Service.java:42)\n\tat com.example.Main.main(Main.java:7)",
            "2024-05-01 12:00:02 INFO recovered",
        ]
    );
    // Datakit does not read a level out of the text: without Pipeline every line is info.
    assert!(pts.iter().all(|p| string_field(p, "status") == "info"));
}

#[test]
fn ignore_status_info_drops_lines_and_remove_ansi_cleans_them() {
    let (agent, ports) = start(
        "  source = \"colour\"\n  remove_ansi_escape_codes = true\n  character_encoding = \"utf-8\"",
    );
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.send_to(
        "\x1b[31mERROR\x1b[0m disk \x1b[1;32mfull\x1b[m — ünïcode\n".as_bytes(),
        ("127.0.0.1", ports.udp),
    )
    .unwrap();
    let pts = points_of(&agent, "colour", |p| !p.is_empty());
    assert_eq!(messages(&pts), vec!["ERROR disk full — ünïcode"]);
    drop(agent);

    let (agent, ports) = start("  source = \"quiet\"\n  ignore_status = [\"info\"]");
    s.send_to(b"dropped\n", ("127.0.0.1", ports.udp)).unwrap();
    wait_for("the ignored counter", WAIT, || {
        agent
            .metric("datakit_logging_socket_ignored_lines_total{source=\"quiet\",proto=\"udp\"}")
            .filter(|v| *v == 1.0)
    });
    assert!(
        agent
            .local_points("logging")
            .iter()
            .all(|p| p.name != "quiet")
    );
}

#[test]
fn a_bad_socket_is_a_config_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    crate::harness::write_confd(
        dir.path(),
        &crate::harness::main_conf(port, ""),
        &[(
            "log/logging.conf",
            "[[inputs.logging]]\n  sockets = [\"tcp://127.0.0.1:1\", \"ftp://127.0.0.1:21\"]\n  logfiles = [\"/var/log/syslog\"]\n",
        )],
    );
    let out = Command::new(crate::harness::bin())
        .arg("run")
        .arg("--workdir")
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("logging.conf"), "{stderr}");
    assert!(stderr.contains("sockets[1]"), "{stderr}");
    assert!(stderr.contains("ftp"), "{stderr}");
}

#[test]
fn logfiles_alone_starts_with_a_warning_and_fails_nothing() {
    let agent = Agent::start(&[(
        "log/logging.conf",
        "[[inputs.logging]]\n  logfiles = [\"/var/log/*.log\"]\n  source = \"files\"\n",
    )]);
    wait_for("the logfiles warning", WAIT, || {
        agent
            .log()
            .contains("file tailing is not supported")
            .then_some(())
    });
}

#[test]
fn a_line_on_a_connection_that_stays_open_arrives_after_the_idle_flush() {
    let (agent, ports) = start("  source = \"longlived\"");
    let mut c = TcpStream::connect(("127.0.0.1", ports.tcp)).unwrap();
    c.write_all(b"from a long-lived appender\n").unwrap();
    // The connection stays open: the joiner hands the record over after 1 s of silence
    // (Datakit would hold it until the next line or the close).
    let pts = points_of(&agent, "longlived", |p| !p.is_empty());
    assert_eq!(messages(&pts), vec!["from a long-lived appender"]);
    c.write_all(b"second\n\tcontinued\n").unwrap();
    let pts = points_of(&agent, "longlived", |p| p.len() >= 2);
    assert_eq!(messages(&pts)[1], "second\n\tcontinued");
    drop(c);
}

/// Streams numbered lines over one TCP connection at about 1 kHz until `stop`; how many.
fn stream_lines(
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let start = std::time::Instant::now();
        let mut n = 0u64;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            n += 1;
            writeln!(s, "line {n}").unwrap();
            if let Some(wait) = Duration::from_millis(n).checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        s.shutdown(Shutdown::Write).unwrap();
        n
    })
}

#[test]
fn a_reload_adding_and_removing_an_instance_loses_no_line_of_a_running_tcp_stream() {
    let (agent, ports) = start("  source = \"stream\"");
    let worker = wait_for("the logging worker", WAIT, || agent.worker_pid("logging"));
    let conf = std::fs::read_to_string(agent.workdir().join("conf.d/log/logging.conf")).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let streamer = stream_lines(ports.tcp, stop.clone());
    points_of(&agent, "stream", |p| p.len() >= 100);

    // Add a second instance on a new TCP port: passed to the running worker.
    let other = free_port();
    agent.write_conf(
        "log/logging.conf",
        &format!(
            "{conf}\n[[inputs.logging]]\n  sockets = [\"tcp://127.0.0.1:{other}\"]\n  source = \"other\"\n"
        ),
    );
    wait_for("the new instance's port", WAIT, || {
        TcpStream::connect(("127.0.0.1", other)).ok()
    })
    .write_all(b"hello from the new instance\n")
    .unwrap();
    points_of(&agent, "other", |p| !p.is_empty());

    // Remove it again: its port closes, the stream goes on.
    agent.write_conf("log/logging.conf", &conf);
    wait_for("the removed instance's port to close", WAIT, || {
        TcpStream::connect(("127.0.0.1", other))
            .is_err()
            .then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let sent = streamer.join().unwrap();

    let points = points_of(&agent, "stream", |p| p.len() as u64 >= sent);
    let mut got: Vec<u64> = messages(&points)
        .iter()
        .map(|m| m.trim_start_matches("line ").parse().unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(
        got,
        (1..=sent).collect::<Vec<_>>(),
        "every line once, none lost"
    );
    assert_eq!(
        agent.worker_pid("logging"),
        Some(worker),
        "the worker was reconfigured, not restarted"
    );
    assert_eq!(
        agent.metric("datakit_config_reload_total{result=\"applied\"}"),
        Some(2.0)
    );
}
