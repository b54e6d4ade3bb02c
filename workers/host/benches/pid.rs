//! Per-process parsing cost of `host_processes` (`/proc/<pid>/stat`, `status`, `cgroup`, the
//! TCP tables) on captured files, and one full object scan of this machine's `/proc`.
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dk_input_host::inputs::process::{ObjectCollector, ProcessesConfig};
use dk_input_host::parse::pid::{
    container_id, join_cmdline, listening_sockets, parse_pid_stat, parse_pid_status,
};
use dk_input_host::sys::HostPaths;

const STAT: &str = include_str!("../testdata/pid_stat");
const STATUS: &str = include_str!("../testdata/pid_status");
const TCP: &str = include_str!("../testdata/net_tcp");
const CGROUP: &str = "0::/system.slice/docker-3f1c2b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a.scope\n";

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("pid_files");
    g.throughput(Throughput::Elements(1));
    g.bench_function("stat", |b| b.iter(|| parse_pid_stat(black_box(STAT))));
    g.bench_function("status", |b| b.iter(|| parse_pid_status(black_box(STATUS))));
    g.bench_function("cgroup", |b| b.iter(|| container_id(black_box(CGROUP))));
    let mut s = String::new();
    g.bench_function("cmdline", |b| {
        b.iter(|| join_cmdline(black_box(b"python3\0-m\0http.server\08080\0"), &mut s))
    });
    let mut out = Vec::new();
    g.bench_function("net_tcp", |b| {
        b.iter(|| {
            out.clear();
            listening_sockets(black_box(TCP), &mut out)
        })
    });
    g.finish();

    // One object scan of the real /proc (all processes, listen ports on).
    let cfg = ProcessesConfig {
        process_name: Vec::new(),
        object_interval: std::time::Duration::from_secs(300),
        metric_interval: std::time::Duration::from_secs(30),
        min_run_time: std::time::Duration::ZERO,
        open_metric: false,
        enable_listen_ports: true,
        enable_open_files: false,
        only_container_processes: false,
        tags: Vec::new(),
    };
    let mut o = ObjectCollector::new(cfg, HostPaths::from_env(), "bench".into());
    let n = o.collect_at(now_ms(), 1).map(|p| p.len()).unwrap_or(0) as u64;
    let mut g = c.benchmark_group("host_processes_scan");
    g.throughput(Throughput::Elements(n.max(1)));
    g.sample_size(20);
    g.bench_function("object_scan_of_this_host", |b| {
        b.iter(|| o.collect_at(now_ms(), 1).map(|p| p.len()))
    });
    g.finish();
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

criterion_group!(pid, benches);
criterion_main!(pid);
