//! The `host_processes` cost on a host with many processes: starts N `sleep` processes
//! (default 2000), then runs object and metric collections the way the worker does and
//! prints the CPU time (user + system, from getrusage) per collection and the RSS.
//!
//! `cargo run --release -p dk-input-host --example procs_load -- [N] [listen_ports]`
#![allow(clippy::print_stdout)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dk_input_host::inputs::process::{MetricCollector, ObjectCollector, ProcessesConfig};
use dk_input_host::sys::HostPaths;

struct Kids(Vec<Child>);

impl Drop for Kids {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

fn cpu_secs() -> f64 {
    let r = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .unwrap_or_else(|e| panic!("getrusage: {e}"));
    let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
    t(r.user_time()) + t(r.system_time())
}

fn status_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)?
                .trim_start_matches(':')
                .trim()
                .trim_end_matches(" kB")
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2000);
    let listen = args.get(2).is_some_and(|a| a == "listen_ports");
    let before = std::fs::read_dir("/proc").map(|d| d.count()).unwrap_or(0);
    let started = Instant::now();
    let mut kids = Kids(Vec::with_capacity(n));
    for _ in 0..n {
        match Command::new("sleep")
            .arg("600")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => kids.0.push(c),
            Err(e) => {
                eprintln!("started {} sleeps, then: {e}", kids.0.len());
                break;
            }
        }
    }
    // Let every child exec (a fork still shows the parent until then).
    std::thread::sleep(Duration::from_millis(500));
    println!(
        "started {} sleep processes in {:.2?}; /proc entries before: {before}",
        kids.0.len(),
        started.elapsed()
    );
    let cfg = ProcessesConfig {
        process_name: Vec::new(),
        object_interval: Duration::from_secs(300),
        metric_interval: Duration::from_secs(30),
        min_run_time: Duration::ZERO,
        open_metric: true,
        enable_listen_ports: listen,
        enable_open_files: false,
        only_container_processes: false,
        tags: Vec::new(),
    };
    let rss_start = status_kb("VmRSS");
    let mut objects = ObjectCollector::new(cfg.clone(), HostPaths::from_env(), "load".into());
    let mut metrics = MetricCollector::new(cfg, HostPaths::from_env(), "load".into());
    for round in 0..5 {
        let (c0, t0) = (cpu_secs(), Instant::now());
        let o = objects
            .collect_at(now_ms(), 1)
            .map(|p| p.len())
            .unwrap_or(0);
        let (c1, t1) = (cpu_secs(), Instant::now());
        let m = metrics
            .collect_at(now_ms(), 1)
            .map(|p| p.len())
            .unwrap_or(0);
        let c2 = cpu_secs();
        println!(
            "round {round}: object scan {o} processes: cpu {:.1} ms ({:.1} us/process), wall {:.1?}; \
             metric scan {m} processes: cpu {:.1} ms ({:.1} us/process), wall {:.1?}",
            (c1 - c0) * 1e3,
            (c1 - c0) * 1e6 / o.max(1) as f64,
            t1 - t0,
            (c2 - c1) * 1e3,
            (c2 - c1) * 1e6 / m.max(1) as f64,
            t1.elapsed(),
        );
    }
    println!(
        "RSS: {} KiB before the scans, {} KiB after, peak {} KiB (listen_ports {listen})",
        rss_start,
        status_kb("VmRSS"),
        status_kb("VmHWM")
    );
}
