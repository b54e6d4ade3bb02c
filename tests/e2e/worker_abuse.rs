//! Workers are not trusted: a worker that floods the supervisor with requests, sends an
//! oversize or undecodable frame, or says hello for another family is cut off, killed and
//! restarted (cause `protocol_violation`), while the supervisor stays up and small and the
//! other families keep delivering. The misbehaviour is a debug mode of the real worker
//! (`DK_DEBUG_WORKER_MISBEHAVE=<family>:<mode>`). A family's config validator that panics
//! (`DK_DEBUG_CONFIG_PANIC=<family>`) is a config error, not a dead supervisor.

use std::time::Duration;

use crate::harness::{Agent, bin, free_port, main_conf, wait_for, write_confd};

const TWO_FAMILIES: &[(&str, &str)] = &[
    ("host/mem.conf", "[[inputs.mem]]\n  interval = \"1s\"\n"),
    (
        "network/socket.conf",
        "[[inputs.socket]]\n  dest_url = [\"tcp://127.0.0.1:1\"]\n",
    ),
];

/// Resident memory the supervisor may reach while a worker misbehaves (a debug build idles
/// at a few tens of MiB).
const RSS_LIMIT: u64 = 160 << 20;

const VIOLATIONS: &str =
    "datakit_worker_restarts_total{family=\"socket\",cause=\"protocol_violation\"}";

fn mem_points(agent: &Agent) -> usize {
    agent
        .local_points("metric")
        .iter()
        .filter(|p| p.name == "mem")
        .count()
}

fn cut_off_and_restarted(mode: &str) {
    let spec = format!("socket:{mode}");
    let agent = Agent::start_with(
        TWO_FAMILIES,
        "",
        &[("DK_DEBUG_WORKER_MISBEHAVE", spec.as_str())],
    );
    let mut peak_rss = 0u64;
    wait_for(
        "the misbehaving worker to be cut off and counted",
        Duration::from_secs(20),
        || {
            if let Some(rss) = dk_worker::worker::status_bytes(agent.pid(), "VmRSS") {
                peak_rss = peak_rss.max(rss);
            }
            agent.metric(VIOLATIONS).filter(|v| *v >= 1.0)
        },
    );
    // Restarted: a new worker came up and (misbehaving too) was cut off again. A cut-off
    // worker lives milliseconds, too short to catch its pid reliably.
    wait_for(
        "a restarted worker to be cut off again",
        Duration::from_secs(10),
        || agent.metric(VIOLATIONS).filter(|v| *v >= 2.0),
    );
    eprintln!(
        "{mode}: supervisor peak RSS {} KiB while the worker was cut off",
        peak_rss >> 10
    );
    // The supervisor is up, answers, and stayed small.
    let (status, _) = agent.request("GET", "/v1/ping", &[], b"");
    assert_eq!(status, 200);
    let rss = dk_worker::worker::status_bytes(agent.pid(), "VmRSS").unwrap();
    assert!(
        peak_rss.max(rss) < RSS_LIMIT,
        "supervisor RSS {} MiB",
        peak_rss.max(rss) >> 20
    );
    // The cut-off is explained where the operator looks.
    let (_, body) = agent.request("GET", "/v1/lasterror", &[], b"");
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("broke the RPC protocol"), "lasterror: {body}");
    // No other cause was counted for the misbehaving family: the violation was recognised.
    let metrics = agent.metrics();
    for line in metrics.lines().filter(|l| {
        l.starts_with("datakit_worker_restarts_total{family=\"socket\"")
            && !l.contains("protocol_violation")
    }) {
        assert!(line.ends_with(" 0"), "unexpected restart cause: {line}");
    }
    // The other family keeps delivering.
    let before = mem_points(&agent);
    wait_for(
        "mem points after the cut-off",
        Duration::from_secs(10),
        || (mem_points(&agent) > before).then_some(()),
    );
    assert_eq!(
        agent.metric("datakit_worker_restarts_total{family=\"host\",cause=\"protocol_violation\"}"),
        None,
        "the well-behaved family was never cut off"
    );
}

#[test]
fn a_worker_that_floods_the_supervisor_with_requests_is_cut_off_and_restarted() {
    cut_off_and_restarted("flood");
}

#[test]
fn a_worker_that_sends_an_oversize_frame_is_cut_off_and_restarted() {
    cut_off_and_restarted("oversize");
}

#[test]
fn a_worker_that_sends_an_undecodable_frame_is_cut_off_and_restarted() {
    cut_off_and_restarted("garbage");
}

#[test]
fn a_worker_that_claims_another_family_is_cut_off_and_restarted() {
    cut_off_and_restarted("wrong_family");
}

#[test]
fn worker_metrics_over_the_size_cap_are_refused_and_counted_without_a_restart() {
    let agent = Agent::start_with(
        TWO_FAMILIES,
        "",
        &[("DK_DEBUG_WORKER_MISBEHAVE", "socket:big_metrics")],
    );
    agent.wait_metric_at_least(
        "datakit_worker_metrics_refused_total{family=\"socket\"}",
        2.0,
        Duration::from_secs(15),
    );
    let text = agent.metrics();
    assert!(
        text.len() < 1 << 20,
        "/metrics is {} bytes: the oversize report was served",
        text.len()
    );
    assert!(!text.contains("# misbehave"));
    assert_eq!(
        agent.metric("datakit_worker_up{family=\"socket\"}"),
        Some(1.0),
        "the worker keeps running"
    );
    assert!(
        !text.lines().any(
            |l| l.starts_with("datakit_worker_restarts_total{family=\"socket\"")
                && !l.ends_with(" 0")
        ),
        "no restart: {text}"
    );
}

#[test]
fn check_reports_a_panicking_validator_as_a_config_problem_and_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    write_confd(
        dir.path(),
        &main_conf(free_port(), ""),
        &[
            ("host/mem.conf", "[[inputs.mem]]\n"),
            (
                "network/socket.conf",
                "[[inputs.socket]]\n  dest_url = [\"tcp://127.0.0.1:1\"]\n",
            ),
        ],
    );
    let out = std::process::Command::new(bin())
        .args(["check", "--config", "--workdir"])
        .arg(dir.path())
        .env("DK_DEBUG_CONFIG_PANIC", "socket")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("1 configuration problem(s)")
            && stderr.contains(
                "socket.conf:1: inputs.socket[0]: input socket (family socket): validation panicked"
            )
            && stderr.contains("this is a bug, please report it"),
        "{stderr}"
    );
}

#[test]
fn a_panicking_validator_on_hot_reload_keeps_the_running_config() {
    let agent = Agent::start_with(
        &[("host/mem.conf", "[[inputs.mem]]\n  interval = \"1s\"\n")],
        "",
        &[("DK_DEBUG_CONFIG_PANIC", "socket")],
    );
    let host = wait_for("host worker", Duration::from_secs(10), || {
        agent.worker_pid("host")
    });
    agent.write_conf(
        "network/socket.conf",
        "[[inputs.socket]]\n  dest_url = [\"tcp://127.0.0.1:1\"]\n",
    );
    agent.wait_metric_at_least(
        "datakit_config_reload_total{result=\"rejected\"}",
        1.0,
        Duration::from_secs(10),
    );
    let (status, _) = agent.request("GET", "/v1/ping", &[], b"");
    assert_eq!(status, 200, "the supervisor is up");
    let (_, body) = agent.request("GET", "/v1/lasterror", &[], b"");
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("validation panicked"), "{body}");
    assert_eq!(
        agent.worker_pid("host"),
        Some(host),
        "the host worker runs on"
    );
    assert_eq!(
        agent.worker_pid("socket"),
        None,
        "no socket worker was started"
    );
    let before = mem_points(&agent);
    wait_for(
        "mem points after the reload",
        Duration::from_secs(10),
        || (mem_points(&agent) > before).then_some(()),
    );
}

#[test]
fn the_statsd_unix_socket_is_not_world_writable_and_is_removed_at_a_clean_stop() {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    let sock_dir = tempfile::tempdir().unwrap();
    let sock = sock_dir.path().join("run/datakit/statsd.sock");
    let port = free_port();
    let conf = format!(
        "[[inputs.statsd]]\n  interval = \"1s\"\n  protocol = \"udp\"\n  service_address = \"127.0.0.1:{port}\"\n  \
         service_unix_address = \"{}\"\n",
        sock.display()
    );
    let mut agent = Agent::start(&[("statsd/statsd.conf", &conf)]);
    wait_for("the statsd worker up", Duration::from_secs(10), || {
        (agent.metric("datakit_worker_up{family=\"statsd\"}") == Some(1.0)).then_some(())
    });
    let meta = std::fs::symlink_metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    let mode = meta.permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "socket mode {mode:o}");
    assert_eq!(mode & 0o002, 0, "world-writable");
    // Still a working socket: a datagram sent to it arrives as a point.
    let sender = std::os::unix::net::UnixDatagram::unbound().unwrap();
    sender.send_to(b"udsprobe.hits:1|c", &sock).unwrap();
    wait_for("the datagram as a point", Duration::from_secs(10), || {
        agent
            .local_points("metric")
            .iter()
            .any(|p| p.name == "udsprobe")
            .then_some(())
    });
    let run_dir = agent.workdir().join("run");
    assert!(run_dir.join("ingest.sock").exists());

    agent.signal(nix::sys::signal::Signal::SIGTERM);
    let status = agent.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status}; log:\n{}", agent.log());
    assert!(!sock.exists(), "statsd.sock left behind after a clean stop");
    assert!(
        sock.parent().unwrap().exists(),
        "the directory stays (it may hold other files)"
    );
    assert!(!run_dir.join("ingest.sock").exists());
    assert!(!run_dir.join("control.sock").exists());
}

#[test]
fn a_batch_too_large_for_the_queue_is_rejected_and_dropped_by_the_worker_not_retried() {
    // A queue cap (107 bytes) below any record: every batch is permanently unacceptable.
    let agent = Agent::start_with(
        &[("host/mem.conf", "[[inputs.mem]]\n  interval = \"1s\"\n")],
        "[dataway.wal]\n  max_capacity_gb = 0.0000001\n",
        &[],
    );
    let dropped = agent.wait_metric_at_least(
        "datakit_worker_points_dropped{family=\"host\"}",
        2.0,
        Duration::from_secs(15),
    );
    let pushed = agent
        .metric("datakit_rpc_push_points_total{family=\"host\"}")
        .unwrap();
    // Each point was pushed once and dropped: a retry loop would push the same points again
    // and again (and drop none).
    assert!(
        pushed <= dropped + 2.0,
        "pushed {pushed} points for {dropped} dropped: batches were retried"
    );
    assert_eq!(
        agent.metric("datakit_worker_restarts_total{family=\"host\",cause=\"protocol_violation\"}"),
        None
    );
    assert!(agent.local_points("metric").is_empty());
}
