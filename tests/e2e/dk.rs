//! The `dk` input: the agent's own metrics as Datakit's `dk` measurement, covering the
//! supervisor and every worker process.

use std::time::Duration;

use dk_proto::{Point, Value};

use crate::harness::{Agent, wait_for};

/// The `VmRSS` of `pid` in bytes, as `/proc` shows it now.
fn vm_rss(pid: u32) -> u64 {
    dk_worker::worker::status_bytes(pid, "VmRSS").unwrap_or_else(|| panic!("pid {pid} is gone"))
}

fn float(p: &Point, key: &str) -> Option<f64> {
    match p.get_field(key) {
        Some(Value::F(v)) => Some(*v),
        _ => None,
    }
}

/// The latest `dk` point carrying `field` for `family`.
fn latest<'a>(pts: &'a [Point], field: &str, family: &str) -> Option<&'a Point> {
    pts.iter().rev().find(|p| {
        p.name == "dk" && p.get_tag("family") == Some(family) && p.get_field(field).is_some()
    })
}

#[test]
fn dk_points_carry_the_pids_and_rss_of_the_supervisor_and_every_worker() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let socket = format!(
        "[[inputs.socket]]\n  dest_url = [\"tcp://127.0.0.1:{closed}\"]\n  interval = \"60s\"\n"
    );
    let dk = r#"
[[inputs.dk]]
  interval = "5s"
  metric_name_filter = ["datakit_process_.*", "datakit_worker_restarts.*", "datakit_cpu_usage"]
[inputs.dk.tags]
  team = "ops"
"#;
    let agent = Agent::start(&[("host/dk.conf", dk), ("network/socket.conf", &socket)]);
    let host = wait_for("the host worker", Duration::from_secs(20), || {
        agent.worker_pid("host")
    });
    let net = wait_for("the socket worker", Duration::from_secs(20), || {
        agent.worker_pid("socket")
    });
    let families = [("supervisor", agent.pid()), ("host", host), ("socket", net)];
    let points = wait_for(
        "dk points with the pid of the supervisor and of both workers",
        Duration::from_secs(30),
        || {
            let pts = agent.local_points("metric");
            families
                .iter()
                .all(|(f, pid)| {
                    latest(&pts, "datakit_process_pid", f)
                        .and_then(|p| float(p, "datakit_process_pid"))
                        == Some(f64::from(*pid))
                        && latest(&pts, "datakit_process_rss_bytes", f).is_some()
                })
                .then_some(pts)
        },
    );
    for (family, pid) in families {
        let p = latest(&points, "datakit_process_rss_bytes", family).unwrap();
        let reported = float(p, "datakit_process_rss_bytes").unwrap();
        let now = vm_rss(pid) as f64;
        // Sampled every 2 s, scraped every 5 s: allow a drift of 30 % or 8 MiB.
        let tolerance = (now * 0.3).max(8.0 * 1024.0 * 1024.0);
        assert!(
            reported > 0.0 && (reported - now).abs() <= tolerance,
            "{family} (pid {pid}): dk says {reported} bytes, /proc says {now}"
        );
        assert_eq!(p.get_tag("team"), Some("ops"), "{p:?}");
        assert_eq!(p.get_tag("e2e"), Some("yes"), "global host tags: {p:?}");
        assert!(p.get_tag("host").is_some_and(|h| !h.is_empty()), "{p:?}");
    }
    // The supervisor's own CPU, Datakit's `datakit_cpu_usage`, is there too; what the filter
    // leaves out (the API's request counters) is not.
    let dk: Vec<&Point> = points.iter().filter(|p| p.name == "dk").collect();
    assert!(
        dk.iter()
            .any(|p| p.get_field("datakit_cpu_usage").is_some())
    );
    assert!(
        dk.iter().all(|p| p
            .fields
            .iter()
            .all(|(k, _)| k.starts_with("datakit_process_")
                || k.starts_with("datakit_worker_restarts")
                || k == "datakit_cpu_usage")),
        "only what metric_name_filter keeps"
    );
}
