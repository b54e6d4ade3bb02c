//! Operator mistakes that must not pass silently (`check`, `run`, `--help`, the first-run
//! config), and the supervisor's own Datakit self metrics on `/metrics`.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::harness::{Agent, bin, free_port, main_conf, try_request, wait_for, write_confd};

fn check(workdir: &Path) -> (Option<i32>, String) {
    let out = Command::new(bin())
        .args(["check", "--config", "--workdir"])
        .arg(workdir)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn run_to_exit(workdir: &Path) -> Output {
    let mut child = Command::new(bin())
        .args(["run", "--log", "stdout", "--workdir"])
        .arg(workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A run that does not exit would hold the ports: bounded wait, then kill.
    let status = wait_for("run to exit", Duration::from_secs(20), || {
        child.try_wait().unwrap()
    });
    let mut out = child.wait_with_output().unwrap();
    out.status = status;
    out
}

/// The line (1-based) of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn check_on_a_work_dir_that_does_not_exist_says_so_and_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nonexistent");
    let (code, stderr) = check(&missing);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("work dir does not exist"), "{stderr}");
    assert!(stderr.contains("--workdir"), "says what to do: {stderr}");
    assert!(!stderr.contains("configuration OK"), "{stderr}");

    std::fs::create_dir(&missing).unwrap();
    let (code, stderr) = check(&missing);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("conf.d does not exist"), "{stderr}");
}

#[test]
fn check_with_config_dir_checks_the_files_of_that_directory() {
    let dir = tempfile::tempdir().unwrap();
    let confs = dir.path().join("elsewhere");
    let check_dir = |d: &Path| {
        let out = Command::new(bin())
            .args(["check", "--config", "--workdir"])
            .arg(dir.path())
            .arg("--config-dir")
            .arg(d)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, stderr) = check_dir(&confs);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("config dir does not exist"), "{stderr}");

    std::fs::create_dir(&confs).unwrap();
    std::fs::write(confs.join("datakit.conf"), main_conf(free_port(), "")).unwrap();
    std::fs::write(
        confs.join("cpu.conf"),
        "[[inputs.cpu]]\n  interval = \"ten\"\n",
    )
    .unwrap();
    let (code, stderr) = check_dir(&confs);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(
        stderr.contains("cpu.conf:2: inputs.cpu[0].interval: "),
        "{stderr}"
    );
    std::fs::write(confs.join("cpu.conf"), "[[inputs.cpu]]\n").unwrap();
    let (code, stderr) = check_dir(&confs);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("1 family with 1 input instance(s)"),
        "{stderr}"
    );
}

#[test]
fn check_and_run_report_every_busy_port_with_file_line_and_key_and_exit_78() {
    let dir = tempfile::tempdir().unwrap();
    let api = TcpListener::bind("127.0.0.1:0").unwrap();
    let api_port = api.local_addr().unwrap().port();
    let statsd = UdpSocket::bind("127.0.0.1:0").unwrap();
    let statsd_addr = statsd.local_addr().unwrap();
    let statsd_conf =
        format!("# statsd\n[[inputs.statsd]]\n  service_address = \"{statsd_addr}\"\n");
    let confd = write_confd(
        dir.path(),
        &main_conf(api_port, ""),
        &[("statsd/statsd.conf", &statsd_conf)],
    );
    let main_text = std::fs::read_to_string(confd.join("datakit.conf")).unwrap();
    let api_at = format!(
        "datakit.conf:{}: http_api.listen: ",
        line_of(&main_text, "listen = ")
    );
    let statsd_at = "statsd.conf:2: inputs.statsd[0]: ";

    let (code, stderr) = check(dir.path());
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("2 configuration problem(s)"), "{stderr}");
    assert!(stderr.contains(&api_at), "{stderr}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{api_port}")),
        "{stderr}"
    );
    assert!(stderr.contains(statsd_at), "{stderr}");
    assert!(stderr.contains(&statsd_addr.to_string()), "{stderr}");

    let out = run_to_exit(dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("2 listening socket(s) could not be bound"),
        "{stderr}"
    );
    assert!(stderr.contains(&api_at), "{stderr}");
    assert!(stderr.contains(statsd_at), "{stderr}");
    assert!(
        !dir.path().join("run").exists(),
        "nothing was started after the bind failure"
    );

    // Freed, the same config checks clean and the probe released every port it tried.
    drop(api);
    drop(statsd);
    let (code, stderr) = check(dir.path());
    assert_eq!(code, Some(0), "{stderr}");
    TcpListener::bind(("127.0.0.1", api_port)).expect("check released the API port");
    UdpSocket::bind(statsd_addr).expect("check released the statsd port");
}

#[test]
fn errors_and_warnings_are_both_listed_and_counted_with_their_lines() {
    let dir = tempfile::tempdir().unwrap();
    let main = format!(
        "typo_key = 1\nenable_pprof = true\n{}",
        main_conf(free_port(), "")
    )
    .replace("flush_interval = \"200ms\"", "flush_interval = \"soon\"");
    write_confd(dir.path(), &main, &[]);
    let (code, stderr) = check(dir.path());
    assert_eq!(code, Some(78), "{stderr}");
    let flush_at = format!(
        "datakit.conf:{}: io.flush_interval: ",
        line_of(&main, "flush_interval")
    );
    let typo_at = format!("datakit.conf:{}: typo_key: ", line_of(&main, "typo_key"));
    let pprof_at = format!(
        "datakit.conf:{}: enable_pprof: pprof is not served",
        line_of(&main, "enable_pprof")
    );
    assert!(stderr.contains("1 configuration problem(s):"), "{stderr}");
    assert!(stderr.contains("2 warning(s):"), "{stderr}");
    for needle in [&flush_at, &typo_at, &pprof_at] {
        assert!(stderr.contains(needle.as_str()), "{needle} in:\n{stderr}");
    }
    assert!(
        stderr.find(&flush_at) < stderr.find("warning(s)"),
        "errors first:\n{stderr}"
    );

    // `run` shows the warnings too when it refuses the config.
    let out = run_to_exit(dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains(&typo_at), "{stderr}");
}

#[test]
fn help_says_that_a_bare_datakit_runs_from_usr_local_datakit_and_run_logs_its_work_dir() {
    let out = Command::new(bin()).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(help.contains("With no command"), "{help}");
    assert!(help.contains("/usr/local/datakit"), "{help}");

    let agent = Agent::start(&[]);
    let wanted = format!("work dir {}", agent.workdir().display());
    wait_for("the work dir in the log", Duration::from_secs(5), || {
        agent.log().contains(&wanted).then_some(())
    });
}

/// A `datakit run` killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_config_written_on_first_run_starts_and_checks_without_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::fs::File::create(dir.path().join("agent.out")).unwrap();
    let port = free_port();
    // First run on a work dir without datakit.conf: it writes the default one. A broken input
    // file makes that run stop right after (78) instead of taking the default port 9529.
    let broken = dir.path().join("conf.d/broken.conf");
    std::fs::create_dir_all(broken.parent().unwrap()).unwrap();
    std::fs::write(&broken, "[[inputs.cpu]\n").unwrap();
    let first = run_to_exit(dir.path());
    assert_eq!(first.status.code(), Some(78));
    std::fs::remove_file(&broken).unwrap();
    let written = dir.path().join("conf.d/datakit.conf");
    assert!(written.exists());

    // The same file on a free port (and no CPU cgroup, as every e2e agent): no warning at all.
    let text = std::fs::read_to_string(&written).unwrap();
    let text = text
        .replace("localhost:9529", &format!("127.0.0.1:{port}"))
        .replace(
            "[resource_limit]\n  enable = true",
            "[resource_limit]\n  enable = false",
        );
    std::fs::write(&written, &text).unwrap();
    let (code, stderr) = check(dir.path());
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");

    let child = Command::new(bin())
        .args(["run", "--log", "stdout", "--workdir"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .unwrap();
    let _agent = Running(child);
    let api = SocketAddr::from(([127, 0, 0, 1], port));
    wait_for("the API", Duration::from_secs(10), || {
        try_request(api, "GET", "/v1/ping", &[], b"").ok()
    });
    // The default inputs have started (the host worker answers with data) by now.
    wait_for("host metrics on disk", Duration::from_secs(20), || {
        let d = dir.path().join("data/local/metric");
        (!crate::harness::read_local_points(&d).is_empty()).then_some(())
    });
    let log = std::fs::read_to_string(dir.path().join("agent.out")).unwrap();
    assert!(log.contains("Agent started"), "{log}");
    assert!(!log.contains("WARN"), "{log}");
    assert!(!log.contains("does not serve"), "{log}");
}

#[test]
fn metrics_has_datakits_process_self_metrics_and_feed_times_after_a_write() {
    let agent = Agent::start(&[]);
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let (status, body) = agent.request("POST", "/v1/write/metric", &[], b"op,t=1 f=1i\n");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    // Process stats are read every 2 s: the CPU usage needs two readings.
    let text = wait_for("the process self metrics", Duration::from_secs(10), || {
        let text = agent.metrics();
        let uptime_up = text
            .lines()
            .any(|l| l.starts_with("datakit_uptime_seconds{") && !l.ends_with(" 0"));
        (text.contains("\ndatakit_cpu_usage ") && uptime_up).then_some(text)
    });
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("{name} in:\n{text}"))
    };
    let cpu = value("datakit_cpu_usage");
    assert!((0.0..=100.0 * 64.0).contains(&cpu), "cpu {cpu}");
    assert!(value("datakit_cpu_cores") >= 1.0);
    assert!(value("datakit_open_files") > 3.0);
    let rss = value("datakit_sys_alloc_bytes");
    let heap = value("datakit_heap_alloc_bytes");
    assert!(rss > 1_048_576.0 && rss < 1_073_741_824.0, "rss {rss}");
    assert!(heap > 0.0 && heap <= rss, "heap {heap} rss {rss}");
    let uptime = text
        .lines()
        .filter(|l| l.starts_with("datakit_uptime_seconds"))
        .collect::<Vec<_>>();
    assert_eq!(uptime.len(), 1, "one uptime series: {uptime:?}");
    for label in [
        "version=\"1.84.1\"",
        "os_arch=",
        "hostname=",
        "docker=",
        "auto_update=",
        "resource_limit=",
        "build_at=",
    ] {
        assert!(uptime[0].contains(label), "{label} in {}", uptime[0]);
    }
    assert!(value("datakit_uptime_seconds") > 0.0);

    let fed = text
        .lines()
        .find(|l| {
            l.starts_with("datakit_io_last_feed_timestamp_seconds{")
                && l.contains("category=\"metric\"")
        })
        .unwrap_or_else(|| panic!("no feed timestamp in:\n{text}"));
    let at: f64 = fed.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(
        at >= before.floor() && at < before + 60.0,
        "{fed} (write at {before})"
    );
    let cost_count = text
        .lines()
        .find(|l| {
            l.starts_with("datakit_io_feed_cost_seconds_count{")
                && l.contains("category=\"metric\"")
        })
        .unwrap_or_else(|| panic!("no feed cost in:\n{text}"));
    assert!(cost_count.ends_with(" 1"), "{cost_count}");
}
