//! Worker isolation and the supervisor's lifecycle: restarts, hangs, start-up crashes, SIGTERM.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::harness::{Agent, wait_for};

const TWO_FAMILIES: &[(&str, &str)] = &[
    ("host/mem.conf", "[[inputs.mem]]\n  interval = \"1s\"\n"),
    (
        "network/socket.conf",
        "[[inputs.socket]]\n  dest_url = [\"tcp://127.0.0.1:1\"]\n",
    ),
];

fn kill(pid: u32, sig: Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).unwrap();
}

#[test]
fn a_killed_worker_is_back_quickly_and_nothing_else_notices() {
    let agent = Agent::start(TWO_FAMILIES);
    let host = wait_for("host worker", Duration::from_secs(10), || {
        agent.worker_pid("host")
    });
    let socket = wait_for("socket worker", Duration::from_secs(10), || {
        agent.worker_pid("socket")
    });
    wait_for("host worker up", Duration::from_secs(10), || {
        (agent.metric("datakit_worker_up{family=\"host\"}") == Some(1.0)).then_some(())
    });
    let killed_at = Instant::now();
    kill(host, Signal::SIGKILL);
    let new_host = wait_for("a new host worker", Duration::from_secs(5), || {
        agent.worker_pid("host").filter(|p| *p != host)
    });
    let respawned = killed_at.elapsed();
    assert_ne!(new_host, host);
    assert!(
        respawned < Duration::from_secs(1),
        "host worker respawned after {respawned:?}"
    );
    assert_eq!(
        agent.worker_pid("socket"),
        Some(socket),
        "the other family's worker is untouched"
    );
    let (status, _) = agent.request("GET", "/v1/ping", &[], b"");
    assert_eq!(status, 200);
    agent.wait_metric_at_least(
        "datakit_worker_restarts_total{family=\"host\",cause=\"signal\"}",
        1.0,
        Duration::from_secs(5),
    );
    // And the new worker delivers again.
    let before = agent
        .local_points("metric")
        .iter()
        .filter(|p| p.name == "mem")
        .count();
    wait_for(
        "mem points from the new worker",
        Duration::from_secs(10),
        || {
            (agent
                .local_points("metric")
                .iter()
                .filter(|p| p.name == "mem")
                .count()
                > before)
                .then_some(())
        },
    );
}

#[test]
fn a_worker_that_stops_answering_health_checks_is_killed_and_restarted() {
    let agent = Agent::start(TWO_FAMILIES);
    let host = wait_for("host worker", Duration::from_secs(10), || {
        agent.worker_pid("host")
    });
    wait_for("host worker up", Duration::from_secs(10), || {
        (agent.metric("datakit_worker_up{family=\"host\"}") == Some(1.0)).then_some(())
    });
    kill(host, Signal::SIGSTOP);
    let new_host = wait_for(
        "a replacement for the hung worker",
        Duration::from_secs(15),
        || agent.worker_pid("host").filter(|p| *p != host),
    );
    assert_ne!(new_host, host);
    let restarts =
        agent.metric("datakit_worker_restarts_total{family=\"host\",cause=\"health_timeout\"}");
    assert_eq!(restarts, Some(1.0), "{}", agent.metrics());
}

#[test]
fn a_worker_crashing_at_start_up_backs_off_instead_of_spinning() {
    let agent = Agent::start_with(TWO_FAMILIES, "", &[("DK_DEBUG_WORKER_EXIT", "socket")]);
    let started = Instant::now();
    wait_for("host worker up", Duration::from_secs(10), || {
        (agent.metric("datakit_worker_up{family=\"host\"}") == Some(1.0)).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3).saturating_sub(started.elapsed()));
    let elapsed = started.elapsed().as_secs_f64();
    let restarts = agent
        .metric("datakit_worker_restarts_total{family=\"socket\",cause=\"exit_error\"}")
        .unwrap_or(0.0);
    // Backoff 100, 200, 400, 800, 1600 ms...: about 5 restarts in 3 s; a spinning loop would
    // make hundreds.
    assert!(
        restarts >= 2.0,
        "the crashing worker is retried ({restarts} restarts in {elapsed:.1}s)"
    );
    assert!(
        restarts <= 8.0,
        "the crashing worker backs off ({restarts} restarts in {elapsed:.1}s)"
    );
    let (status, body) = agent.request("GET", "/v1/lasterror", &[], b"");
    assert_eq!(status, 200);
    assert!(
        String::from_utf8_lossy(&body).contains("socket"),
        "restarts are visible as last errors"
    );
    assert_eq!(
        agent.metric("datakit_worker_up{family=\"host\"}"),
        Some(1.0),
        "host is unaffected"
    );
}

#[test]
fn sigterm_flushes_every_accepted_point_to_the_sink() {
    // A long flush interval: accepted points sit in memory until shutdown flushes them.
    let mut agent = Agent::start_with(&[], "[io]\n  flush_interval = \"1h\"\n", &[]);
    let n = 2500;
    let mut body = String::new();
    for i in 0..n {
        body.push_str(&format!(
            "e2e_flush,run=a seq={i}i {}\n",
            1_700_000_000_000_000_000i64 + i
        ));
    }
    let (status, resp) = agent.request("POST", "/v1/write/metric", &[], body.as_bytes());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&resp));
    agent.signal(Signal::SIGTERM);
    let status = agent.wait_exit(Duration::from_secs(20));
    assert!(
        status.success(),
        "clean exit: {status}; log:\n{}",
        agent.log()
    );
    let mut seqs: Vec<i64> = agent
        .local_points("metric")
        .iter()
        .filter(|p| p.name == "e2e_flush")
        .filter_map(|p| match p.get_field("seq") {
            Some(dk_proto::Value::I(v)) => Some(*v),
            _ => None,
        })
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(
        seqs.len(),
        n as usize,
        "every accepted point is in the sink after exit"
    );
}

#[test]
fn a_worker_over_the_memory_limit_is_killed_and_restarted_while_others_run_on() {
    // The socket worker holds 128 MiB; the limit is 64 MiB per worker.
    let agent = Agent::start_with(
        TWO_FAMILIES,
        "[resource_limit]\n  mem_max_mb = 64\n  cpu_cores = 0.0\n",
        &[("DK_DEBUG_WORKER_MEMORY_MB", "socket:128")],
    );
    wait_for("a memory_limit restart", Duration::from_secs(15), || {
        agent
            .metric("datakit_worker_restarts_total{family=\"socket\",cause=\"memory_limit\"}")
            .filter(|n| *n >= 1.0)
    });
    let (_, body) = agent.request("GET", "/v1/lasterror", &[], b"");
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("mem_max_mb = 64"), "{body}");
    assert_eq!(
        agent.metric("datakit_worker_restarts_total{family=\"host\",cause=\"memory_limit\"}"),
        None,
        "the host worker stays under the limit"
    );
    let host = agent.worker_pid("host").expect("host worker");
    // Every worker is first in line for the OOM killer and writes no core dumps.
    let adj = std::fs::read_to_string(format!("/proc/{host}/oom_score_adj")).unwrap();
    assert_eq!(adj.trim(), "500");
    let limits = std::fs::read_to_string(format!("/proc/{host}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert!(core.split_whitespace().nth(4) == Some("0"), "{core}");
}

/// The cgroup of `pid` for the cpu controller (v1 line `N:cpu:/x` or `N:cpu,cpuacct:/x`, else
/// the v2 line `0::/x`).
fn cpu_cgroup(pid: u32) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let line = text
        .lines()
        .find(|l| {
            l.split(':')
                .nth(1)
                .is_some_and(|c| c.split(',').any(|x| x == "cpu"))
        })
        .or_else(|| text.lines().find(|l| l.starts_with("0::")))
        .unwrap();
    line.splitn(3, ':').nth(2).unwrap().to_string()
}

#[test]
fn cpu_cores_puts_the_agent_and_its_workers_in_a_cpu_limited_cgroup() {
    let root = std::path::Path::new("/sys/fs/cgroup");
    let v2 = std::fs::read_to_string(root.join("cgroup.controllers"))
        .is_ok_and(|c| c.split_whitespace().any(|x| x == "cpu"));
    if !dk_proto::testing::require(
        "a cgroup cpu controller (/sys/fs/cgroup)",
        v2 || root.join("cpu").is_dir(),
        "run on a host or container with the cgroup cpu controller delegated, as CI does",
    ) || !dk_proto::testing::require_root("a cgroup of its own for the agent")
    {
        return;
    }
    let name = format!("dk-e2e-{}", std::process::id());
    let dir = if v2 {
        root.join(&name)
    } else {
        root.join("cpu").join(&name)
    };
    let agent = Agent::start_with(
        TWO_FAMILIES,
        &format!("[resource_limit]\n  path = \"/{name}\"\n  cpu_cores = 0.5\n"),
        &[],
    );
    let host = wait_for("host worker", Duration::from_secs(10), || {
        agent.worker_pid("host")
    });
    assert_eq!(
        cpu_cgroup(agent.pid()),
        format!("/{name}"),
        "{}",
        agent.log()
    );
    assert_eq!(
        cpu_cgroup(host),
        format!("/{name}"),
        "workers inherit the cgroup"
    );
    let quota = if v2 {
        std::fs::read_to_string(dir.join("cpu.max")).unwrap()
    } else {
        std::fs::read_to_string(dir.join("cpu.cfs_quota_us")).unwrap()
    };
    assert!(quota.starts_with("50000"), "{quota}");
    drop(agent);
    // Empty once the agent is gone; leave nothing behind on the machine.
    wait_for("the cgroup to empty", Duration::from_secs(10), || {
        std::fs::remove_dir(&dir).ok()
    });
}

#[test]
fn a_worker_log_line_names_its_family_once() {
    let agent = Agent::start(TWO_FAMILIES);
    let line = wait_for(
        "the host worker's start line",
        Duration::from_secs(10),
        || {
            agent
                .log()
                .lines()
                .find(|l| l.contains("Worker started.") && l.contains("host"))
                .map(str::to_string)
        },
    );
    assert_eq!(line.matches("family").count(), 1, "{line}");
}
