//! Installing over Datakit: the data it left unsent in `cache/dw-wal` is replayed once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use dk_proto::{Point, Value};
use nix::sys::signal::Signal;

use crate::harness::{Agent, free_port, main_conf, wait_for, write_confd};

use dk_proto::testing::{
    DATAKIT_WAL_FC_FILE as FC_FILE, copy_tree, datakit_wal_fixture as fixture,
};
const WANT: [(&str, &str, i64); 3] = [
    ("metric", "migrate", 5000),
    ("logging", "migrate_log", 300),
    ("object", "migrate_obj", 20),
];

/// A work dir as Datakit left it (its WAL in `cache/dw-wal`), with our test config, started.
fn start_over_datakit(env: &[(&str, &str)]) -> Agent {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixture(), &dir.path().join("cache/dw-wal"));
    let port = free_port();
    write_confd(dir.path(), &main_conf(port, ""), &[]);
    let logs = dir.path().to_path_buf();
    Agent::start_in(dir, &logs, port, env)
}

/// Stops the agent (SIGTERM, or SIGKILL when `crash`); returns its work dir and API port.
fn stop(mut agent: Agent, crash: bool) -> (tempfile::TempDir, u16) {
    agent.signal(if crash {
        Signal::SIGKILL
    } else {
        Signal::SIGTERM
    });
    let status = agent.wait_exit(Duration::from_secs(20));
    assert!(crash || status.success(), "clean stop: {status}");
    let port = agent.api.port();
    let dir = std::mem::replace(&mut agent.dir, tempfile::tempdir().unwrap());
    (dir, port)
}

/// Starts the agent again on a work dir.
fn start_again((dir, port): (tempfile::TempDir, u16)) -> Agent {
    let logs = dir.path().to_path_buf();
    Agent::start_in(dir, &logs, port, &[])
}

/// The `seq` of each replayed point in the local files, by measurement (sorted).
fn seqs(agent: &Agent) -> BTreeMap<String, Vec<i64>> {
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (category, ..) in WANT {
        for p in agent.local_points(category) {
            if p.name.starts_with("migrate") {
                out.entry(p.name.clone()).or_default().push(seq(&p));
            }
        }
    }
    for v in out.values_mut() {
        v.sort_unstable();
    }
    out
}

fn seq(p: &Point) -> i64 {
    match p.get_field("seq") {
        Some(Value::I(i)) => *i,
        other => panic!("seq of {p:?} is {other:?}"),
    }
}

/// Waits until every seq of every replayed measurement is in the local files (duplicates
/// allowed); returns what is there.
fn wait_all(agent: &Agent) -> BTreeMap<String, Vec<i64>> {
    wait_for(
        "the replayed points in the local files",
        Duration::from_secs(30),
        || {
            let got = seqs(agent);
            WANT.iter()
                .all(|(_, name, n)| {
                    got.get(*name).is_some_and(|v| {
                        let mut v = v.clone();
                        v.dedup();
                        v.len() as i64 >= *n
                    })
                })
                .then_some(got)
        },
    )
}

/// Writes one sentinel metric point and waits until the local sink has it: anything still
/// queued in the metric queue ahead of it is in the files by then.
fn flush_through(agent: &Agent, tag: &str) {
    let (status, body) = agent.request(
        "POST",
        "/v1/write/metric?precision=ns",
        &[],
        format!("sentinel,run={tag} seq=-1i 1764000000000000000\n").as_bytes(),
    );
    assert!(status < 300, "{status} {}", String::from_utf8_lossy(&body));
    wait_for("the sentinel", Duration::from_secs(20), || {
        agent
            .local_points("metric")
            .iter()
            .any(|p| p.name == "sentinel" && p.get_tag("run") == Some(tag))
            .then_some(())
    });
}

#[test]
fn datakit_unsent_wal_is_delivered_exactly_once_with_its_times_and_not_again_after_a_restart() {
    let started = Instant::now();
    let agent = start_over_datakit(&[]);
    let got = wait_all(&agent);
    let took = started.elapsed();
    for (_, name, n) in WANT {
        assert_eq!(
            got[name],
            (0..n).collect::<Vec<_>>(),
            "{name}: each seq once"
        );
    }
    for (category, name, _) in WANT {
        for p in agent
            .local_points(category)
            .iter()
            .filter(|p| p.name == name)
        {
            assert_eq!(
                p.time,
                1_764_000_000_000_000_000 + seq(p) * 1_000_000,
                "the original time: {p:?}"
            );
            assert!(p.get_field("__orig_time").is_none(), "{p:?}");
            assert_eq!(p.get_tag("host"), Some("vm"), "Datakit's tags stay: {p:?}");
            assert_eq!(
                p.get_tag("e2e"),
                None,
                "our global tags are not added: {p:?}"
            );
        }
    }
    for (category, _, n) in WANT {
        let series = format!("datakit_io_migrated_point_total{{category=\"{category}\"}}");
        assert_eq!(
            agent.wait_metric_at_least(&series, 1.0, Duration::from_secs(10)),
            n as f64
        );
    }
    let wal = agent.workdir().join("cache/dw-wal");
    assert!(!wal.join("fc").exists(), "Datakit's fail cache is removed");
    assert!(!wal.join("metric/.pos").exists() && !wal.join("metric/data").exists());
    let marker = std::fs::read_to_string(wal.join("datakit-migration.log")).unwrap();
    assert!(
        marker.contains(&format!("adopted 58325 fc/{FC_FILE}")),
        "{marker}"
    );
    assert!(
        agent.log().contains("Adopted the data Datakit left unsent"),
        "{}",
        agent.log()
    );
    let summary = marker
        .lines()
        .find(|l| l.starts_with("migrated "))
        .unwrap_or_default();
    eprintln!("fixture (5,320 points) in the local files {took:?} after the start; {summary}");

    let agent = start_again(stop(agent, false));
    flush_through(&agent, "after-restart");
    assert_eq!(seqs(&agent), got, "nothing replayed again after a restart");
    assert_eq!(
        agent.metric("datakit_io_migrated_point_total{category=\"metric\"}"),
        None
    );
}

#[test]
fn a_crash_in_the_middle_of_the_replay_loses_no_point() {
    // Every queue fsync takes 200 ms: the six records take over a second to replay.
    let agent = start_over_datakit(&[("DK_DEBUG_FSYNC_DELAY_MS", "200")]);
    agent.wait_metric_at_least(
        "datakit_io_migrated_point_total{category=\"metric\"}",
        1.0,
        Duration::from_secs(20),
    );
    let stopped = stop(agent, true);
    assert!(
        stopped
            .0
            .path()
            .join("cache/dw-wal/fc")
            .join(FC_FILE)
            .exists(),
        "killed before the replay ended"
    );
    let agent = start_again(stopped);
    let got = wait_all(&agent);
    for (_, name, n) in WANT {
        let mut v = got[name].clone();
        v.dedup();
        assert_eq!(
            v,
            (0..n).collect::<Vec<_>>(),
            "{name}: every seq at least once"
        );
    }
    assert!(!agent.workdir().join("cache/dw-wal/fc").exists());
    let again = seqs(&agent);
    flush_through(&agent, "after-crash");
    assert_eq!(
        seqs(&agent),
        again,
        "the migration is over after the second start"
    );
}
