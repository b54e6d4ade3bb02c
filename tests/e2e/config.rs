//! Configuration: every mistake reported at once before binding; hot reload per family.

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::harness::{Agent, bin, free_port, main_conf, wait_for, write_confd};

#[test]
fn a_config_with_several_mistakes_lists_them_all_and_binds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let main =
        main_conf(port, "").replace("flush_interval = \"200ms\"", "flush_interval = \"soon\"");
    write_confd(
        dir.path(),
        &main,
        &[
            (
                "host/cpu.conf",
                "[[inputs.cpu]]\n  interval = \"ten seconds\"\n",
            ),
            (
                "network/socket.conf",
                "[[inputs.socket]]\n  dest_url = [\"ftp://example.com:21\"]\n  tcp_timeout = \"fast\"\n",
            ),
        ],
    );
    let out = Command::new(bin())
        .arg("run")
        .arg("--workdir")
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "bad config must fail: {stderr}");
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    for needle in [
        "flush_interval",
        "cpu.conf",
        "interval",
        "socket.conf",
        "dest_url",
        "tcp_timeout",
    ] {
        assert!(
            stderr.contains(needle),
            "the report names {needle}:\n{stderr}"
        );
    }
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing was bound"
    );

    let check = Command::new(bin())
        .args(["check", "--config", "--workdir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(78));
    let check_err = String::from_utf8_lossy(&check.stderr);
    for needle in [
        "flush_interval",
        "cpu.conf",
        "socket.conf",
        "dest_url",
        "tcp_timeout",
    ] {
        assert!(
            check_err.contains(needle),
            "check names {needle}:\n{check_err}"
        );
    }
}

#[test]
fn check_accepts_a_valid_config() {
    let dir = tempfile::tempdir().unwrap();
    write_confd(
        dir.path(),
        &main_conf(free_port(), ""),
        &[("host/mem.conf", "[[inputs.mem]]\n")],
    );
    let out = Command::new(bin())
        .args(["check", "--config", "--workdir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_warns_about_typos_with_file_line_and_the_closest_key_and_still_passes() {
    let dir = tempfile::tempdir().unwrap();
    let (statsd_port, graphite_port) = (free_port(), free_port());
    let statsd = format!(
        "[[inputs.statsd]]\n  service_address = \"127.0.0.1:{statsd_port}\"\n  service_unix_address = \"\"\n  delete_gauge = false\n  interval = 10\n"
    );
    let graphite = format!(
        "[[inputs.graphite]]\n  address = \"127.0.0.1:{graphite_port}\"\n  stict_match = true\n"
    );
    let confd = write_confd(
        dir.path(),
        &main_conf(free_port(), ""),
        &[
            ("statsd/statsd.conf", &statsd),
            ("graphite/graphite.conf", &graphite),
        ],
    );
    let out = Command::new(bin())
        .args(["check", "--config", "--workdir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "warnings only must pass:\n{stderr}");
    let statsd_file = confd.join("statsd/statsd.conf");
    let graphite_file = confd.join("graphite/graphite.conf");
    for needle in [
        format!(
            "{}:4: inputs.statsd[0].delete_gauge: unknown key, ignored (the default applies): did you mean `delete_gauges`?",
            statsd_file.display()
        ),
        format!(
            "{}:5: inputs.statsd[0].interval: interval = 10 is 10ns as Datakit reads it",
            statsd_file.display()
        ),
        "if you meant 10s, write interval = \"10s\"; the input then raises it to its minimum 1s"
            .to_string(),
        format!(
            "{}:3: inputs.graphite[0].stict_match: unknown key, ignored (the default applies): did you mean `strict_match`?",
            graphite_file.display()
        ),
        "3 warning(s)".to_string(),
    ] {
        assert!(
            stderr.contains(&needle),
            "check prints {needle:?}:\n{stderr}"
        );
    }
}

#[test]
fn hot_reload_keeps_the_old_config_on_errors_and_restarts_only_changed_families() {
    let socket_conf = |urls: &str| format!("[[inputs.socket]]\n  dest_url = [{urls}]\n");
    let agent = Agent::start(&[
        ("host/mem.conf", "[[inputs.mem]]\n  interval = \"1s\"\n"),
        ("network/socket.conf", &socket_conf("\"tcp://127.0.0.1:1\"")),
    ]);
    let host = wait_for("host worker", Duration::from_secs(10), || {
        agent.worker_pid("host")
    });
    let socket = wait_for("socket worker", Duration::from_secs(10), || {
        agent.worker_pid("socket")
    });

    // A broken edit is rejected; everything keeps running on the old config.
    agent.write_conf(
        "network/socket.conf",
        "[[inputs.socket]]\n  dest_url = \"not a list\n",
    );
    agent.wait_metric_at_least(
        "datakit_config_reload_total{result=\"rejected\"}",
        1.0,
        Duration::from_secs(10),
    );
    let (status, body) = agent.request("GET", "/v1/lasterror", &[], b"");
    assert_eq!(status, 200);
    assert!(
        String::from_utf8_lossy(&body).contains("socket.conf"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(agent.worker_pid("host"), Some(host));
    assert_eq!(agent.worker_pid("socket"), Some(socket));

    // A valid edit adding a target reconfigures the socket worker in place (same process);
    // the host worker is not touched.
    agent.write_conf(
        "network/socket.conf",
        &socket_conf("\"tcp://127.0.0.1:1\", \"udp://127.0.0.1:2\""),
    );
    wait_for(
        "the socket worker reconfigured",
        Duration::from_secs(15),
        || {
            agent
                .log()
                .lines()
                .any(|l| l.contains("Worker reconfigured in place.") && l.contains("socket"))
                .then_some(())
        },
    );
    let new_socket = socket;
    assert_eq!(agent.worker_pid("socket"), Some(socket));
    assert_eq!(
        agent.worker_pid("host"),
        Some(host),
        "the host worker was not restarted"
    );
    assert_eq!(
        agent.metric("datakit_worker_restarts_total{family=\"socket\",cause=\"signal\"}"),
        None,
        "a planned restart is not a crash"
    );

    // datakit.conf itself needs a restart, as in Datakit: the agent says so and keeps running.
    let main = std::fs::read_to_string(agent.workdir().join("conf.d/datakit.conf")).unwrap();
    agent.write_conf(
        "datakit.conf",
        &main.replace("e2e = \"yes\"", "e2e = \"changed\""),
    );
    wait_for("the restart hint", Duration::from_secs(10), || {
        let (_, body) = agent.request("GET", "/v1/lasterror", &[], b"");
        String::from_utf8_lossy(&body)
            .contains("restart the agent")
            .then_some(())
    });
    assert_eq!(agent.worker_pid("host"), Some(host));
    assert_eq!(agent.worker_pid("socket"), Some(new_socket));
}

#[test]
fn files_the_harness_writes_name_the_test_that_wrote_them() {
    let dir = tempfile::tempdir().unwrap();
    let main = main_conf(1, "");
    let confd = write_confd(
        dir.path(),
        &main,
        &[("host/cpu.conf", "[[inputs.cpu]]\n  interval = \"10s\"\n")],
    );
    let name = "files_the_harness_writes_name_the_test_that_wrote_them";
    let main = std::fs::read_to_string(confd.join("datakit.conf")).unwrap();
    assert!(main.contains(name), "{main}");
    assert!(main.contains("[io]  # fixed historical times"), "{main}");
    let cpu = std::fs::read_to_string(confd.join("host/cpu.conf")).unwrap();
    assert!(
        cpu.starts_with("[[inputs.cpu]]\n  interval = \"10s\"\n# Written by the e2e test `"),
        "{cpu}"
    );
    assert!(cpu.contains(name), "{cpu}");
}
