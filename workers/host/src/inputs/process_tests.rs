//! `host_processes` against a fake `/proc` tree (exact values) and against real processes
//! the tests start (`sleep`, a Python listener, a Python process holding 50 files).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dk_proto::{Point, Value};

use super::*;
use crate::config::{InputConfig, decode};

const HOST: &str = "test-host";

fn config(text: &str) -> ProcessesConfig {
    match decode("host_processes", text) {
        Ok(InputConfig::HostProcesses(c)) => c,
        other => panic!("{other:?}"),
    }
}

/// A child killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

/// Waits until `pid` has exec'd `comm` (a fork shows the parent's name until then).
fn wait_comm(pid: i32, comm: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if now.trim() == comm {
            return;
        }
        assert!(Instant::now() < deadline, "pid {pid} is still {now:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn sleep_proc() -> Proc {
    let c = Command::new("sleep")
        .arg("300")
        .stdin(Stdio::null())
        .spawn()
        .expect("sleep");
    let p = Proc(c);
    wait_comm(p.pid(), "sleep");
    p
}

/// A Python process that runs `code`, prints a line when ready, then sleeps.
fn python(code: &str) -> (Proc, String) {
    let mut c = Command::new("python3")
        .arg("-c")
        .arg(code)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let out = c.stdout.take().expect("stdout");
    let p = Proc(c);
    let mut line = String::new();
    BufReader::new(out)
        .read_line(&mut line)
        .expect("ready line");
    (p, line.trim().to_string())
}

fn objects(text: &str) -> Vec<Point> {
    let mut c = ObjectCollector::new(config(text), HostPaths::from_env(), HOST.into());
    c.collect_at(wall_ms(), 1).expect("collect")
}

fn of_pid(points: &[Point], pid: i32) -> Option<&Point> {
    points.iter().find(|p| {
        p.get_field("pid") == Some(&Value::I(i64::from(pid)))
            || p.get_tag("pid") == Some(pid.to_string().as_str())
    })
}

fn string_field<'a>(p: &'a Point, key: &str) -> &'a str {
    match p.get_field(key) {
        Some(Value::S(s)) => s,
        other => panic!("{key}: {other:?} in {p:?}"),
    }
}

fn int_field(p: &Point, key: &str) -> i64 {
    match p.get_field(key) {
        Some(Value::I(i)) => *i,
        other => panic!("{key}: {other:?} in {p:?}"),
    }
}

fn my_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| nix::unistd::getuid().to_string())
}

#[test]
fn a_started_sleep_is_an_object_with_its_pid_name_user_cmdline_and_state() {
    let sleep = sleep_proc();
    let points = objects("min_run_time = \"0s\"");
    let p = of_pid(&points, sleep.pid()).expect("the sleep process");
    assert_eq!(p.name, "host_processes");
    assert_eq!(p.get_tag("process_name"), Some("sleep"));
    assert_eq!(p.get_tag("username"), Some(my_user().as_str()));
    assert_eq!(p.get_tag("state"), Some("sleep"));
    assert_eq!(p.get_tag("host"), Some(HOST));
    assert_eq!(
        p.get_tag("name").map(String::from),
        Some(format!("{HOST}_{}", sleep.pid()))
    );
    assert_eq!(string_field(p, "cmdline"), "sleep 300");
    assert_eq!(p.get_field("state_zombie"), Some(&Value::B(false)));
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(string_field(p, "work_directory"), cwd.to_str().unwrap());
    assert_eq!(int_field(p, "threads"), 1);
    let start = int_field(p, "start_time");
    assert!((wall_ms() - start).abs() < 5_000, "start_time {start}");
    assert!(matches!(p.get_field("rss"), Some(Value::U(n)) if *n > 0));
    // The message repeats the tags and fields, plus gopsutil's memory and cpu records.
    let msg: serde_json::Value = serde_json::from_str(string_field(p, "message")).unwrap();
    assert_eq!(msg["pid"], i64::from(sleep.pid()));
    assert_eq!(msg["process_name"], "sleep");
    assert_eq!(msg["cmdline"], "sleep 300");
    assert_eq!(msg["cpu"]["cpu"], "cpu");
    assert!(msg["memory"]["rss"].as_u64().unwrap() > 0);
    // A kernel thread has no command line: Datakit writes its name in parentheses.
    if let Some(k) = points
        .iter()
        .find(|p| p.get_tag("process_name") == Some("kthreadd"))
    {
        assert_eq!(string_field(k, "cmdline"), "(kthreadd)");
    }
}

#[test]
fn a_python_listener_object_carries_its_listen_port_when_enabled() {
    let (py, port) = python(
        "import socket,time\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen()\n\
         print(s.getsockname()[1],flush=True)\ntime.sleep(300)",
    );
    let points = objects("min_run_time = \"0s\"\nenable_listen_ports = true");
    let p = of_pid(&points, py.pid()).expect("the python process");
    assert_eq!(p.get_tag("process_name"), Some("python3"));
    assert_eq!(string_field(p, "listen_ports"), format!("[{port}]"));
    // A process without a listening socket: Go's nil slice.
    let sleep = sleep_proc();
    let points = objects("min_run_time = \"0s\"\nenable_listen_ports = true");
    let s = of_pid(&points, sleep.pid()).expect("the sleep process");
    assert_eq!(string_field(s, "listen_ports"), "null");
    // Off by default.
    let points = objects("min_run_time = \"0s\"");
    let p = of_pid(&points, py.pid()).expect("the python process");
    assert!(p.get_field("listen_ports").is_none());
}

#[test]
fn open_files_counts_the_descriptors_a_process_holds() {
    let (py, ready) = python(
        "import time\nfs=[open('/dev/null') for _ in range(50)]\nprint('ready',flush=True)\n\
         time.sleep(300)",
    );
    assert_eq!(ready, "ready");
    let points = objects("min_run_time = \"0s\"");
    let p = of_pid(&points, py.pid()).expect("the python process");
    let n = int_field(p, "open_files");
    let listed = std::fs::read_dir(format!("/proc/{}/fd", py.pid()))
        .unwrap()
        .count() as i64;
    assert!(n >= 53, "50 files plus stdio, got {n}");
    assert_eq!(n, listed);
}

#[test]
fn the_process_name_filter_keeps_only_matching_processes_in_metrics_not_objects() {
    let sleep = sleep_proc();
    let cfg = config("min_run_time = \"0s\"\nopen_metric = true\nprocess_name = [\"^sle+p$\"]");
    let mut m = MetricCollector::new(cfg.clone(), HostPaths::from_env(), HOST.into());
    let metrics = m.collect_at(wall_ms(), 7).unwrap();
    assert!(!metrics.is_empty());
    assert!(
        metrics
            .iter()
            .all(|p| p.get_tag("process_name") == Some("sleep")),
        "{metrics:?}"
    );
    let p = of_pid(&metrics, sleep.pid()).expect("the sleep metric");
    assert_eq!(p.get_tag("cmdline"), Some("sleep 300"));
    assert_eq!(p.time, 7);
    assert!(p.get_field("message").is_none() && p.get_field("pid").is_none());
    assert!(matches!(p.get_field("cpu_usage_top"), Some(Value::F(_))));
    let me = std::process::id() as i32;
    assert!(of_pid(&metrics, me).is_none());
    let mut o = ObjectCollector::new(cfg, HostPaths::from_env(), HOST.into());
    let objects = o.collect_at(wall_ms(), 7).unwrap();
    assert!(
        of_pid(&objects, me).is_some(),
        "objects are not filtered by name"
    );
}

#[test]
fn min_run_time_skips_processes_younger_than_it() {
    let sleep = sleep_proc();
    let points = objects("min_run_time = \"1h\"");
    assert!(of_pid(&points, sleep.pid()).is_none());
    assert!(
        points
            .iter()
            .all(|p| int_field(p, "started_duration") > 3600)
    );
    let points = objects("min_run_time = \"0s\"");
    assert!(of_pid(&points, sleep.pid()).is_some());
}

/// A fake `/proc` with one containerised process and one kernel thread.
fn fake_proc(root: &Path, container: &str) {
    let w = |rel: &str, text: &[u8]| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    w(
        "proc/meminfo",
        b"MemTotal:        1000000 kB\nMemFree: 1 kB\n",
    );
    w("proc/stat", b"cpu  1 2 3 4 5 6 7 8 0 0\nbtime 1700000000\n");
    w(
        "etc/passwd",
        b"root:x:0:0::/root:/bin/sh\napp:x:1001:1001::/:/bin/sh\n",
    );
    // Started 500 s after boot (CLK_TCK 100), 2 s user and 1 s system CPU.
    w(
        "proc/77/stat",
        b"77 (nginx) S 1 77 77 0 -1 0 10 20 30 40 200 100 0 0 20 0 4 0 50000 8192000 250 0 \
          0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 5 0 0\n",
    );
    w("proc/77/cmdline", b"nginx: master\0-g\0daemon off;\0");
    w("proc/77/status", b"Name:\tnginx\nUid:\t1001\t1001\t1001\t1001\nThreads:\t4\nvoluntary_ctxt_switches:\t9\nnonvoluntary_ctxt_switches:\t1\n");
    w(
        "proc/77/io",
        b"syscr: 5\nsyscw: 6\nread_bytes: 4096\nwrite_bytes: 8192\n",
    );
    w(
        "proc/77/cgroup",
        format!("0::/system.slice/docker-{container}.scope\n").as_bytes(),
    );
    w(
        "proc/2/stat",
        b"2 (kthreadd) S 0 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 \
          0 0 0 0 0 0 0\n",
    );
    w("proc/2/cmdline", b"");
    w(
        "proc/2/status",
        b"Name:\tkthreadd\nUid:\t0\t0\t0\t0\nThreads:\t1\n",
    );
    w("proc/2/cgroup", b"0::/\n");
    w("proc/self/stat", b"not a pid\n");
}

#[test]
fn fields_units_and_container_id_come_from_the_proc_files_as_datakit_computes_them() {
    let dir = tempfile::tempdir().unwrap();
    let id = "a".repeat(64);
    fake_proc(dir.path(), &id);
    let cfg = config("min_run_time = \"0s\"\nopen_metric = true\n[tags]\nteam = \"web\"");
    let paths = HostPaths::under(dir.path());
    let clk = Scanner::new(paths.clone()).clk_tck;
    assert_eq!(clk, 100, "the fixture assumes USER_HZ 100");
    let page = Scanner::new(paths.clone()).page_size;
    let start_ms = (1_700_000_000 + 500) * 1000;
    let now_ms = start_ms + 100_000;
    let mut o = ObjectCollector::new(cfg.clone(), paths.clone(), HOST.into());
    let points = o.collect_at(now_ms, 9).unwrap();
    assert_eq!(points.len(), 2, "{points:?}");
    let p = of_pid(&points, 77).unwrap();
    assert_eq!(p.get_tag("container_id"), Some(id.as_str()));
    assert_eq!(p.get_tag("process_name"), Some("nginx"));
    assert_eq!(p.get_tag("username"), Some("app"));
    assert_eq!(p.get_tag("team"), Some("web"));
    assert_eq!(p.get_tag("state"), Some("sleep"));
    assert_eq!(p.get_field("rss"), Some(&Value::U(250 * page)));
    assert_eq!(p.get_field("vms"), Some(&Value::U(8_192_000)));
    let pct = f64::from(100.0 * (250 * page) as f32 / 1_024_000_000f32);
    assert_eq!(p.get_field("mem_used_percent"), Some(&Value::F(pct)));
    // 3 CPU seconds over 100 s since start: 3 %; the first scan's top is the same.
    assert_eq!(p.get_field("cpu_usage"), Some(&Value::F(3.0)));
    assert_eq!(p.get_field("cpu_usage_top"), Some(&Value::F(3.0)));
    assert_eq!(p.get_field("threads"), Some(&Value::I(4)));
    assert_eq!(p.get_field("proc_syscr"), Some(&Value::U(5)));
    assert_eq!(p.get_field("proc_write_bytes"), Some(&Value::U(8192)));
    assert_eq!(p.get_field("voluntary_ctxt_switches"), Some(&Value::I(9)));
    assert_eq!(p.get_field("page_minor_faults"), Some(&Value::U(10)));
    assert_eq!(
        p.get_field("page_children_minor_faults"),
        Some(&Value::U(20))
    );
    assert_eq!(p.get_field("page_major_faults"), Some(&Value::U(30)));
    assert_eq!(
        p.get_field("page_children_major_faults"),
        Some(&Value::U(40))
    );
    assert_eq!(p.get_field("start_time"), Some(&Value::I(start_ms)));
    assert_eq!(p.get_field("started_duration"), Some(&Value::I(100)));
    assert_eq!(
        p.get_field("cmdline"),
        Some(&Value::S("nginx: master -g daemon off;".into()))
    );
    let k = of_pid(&points, 2).unwrap();
    assert_eq!(k.get_field("cmdline"), Some(&Value::S("(kthreadd)".into())));
    assert_eq!(k.get_tag("username"), Some("root"));
    assert!(k.get_tag("container_id").is_none());
    assert!(
        k.get_field("proc_syscr").is_none(),
        "no io file, no io fields"
    );

    // The metric skips the kernel thread (no command line) and tags pid and cmdline.
    let mut m = MetricCollector::new(cfg, paths.clone(), HOST.into());
    let metrics = m.collect_at(now_ms, 9).unwrap();
    assert_eq!(metrics.len(), 1);
    assert_eq!(metrics[0].get_tag("pid"), Some("77"));
    assert_eq!(
        metrics[0].get_tag("cmdline"),
        Some("nginx: master -g daemon off;")
    );

    // Only container processes.
    let cfg = config("min_run_time = \"0s\"\nonly_container_processes = true");
    let mut o = ObjectCollector::new(cfg, paths, HOST.into());
    let points = o.collect_at(now_ms, 9).unwrap();
    assert_eq!(points.len(), 1);
    assert!(of_pid(&points, 77).is_some());
}

fn proc_info(pid: i32, start_ms: i64, cpu_secs: f64) -> ProcInfo {
    ProcInfo {
        pid,
        name: "x".into(),
        cmdline: "x".into(),
        username: "root".into(),
        container_id: None,
        state: b'S',
        start_ms,
        user_secs: cpu_secs,
        system_secs: 0.0,
        iowait_secs: 0.0,
        rss: 0,
        vms: 0,
        status: PidStatus::default(),
        io: None,
        faults: [0; 4],
        open_files: None,
        cwd: None,
        listen_ports: None,
    }
}

#[test]
fn cpu_usage_top_is_the_share_between_two_scans_and_falls_back_to_since_start() {
    let mut r = CpuRecorder::default();
    let first = proc_info(1, 0, 10.0);
    // No previous scan: the share since start (10 s of CPU over 100 s).
    assert_eq!(r.top(&first, 100_000), 10.0);
    r.flush(&[first], 100_000);
    // 5 more CPU seconds over 10 s: 50 %.
    assert_eq!(r.top(&proc_info(1, 0, 15.0), 110_000), 50.0);
    // No CPU used: 0.
    assert_eq!(r.top(&proc_info(1, 0, 10.0), 110_000), 0.0);
    // Counters went backwards: the share since start.
    assert_eq!(r.top(&proc_info(1, 0, 5.0), 110_000), 100.0 * (5.0 / 110.0));
    // The pid was reused by a process started later: since its own start.
    assert_eq!(r.top(&proc_info(1, 100_000, 1.0), 110_000), 10.0);
    // Same time as the previous scan: 0.
    assert_eq!(r.top(&proc_info(1, 0, 12.0), 100_000), 0.0);
}

#[test]
fn config_defaults_and_bounds_are_datakits() {
    let c = config("");
    assert_eq!(c.object_interval, Duration::from_secs(300));
    assert_eq!(c.metric_interval, Duration::from_secs(30));
    assert_eq!(c.min_run_time, Duration::ZERO);
    assert!(!c.open_metric && !c.enable_listen_ports && !c.only_container_processes);
    let sample = crate::SAMPLES
        .iter()
        .find(|(n, _)| *n == "host_processes")
        .unwrap()
        .1;
    let s = config(sample);
    assert_eq!(s.min_run_time, Duration::from_secs(600));
    assert_eq!(s.object_interval, Duration::from_secs(300));
    let c = config("object_interval = \"1s\"\nmetric_interval = \"1h\"");
    assert_eq!(c.object_interval, Duration::from_secs(30));
    assert_eq!(c.metric_interval, Duration::from_secs(60));
    let e = decode("host_processes", "process_name = [\"(\"]").unwrap_err();
    assert_eq!(e[0].key, "process_name[0]");
    let e = decode("host_processes", "min_run_time = \"ten\"").unwrap_err();
    assert_eq!(e[0].key, "min_run_time");
}

#[test]
fn a_process_whose_name_is_not_utf8_is_still_reported() {
    let dir = tempfile::tempdir().unwrap();
    fake_proc(dir.path(), &"b".repeat(64));
    let w = |rel: &str, text: &[u8]| std::fs::write(dir.path().join(rel), text).unwrap();
    std::fs::create_dir_all(dir.path().join("proc/88")).unwrap();
    w(
        "proc/88/stat",
        b"88 (\xffbad) S 1 88 88 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 1 0 0 0 0 0 0 0 0 0 0 \
          0 0 0 0 0 0 0 0 0 0 0 0\n",
    );
    w("proc/88/cmdline", b"\xffbad\0");
    w(
        "proc/88/status",
        b"Name:\t\xffbad\nUid:\t0\t0\t0\t0\nThreads:\t2\n",
    );
    let mut o = ObjectCollector::new(
        config("min_run_time = \"0s\""),
        HostPaths::under(dir.path()),
        HOST.into(),
    );
    let points = o.collect_at((1_700_000_000 + 600) * 1000, 1).unwrap();
    let p = of_pid(&points, 88).expect("the process with a binary name");
    assert_eq!(p.get_tag("process_name"), Some("\u{fffd}bad"));
    assert_eq!(p.get_tag("username"), Some("root"));
    assert_eq!(p.get_field("threads"), Some(&Value::I(2)));
}
