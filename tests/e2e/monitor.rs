//! `datakit monitor` against a live agent with a StatsD input: the terminal UI read back from an
//! 80×24 tmux pane (points growing, the queue, a worker restart after `kill -9`), the one-shot
//! text mode and `--dump-metrics`.

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use crate::harness::{Agent, bin, free_port, wait_for};

/// A free UDP port on loopback.
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An agent whose only input is StatsD on `port`, flushing every second.
fn statsd_agent(port: u16) -> Agent {
    Agent::start(&[(
        "statsd/statsd.conf",
        &format!(
            "[[inputs.statsd]]\n  interval = \"1s\"\n  protocol = \"udp\"\n  \
             service_address = \"127.0.0.1:{port}\"\n  service_unix_address = \"\"\n"
        ),
    )])
}

/// Sends a few StatsD counters (new series each time, so every flush has points).
fn send_statsd(sock: &UdpSocket, port: u16, round: u32) {
    for i in 0..5 {
        sock.send_to(
            format!("e2e.monitor.c{}:1|c", round * 5 + i).as_bytes(),
            ("127.0.0.1", port),
        )
        .unwrap();
    }
}

/// The rows (cells split at whitespace) under the section `title` of a monitor screen, its
/// table header left out.
fn section_rows(screen: &str, title: &str) -> Vec<Vec<String>> {
    let mut lines = screen
        .lines()
        .skip_while(|l| l.trim_end() != title)
        .skip(1)
        .take_while(|l| l.starts_with("  "));
    let _header = lines.next();
    lines
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// The row of `name` under `title`.
fn row(screen: &str, title: &str, name: &str) -> Option<Vec<String>> {
    section_rows(screen, title)
        .into_iter()
        .find(|r| r.first().map(String::as_str) == Some(name))
}

/// Points shown for the statsd input.
fn statsd_points(screen: &str) -> Option<u64> {
    row(screen, "Inputs", "statsd")?.get(3)?.parse().ok()
}

/// A tmux session running a command in an 80×24 pane; killed on drop.
struct Tmux(String);

impl Tmux {
    fn start(name: &str, command: &str) -> Tmux {
        let out = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                name,
                "-x",
                "80",
                "-y",
                "24",
                command,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmux(name.to_string())
    }

    /// The pane's text now.
    fn capture(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.0])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .output();
    }
}

/// Keeps a screen for the record: into the agent's work dir, and into `DK_MONITOR_CAPTURE_DIR`
/// when set.
fn keep_capture(agent: &Agent, name: &str, screen: &str) {
    std::fs::write(agent.workdir().join(name), screen).unwrap();
    if let Ok(dir) = std::env::var("DK_MONITOR_CAPTURE_DIR") {
        std::fs::write(std::path::Path::new(&dir).join(name), screen).unwrap();
    }
}

#[test]
fn the_monitor_in_an_80x24_tmux_pane_shows_statsd_points_growing_the_queue_and_a_worker_restart() {
    if !dk_proto::testing::require_program("tmux", "tmux") {
        return;
    }
    let port = free_udp_port();
    let agent = statsd_agent(port);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let session = format!("dk-monitor-{}-{port}", std::process::id());
    let tmux = Tmux::start(
        &session,
        &format!("{} monitor --to {} -R 1s", bin(), agent.api),
    );
    let mut round = 0;
    let mut send = || {
        round += 1;
        send_statsd(&sock, port, round);
    };

    let (first, screen) = wait_for(
        "the statsd input row with points on the monitor screen",
        Duration::from_secs(30),
        || {
            send();
            let screen = tmux.capture();
            statsd_points(&screen)
                .filter(|p| *p > 0)
                .map(|p| (p, screen))
        },
    );
    assert_eq!(screen.lines().count(), 24, "an 80x24 pane:\n{screen}");
    let grown = wait_for(
        "the statsd point count to grow on screen",
        Duration::from_secs(30),
        || {
            send();
            let screen = tmux.capture();
            statsd_points(&screen)
                .filter(|p| *p > first)
                .map(|_| screen)
        },
    );
    assert!(
        grown.lines().any(|l| l.trim_end() == "Queue"),
        "the queue section:\n{grown}"
    );
    assert!(grown.contains("Total "), "queue size:\n{grown}");
    assert!(
        row(&grown, "Queue", "metric").is_some(),
        "the metric queue:\n{grown}"
    );

    // The worker row shows the worker's real pid; kill -9 it and the restart shows up.
    let pid = agent.worker_pid("statsd").expect("the statsd worker runs");
    let before = wait_for(
        "the statsd worker's pid on screen",
        Duration::from_secs(15),
        || {
            let screen = tmux.capture();
            let r = row(&screen, "Workers", "statsd")?;
            (r.get(2) == Some(&pid.to_string())).then_some((r, screen))
        },
    );
    assert_eq!(before.0[1], "up", "{}", before.1);
    assert_eq!(before.0[3], "0", "no restart yet: {}", before.1);
    keep_capture(&agent, "monitor-capture-before-kill.txt", &before.1);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let (after, screen) = wait_for(
        "the statsd worker's restart on screen",
        Duration::from_secs(30),
        || {
            send();
            let screen = tmux.capture();
            let r = row(&screen, "Workers", "statsd")?;
            let restarts: u64 = r.get(3)?.parse().ok()?;
            (restarts >= 1 && r.get(1).map(String::as_str) == Some("up")).then_some((r, screen))
        },
    );
    assert!(
        after.iter().any(|c| c.starts_with("signal:")),
        "the cause is shown: {screen}"
    );
    assert_ne!(after[2], pid.to_string(), "a new pid: {screen}");
    assert_eq!(
        after[2],
        agent.worker_pid("statsd").unwrap().to_string(),
        "{screen}"
    );
    keep_capture(&agent, "monitor-capture-after-kill.txt", &screen);

    // `q` quits: the monitor exits and its session ends with it.
    let sent = Command::new("tmux")
        .args(["send-keys", "-t", &session, "q"])
        .status()
        .unwrap();
    assert!(sent.success());
    wait_for("the monitor to quit on q", Duration::from_secs(10), || {
        let alive = Command::new("tmux")
            .args(["has-session", "-t", &session])
            .output()
            .unwrap()
            .status
            .success();
        (!alive).then_some(())
    });
    drop(tmux);
}

#[test]
fn monitor_once_prints_the_asked_modules_as_text_and_dump_metrics_prints_the_raw_page() {
    let port = free_udp_port();
    let agent = statsd_agent(port);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut round = 0;
    wait_for("statsd points fed", Duration::from_secs(30), || {
        round += 1;
        send_statsd(&sock, port, round);
        agent
            .metric("datakit_io_feed_point_total{name=\"statsd\",category=\"metric\"}")
            .filter(|v| *v > 0.0)
    });
    let fed = agent
        .metric("datakit_io_feed_point_total{name=\"statsd\",category=\"metric\"}")
        .unwrap();
    let pid = agent.worker_pid("statsd").unwrap();

    // The address comes from the work dir's datakit.conf; stdout is a pipe: text, once.
    let out = Command::new(bin())
        .args(["monitor", "-M", "In,R", "-I", "statsd", "--workdir"])
        .arg(agent.workdir())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with(&format!("From http://{}/metrics\n", agent.api)),
        "{text}"
    );
    let input = row(&text, "Inputs", "statsd").unwrap_or_else(|| panic!("{text}"));
    assert_eq!(input[1], "metric", "{text}");
    let shown: f64 = input[3].parse().unwrap();
    assert!(shown >= fed, "{shown} >= {fed}: {text}");
    let worker = row(&text, "Workers", "statsd").unwrap_or_else(|| panic!("{text}"));
    assert_eq!(worker[2], pid.to_string(), "{text}");
    assert!(
        !text.contains("\nQueue\n"),
        "only the asked modules: {text}"
    );
    assert_eq!(
        section_rows(&text, "Inputs").len(),
        1,
        "only the asked input: {text}"
    );

    // --once on the default modules: the queue and the HTTP API (this scrape's own route).
    let out = Command::new(bin())
        .args(["monitor", "--once", "--to", &agent.api.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for title in ["Basic", "Inputs", "Workers", "Queue", "Uploads", "HTTP API"] {
        assert!(text.lines().any(|l| l == title), "{title} in {text}");
    }
    assert!(row(&text, "HTTP API", "/metrics").is_some(), "{text}");

    let out = Command::new(bin())
        .args(["monitor", "--dump-metrics", "--to", &agent.api.to_string()])
        .output()
        .unwrap();
    let raw = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{raw}");
    assert!(raw.contains("# HELP datakit_process_pid "), "{raw}");
    assert!(
        raw.contains(&format!("datakit_process_pid{{family=\"statsd\"}} {pid}\n")),
        "{raw}"
    );
}

#[test]
fn monitor_says_where_it_looked_when_no_agent_answers_and_refuses_unknown_modules() {
    let port = free_port();
    let out = Command::new(bin())
        .args(["monitor", "--once", "--to", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot read http://127.0.0.1:{port}/metrics")),
        "{err}"
    );
    assert!(err.contains("--to HOST:PORT"), "{err}");

    let out = Command::new(bin())
        .args(["monitor", "--once", "-M", "In,nope"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("has no module: nope"), "{err}");
}

#[test]
fn a_saved_metrics_page_is_shown_as_of_the_time_given_with_t() {
    let page = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/monitor/testdata/agent.prom"
    );
    let out = Command::new(bin())
        .args(["monitor", "-P", page, "-T", "1796318130000", "-M", "In,WAL"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.starts_with(&format!("From {page}\n")), "{text}");
    let statsd = row(&text, "Inputs", "statsd").unwrap_or_else(|| panic!("{text}"));
    assert_eq!(
        statsd,
        [
            "statsd",
            "logging,metric",
            "2",
            "1010",
            "-",
            "3s",
            "ago",
            "5",
            "4"
        ],
        "{text}"
    );
    let queue = row(&text, "Queue", "metric").unwrap_or_else(|| panic!("{text}"));
    assert_eq!(queue[..4], ["metric", "dataway", "88", "7m27s"], "{text}");
    assert!(text.contains("Last errors"), "{text}");

    let out = Command::new(bin())
        .args(["monitor", "-P", page, "-R", "soon"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("datakit monitor --refresh"), "{err}");
}
