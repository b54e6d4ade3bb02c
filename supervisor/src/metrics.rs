//! The supervisor's own metrics (worker lifecycle and RPC, and Datakit's process self metrics:
//! CPU, memory, open files, uptime), registered once at start-up.

use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type FamilyLabel = [(&'static str, String); 1];
type FamilyCauseLabels = [(&'static str, String); 2];

/// Handles to the supervisor metrics.
#[derive(Clone)]
pub struct SupervisorMetrics {
    /// `datakit_worker_restarts_total{family,cause}`.
    pub restarts: Family<FamilyCauseLabels, Counter>,
    /// `datakit_worker_up{family}`: 1 while a worker is connected and healthy.
    pub up: Family<FamilyLabel, Gauge>,
    /// `datakit_worker_rss_bytes{family}` from the last health check.
    pub rss: Family<FamilyLabel, Gauge>,
    /// `datakit_rpc_push_points_total{family}`: points received over RPC.
    pub push_points: Family<FamilyLabel, Counter>,
    /// `datakit_rpc_push_seconds{family}`: time from receiving a batch to acking it.
    pub push_latency: Family<FamilyLabel, Histogram>,
    /// `datakit_rpc_over_limit_total{family}`: requests refused because the worker connection
    /// already had the maximum in flight.
    pub over_limit: Family<FamilyLabel, Counter>,
    /// `datakit_worker_points_dropped{family}`: points the current worker dropped (batches the
    /// supervisor rejected for good, points too large to send), from its last health check.
    pub worker_dropped: Family<FamilyLabel, Gauge>,
    /// `datakit_worker_metrics_refused_total{family}`: worker metrics reports over the size cap.
    pub metrics_refused: Family<FamilyLabel, Counter>,
    /// `datakit_worker_paused{family}`: 1 while the worker's election-aware inputs are paused
    /// (election), as the worker reported at its last health check.
    pub worker_paused: Family<FamilyLabel, Gauge>,
    /// `datakit_upgrade_worker_moved_total{family,result}`: workers of the previous binary
    /// after a binary swap: `moved` (flushed and exited once their replacement was up) or
    /// `killed` (did not reconnect, stopped by signal).
    pub handovers: Family<FamilyCauseLabels, Counter>,
    /// `datakit_config_reload_total{result}`.
    pub reloads: Family<[(&'static str, String); 1], Counter>,
    /// `datakit_uptime_seconds{...}` with Datakit's labels (one series); read when scraped,
    /// so nothing ticks to keep it current.
    pub uptime: Family<UptimeLabels, Gauge<i64, SinceStart>>,
    /// `datakit_cpu_usage`: CPU used by the supervisor process, percent of one core.
    pub cpu_usage: Gauge<f64, AtomicU64>,
    /// `datakit_cpu_cores`: CPUs this process may run on.
    pub cpu_cores: Gauge,
    /// `datakit_open_files`: file descriptors the supervisor holds.
    pub open_files: Gauge,
    /// `datakit_heap_alloc_bytes`: resident anonymous memory (heap and stacks, `RssAnon`).
    pub heap_alloc: Gauge,
    /// `datakit_sys_alloc_bytes`: resident memory of the supervisor (`VmRSS`).
    pub sys_alloc: Gauge,
    /// `datakit_process_pid{family}`, `datakit_process_rss_bytes{family}` and
    /// `datakit_process_cpu_usage{family}` of the supervisor (`family="supervisor"`) and of
    /// every running worker, read from `/proc` when `/metrics` is scraped
    /// ([`SupervisorMetrics::sample_processes`]).
    pub processes: ProcessMetrics,
    /// What the previous process sample read.
    sampled: std::sync::Arc<tokio::sync::Mutex<Sampled>>,
}

/// The previous process sample: when, and the CPU seconds it read (to turn the next one into
/// percent).
#[derive(Default)]
struct Sampled {
    at: Option<Instant>,
    own: Option<f64>,
    /// By worker pid.
    workers: std::collections::HashMap<u32, f64>,
}

/// The pid, resident memory and CPU of the supervisor and of each worker process.
#[derive(Clone, Default)]
pub struct ProcessMetrics {
    /// `datakit_process_pid{family}`.
    pub pid: Family<FamilyLabel, Gauge>,
    /// `datakit_process_rss_bytes{family}` (`VmRSS`).
    pub rss: Family<FamilyLabel, Gauge>,
    /// `datakit_process_cpu_usage{family}`: percent of one core since the previous sample.
    pub cpu: Family<FamilyLabel, Gauge<f64, AtomicU64>>,
    /// The running workers: family to pid (set at each health check, removed when it exits).
    workers: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, u32>>>,
}

/// The `family` label value of the supervisor's own process series.
pub const SUPERVISOR_FAMILY: &str = "supervisor";

impl ProcessMetrics {
    /// Records the pid of `family`'s running worker (at every health check).
    pub fn worker_seen(&self, family: &str, pid: u32) {
        if let Ok(mut w) = self.workers.lock()
            && w.get(family) != Some(&pid)
        {
            w.insert(family.to_string(), pid);
        }
        self.pid
            .get_or_create(&SupervisorMetrics::family(family))
            .set(i64::from(pid));
    }

    /// Forgets `family`'s worker (it exited): its series go away.
    pub fn worker_gone(&self, family: &str) {
        let mut w = self.workers.lock();
        if let Ok(w) = w.as_mut() {
            w.remove(family);
        }
        let label = SupervisorMetrics::family(family);
        self.pid.remove(&label);
        self.rss.remove(&label);
        self.cpu.remove(&label);
        drop(w);
    }

    fn workers(&self) -> Vec<(String, u32)> {
        self.workers
            .lock()
            .map(|w| w.iter().map(|(f, p)| (f.clone(), *p)).collect())
            .unwrap_or_default()
    }

    fn set(&self, family: &str, pid: u32, rss: u64, cpu: Option<f64>) {
        let label = SupervisorMetrics::family(family);
        // Held while setting: a worker that exited meanwhile gets no series back.
        let workers = self.workers.lock();
        if family != SUPERVISOR_FAMILY
            && workers
                .as_ref()
                .map_or(true, |w| w.get(family) != Some(&pid))
        {
            return;
        }
        self.pid.get_or_create(&label).set(i64::from(pid));
        self.rss
            .get_or_create(&label)
            .set(i64::try_from(rss).unwrap_or(i64::MAX));
        if let Some(c) = cpu {
            self.cpu.get_or_create(&label).set(c);
        }
    }
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 when unknown).
fn clock_ticks() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|t| *t > 0)
        .map_or(100.0, |t| t as f64)
}

/// CPU seconds and `VmRSS` of process `pid` (blocking: two small `/proc` reads); `None` when
/// it is gone.
pub fn read_process(pid: u32, ticks: f64) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let cpu = stat_cpu_seconds(&stat, ticks)?;
    let rss = dk_worker::worker::status_bytes(pid, "VmRSS")?;
    Some((cpu, rss))
}

/// A gauge value that is the whole seconds since a start (`set(n)`: started `n` seconds ago;
/// created: now), computed when read.
#[derive(Debug)]
pub struct SinceStart {
    /// Nanoseconds from [`since_start_base`] to the start (negative: the start was before it).
    start_ns: std::sync::atomic::AtomicI64,
}

/// The monotonic instant every [`SinceStart`] counts from.
fn since_start_base() -> Instant {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn ns_since_base() -> i64 {
    i64::try_from(since_start_base().elapsed().as_nanos()).unwrap_or(i64::MAX)
}

impl Default for SinceStart {
    fn default() -> Self {
        SinceStart {
            start_ns: std::sync::atomic::AtomicI64::new(ns_since_base()),
        }
    }
}

impl prometheus_client::metrics::gauge::Atomic<i64> for SinceStart {
    fn inc(&self) -> i64 {
        self.get()
    }
    fn inc_by(&self, _: i64) -> i64 {
        self.get()
    }
    fn dec(&self) -> i64 {
        self.get()
    }
    fn dec_by(&self, _: i64) -> i64 {
        self.get()
    }
    fn set(&self, v: i64) -> i64 {
        let back = v.max(0).saturating_mul(1_000_000_000);
        let old = self.get();
        self.start_ns.store(
            ns_since_base().saturating_sub(back),
            std::sync::atomic::Ordering::Relaxed,
        );
        old
    }
    fn get(&self) -> i64 {
        let start = self.start_ns.load(std::sync::atomic::Ordering::Relaxed);
        (ns_since_base().saturating_sub(start) / 1_000_000_000).max(0)
    }
}

/// The labels of Datakit 1.84's `datakit_uptime_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UptimeLabels {
    /// Always `false`: no self-upgrade.
    pub auto_update: String,
    /// `true` when running in a container (`/.dockerenv` exists).
    pub docker: String,
    /// The host name the agent reports.
    pub hostname: String,
    /// Always `false`: there is no lite build.
    pub lite: String,
    /// Always `false`: there is no eLinker build.
    pub elinker: String,
    /// `[resource_limit]` as applied: `path:/datakit,cpu:2.0,mem:4096MB`, or `-` when off.
    pub resource_limit: String,
    /// Datakit version this agent is compatible with.
    pub version: String,
    /// The build identity (crate version and git commit).
    pub build_at: String,
    /// Unknown at build time: empty.
    pub branch: String,
    /// `linux/x86_64`.
    pub os_arch: String,
}

impl UptimeLabels {
    /// The labels for this process.
    pub fn new(hostname: &str, limit: &dk_config::ResourceLimit) -> Self {
        let no = || "false".to_string();
        UptimeLabels {
            auto_update: no(),
            docker: std::path::Path::new("/.dockerenv").exists().to_string(),
            hostname: hostname.to_string(),
            lite: no(),
            elinker: no(),
            resource_limit: if limit.enable {
                format!(
                    "path:{},cpu:{:.1},mem:{}MB",
                    limit.path, limit.cpu_cores, limit.mem_max_mb
                )
            } else {
                "-".into()
            },
            version: dk_proto::version().to_string(),
            build_at: dk_proto::build_id(),
            branch: String::new(),
            os_arch: format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
        }
    }
}

/// One reading of this process from `/proc/self`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcSample {
    /// User plus system CPU seconds since the process started.
    pub cpu_seconds: f64,
    /// Open file descriptors.
    pub open_files: u64,
    /// `VmRSS` in bytes.
    pub rss: u64,
    /// `RssAnon` in bytes.
    pub rss_anon: u64,
}

/// User plus system CPU seconds from a `/proc/<pid>/stat` line (`ticks` per second).
pub fn stat_cpu_seconds(stat: &str, ticks: f64) -> Option<f64> {
    // The command name may hold spaces and parentheses: fields are counted after the last ')'.
    let after = stat.rsplit_once(')')?.1;
    let mut fields = after.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / ticks)
}

/// Reads this process's CPU time, open files and memory from `/proc/self` (blocking; a few
/// small reads: call it from a blocking thread).
///
/// # Errors
/// When `/proc/self` cannot be read.
pub fn read_self() -> std::io::Result<ProcSample> {
    let ticks = clock_ticks();
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let status = dk_worker::worker::read_status(std::process::id()).unwrap_or_default();
    let value = |key| dk_worker::worker::status_value(&status, key).unwrap_or(0);
    Ok(ProcSample {
        cpu_seconds: stat_cpu_seconds(&stat, ticks).unwrap_or(0.0),
        open_files: std::fs::read_dir("/proc/self/fd")?.count() as u64,
        rss: value("VmRSS"),
        rss_anon: value("RssAnon"),
    })
}

/// CPU percent (100 = one core busy) between two CPU-time readings `wall` apart.
pub fn cpu_percent(before: f64, after: f64, wall: Duration) -> f64 {
    let wall = wall.as_secs_f64();
    if wall <= 0.0 {
        return 0.0;
    }
    ((after - before).max(0.0) / wall * 100.0).max(0.0)
}

/// Scrapes within this long of a process sample serve it instead of reading `/proc` again.
pub const SAMPLE_GAP: Duration = Duration::from_secs(1);

impl SupervisorMetrics {
    /// Reads `/proc` for the supervisor and every running worker (on a blocking thread) and
    /// sets the process self metrics; called when `/metrics` is scraped, so an idle agent
    /// nobody scrapes reads nothing. CPU percent is over the time since the previous sample
    /// (a process's first sample has none; the supervisor takes one at start). Within
    /// [`SAMPLE_GAP`] of the previous sample it does nothing.
    pub async fn sample_processes(&self) {
        let mut prev = self.sampled.lock().await;
        if prev.at.is_some_and(|t| t.elapsed() < SAMPLE_GAP) {
            return;
        }
        let workers = self.processes.workers();
        let read = tokio::task::spawn_blocking(move || {
            let ticks = clock_ticks();
            let own = read_self();
            let others = workers
                .into_iter()
                .map(|(f, pid)| {
                    let r = read_process(pid, ticks);
                    (f, pid, r)
                })
                .collect::<Vec<_>>();
            (own, others)
        })
        .await;
        let Ok((own, others)) = read else {
            return;
        };
        let now = Instant::now();
        let since = prev.at.map(|at| now.duration_since(at));
        if let Ok(s) = own {
            let cpu = match (prev.own, since) {
                (Some(before), Some(wall)) => Some(cpu_percent(before, s.cpu_seconds, wall)),
                _ => None,
            };
            if let Some(c) = cpu {
                self.cpu_usage.set(c);
            }
            prev.own = Some(s.cpu_seconds);
            self.open_files.set(s.open_files as i64);
            self.sys_alloc.set(s.rss as i64);
            self.heap_alloc.set(s.rss_anon as i64);
            self.processes
                .set(SUPERVISOR_FAMILY, std::process::id(), s.rss, cpu);
        }
        let mut seen = std::collections::HashMap::new();
        for (family, pid, r) in others {
            let Some((cpu_s, rss)) = r else { continue };
            let cpu = match (prev.workers.get(&pid), since) {
                (Some(before), Some(wall)) => Some(cpu_percent(*before, cpu_s, wall)),
                _ => None,
            };
            self.processes.set(&family, pid, rss, cpu);
            seen.insert(pid, cpu_s);
        }
        prev.workers = seen;
        prev.at = Some(now);
    }
}

impl SupervisorMetrics {
    /// Registers every supervisor metric.
    pub fn new(registry: &mut Registry) -> Self {
        let m = SupervisorMetrics {
            restarts: Family::default(),
            up: Family::default(),
            rss: Family::default(),
            push_points: Family::default(),
            push_latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
            }),
            over_limit: Family::default(),
            metrics_refused: Family::default(),
            worker_dropped: Family::default(),
            worker_paused: Family::default(),
            reloads: Family::default(),
            handovers: Family::default(),
            uptime: Family::default(),
            cpu_usage: Gauge::default(),
            cpu_cores: Gauge::default(),
            sampled: std::sync::Arc::default(),
            open_files: Gauge::default(),
            heap_alloc: Gauge::default(),
            sys_alloc: Gauge::default(),
            processes: ProcessMetrics::default(),
        };
        m.cpu_cores.set(
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get) as i64,
        );
        registry.register(
            "datakit_process_pid",
            "Pid of the supervisor (family=\"supervisor\") and of each family's worker",
            m.processes.pid.clone(),
        );
        registry.register(
            "datakit_process_rss_bytes",
            "Resident memory (VmRSS) of the supervisor and of each family's worker",
            m.processes.rss.clone(),
        );
        registry.register(
            "datakit_process_cpu_usage",
            "CPU usage(%) of the supervisor and of each family's worker, 100 = one core",
            m.processes.cpu.clone(),
        );
        registry.register(
            "datakit_worker_restarts",
            "Worker restarts by family and cause",
            m.restarts.clone(),
        );
        registry.register(
            "datakit_worker_up",
            "1 while the family's worker is healthy",
            m.up.clone(),
        );
        registry.register(
            "datakit_worker_paused",
            "1 while the family's election-aware inputs are paused (this node does not lead)",
            m.worker_paused.clone(),
        );
        registry.register(
            "datakit_worker_rss_bytes",
            "Resident memory of the family's worker at its last health check",
            m.rss.clone(),
        );
        registry.register(
            "datakit_rpc_push_points",
            "Points received from workers over RPC",
            m.push_points.clone(),
        );
        registry.register(
            "datakit_rpc_push_seconds",
            "Time from receiving a worker batch to acknowledging it",
            m.push_latency.clone(),
        );
        registry.register(
            "datakit_rpc_over_limit",
            "Worker requests refused because the connection had the maximum in flight",
            m.over_limit.clone(),
        );
        registry.register(
            "datakit_worker_points_dropped",
            "Points the family's current worker dropped (rejected batches, oversize points) at its last health check",
            m.worker_dropped.clone(),
        );
        registry.register(
            "datakit_worker_metrics_refused",
            "Worker metrics reports refused for being over the size cap (the last good one is served)",
            m.metrics_refused.clone(),
        );
        registry.register(
            "datakit_upgrade_worker_moved",
            "Workers of the previous binary after a binary swap, by family and result (moved: flushed and exited once replaced; killed: did not reconnect)",
            m.handovers.clone(),
        );
        registry.register(
            "datakit_config_reload",
            "Config reloads by result",
            m.reloads.clone(),
        );
        registry.register(
            "datakit_uptime_seconds",
            "Datakit uptime: seconds since the supervisor started",
            m.uptime.clone(),
        );
        registry.register(
            "datakit_cpu_usage",
            "Datakit CPU usage(%): the supervisor process, 100 = one core",
            m.cpu_usage.clone(),
        );
        registry.register(
            "datakit_cpu_cores",
            "Datakit CPU cores",
            m.cpu_cores.clone(),
        );
        registry.register(
            "datakit_open_files",
            "Datakit open files: descriptors held by the supervisor process",
            m.open_files.clone(),
        );
        registry.register(
            "datakit_heap_alloc_bytes",
            "Datakit memory heap bytes: resident anonymous memory (RssAnon) of the supervisor",
            m.heap_alloc.clone(),
        );
        registry.register(
            "datakit_sys_alloc_bytes",
            "Datakit memory system bytes: resident memory (VmRSS) of the supervisor",
            m.sys_alloc.clone(),
        );
        m
    }

    /// Counts one worker of the previous binary retired after a swap.
    pub fn handover(&self, family: &str, result: &str) {
        self.handovers
            .get_or_create(&[
                ("family", family.to_string()),
                ("result", result.to_string()),
            ])
            .inc();
    }

    /// Counts one restart.
    pub fn restart(&self, family: &str, cause: &str) {
        self.restarts
            .get_or_create(&[("family", family.to_string()), ("cause", cause.to_string())])
            .inc();
    }

    /// The label set of a family.
    pub fn family(family: &str) -> FamilyLabel {
        [("family", family.to_string())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_seconds_come_from_utime_and_stime_after_the_command_name() {
        // A command name with a space and a parenthesis must not shift the fields.
        let stat =
            "4242 (data kit) x) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 8 0 100 0 0";
        assert_eq!(stat_cpu_seconds(stat, 100.0), Some(3.0));
        assert_eq!(stat_cpu_seconds("garbage", 100.0), None);
    }

    #[test]
    fn cpu_percent_is_cpu_time_over_wall_time() {
        assert_eq!(cpu_percent(1.0, 1.5, Duration::from_secs(1)), 50.0);
        assert_eq!(cpu_percent(1.0, 3.0, Duration::from_secs(1)), 200.0);
        assert_eq!(cpu_percent(2.0, 1.0, Duration::from_secs(1)), 0.0);
        assert_eq!(cpu_percent(1.0, 2.0, Duration::ZERO), 0.0);
    }

    #[test]
    fn reading_this_process_counts_its_files_memory_and_cpu_time() {
        let before = read_self().unwrap();
        let held: Vec<std::fs::File> = (0..8)
            .map(|_| std::fs::File::open("/proc/self/stat").unwrap())
            .collect();
        // Burn some CPU so the reading moves.
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(200) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = read_self().unwrap();
        assert!(
            after.open_files >= before.open_files + 8,
            "{before:?} {after:?}"
        );
        drop(held);
        assert!(
            after.cpu_seconds > before.cpu_seconds,
            "{before:?} {after:?}"
        );
        assert!(after.rss > 1 << 20, "{after:?}");
        assert!(
            after.rss_anon > 0 && after.rss_anon <= after.rss,
            "{after:?}"
        );
    }

    #[test]
    fn uptime_has_datakits_labels_in_one_series() {
        let mut registry = Registry::default();
        let m = SupervisorMetrics::new(&mut registry);
        let limit = dk_config::ResourceLimit::default();
        m.uptime
            .get_or_create(&UptimeLabels::new("h1", &limit))
            .set(5);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("datakit_uptime_seconds{"))
            .unwrap();
        for label in [
            "auto_update=\"false\"",
            "hostname=\"h1\"",
            "lite=",
            "elinker=",
            "resource_limit=\"path:/datakit,cpu:2.0,mem:4096MB\"",
            "version=\"1.84.1\"",
            "build_at=",
            "branch=",
            "os_arch=",
            "docker=",
        ] {
            assert!(line.contains(label), "{label} in {line}");
        }
        assert!(line.ends_with(" 5"), "{line}");
    }

    #[tokio::test]
    async fn process_series_cover_the_supervisor_and_running_workers_and_go_with_a_worker() {
        let mut registry = Registry::default();
        let m = SupervisorMetrics::new(&mut registry);
        // A real child stands in for a worker.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        m.processes.worker_seen("host", child.id());
        let encode = |r: &Registry| {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, r).unwrap();
            text
        };
        let rss_line = "datakit_process_rss_bytes{family=\"host\"}";
        // Nothing reads /proc until a scrape asks.
        assert!(!encode(&registry).contains(rss_line));
        m.sample_processes().await;
        let text = encode(&registry);
        assert!(text.contains(rss_line), "{text}");
        assert!(
            text.contains("datakit_process_rss_bytes{family=\"supervisor\"}"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "datakit_process_pid{{family=\"supervisor\"}} {}",
                std::process::id()
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "datakit_process_pid{{family=\"host\"}} {}",
                child.id()
            )),
            "{text}"
        );
        let rss: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(rss_line))
            .and_then(|v| v.trim().parse().ok())
            .unwrap();
        let proc_rss = dk_worker::worker::status_bytes(child.id(), "VmRSS").unwrap() as f64;
        assert!(
            (rss - proc_rss).abs() <= proc_rss * 0.5,
            "{rss} vs {proc_rss}"
        );
        m.processes.worker_gone("host");
        let text = encode(&registry);
        assert!(!text.contains("family=\"host\""), "{text}");
        let _ = child.kill();
        let _ = child.wait();
    }

    #[tokio::test]
    async fn cpu_percent_comes_with_the_second_sample_and_a_scrape_within_the_gap_reads_nothing() {
        let mut registry = Registry::default();
        let m = SupervisorMetrics::new(&mut registry);
        let encode = |r: &Registry| {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, r).unwrap();
            text
        };
        // A busy child stands in for a worker.
        let mut busy = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap();
        m.processes.worker_seen("host", busy.id());
        m.sample_processes().await;
        let cpu_line = "datakit_process_cpu_usage{family=\"host\"}";
        let text = encode(&registry);
        assert!(
            text.contains("datakit_process_rss_bytes{family=\"host\"}"),
            "{text}"
        );
        assert!(
            !text.contains(cpu_line),
            "no CPU percent from one sample: {text}"
        );

        // Within the gap the previous sample is served: a worker seen since gets no series yet.
        let mut idle = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        m.processes.worker_seen("statsd", idle.id());
        m.sample_processes().await;
        let statsd_rss = "datakit_process_rss_bytes{family=\"statsd\"}";
        assert!(!encode(&registry).contains(statsd_rss));

        // The gap has passed (a span of time to measure CPU over, not a synchronisation).
        tokio::time::sleep(SAMPLE_GAP + Duration::from_millis(200)).await;
        m.sample_processes().await;
        let text = encode(&registry);
        assert!(text.contains(statsd_rss), "{text}");
        let cpu: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(cpu_line))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {cpu_line}: {text}"));
        // A busy loop on a shared 2-core machine: well above idle, at most one core.
        assert!((20.0..=110.0).contains(&cpu), "{cpu}");
        for child in [&mut busy, &mut idle] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    #[test]
    fn uptime_is_read_when_scraped_without_a_ticker() {
        use prometheus_client::metrics::gauge::Atomic;
        let g = SinceStart::default();
        assert_eq!(g.get(), 0);
        g.set(3600);
        assert_eq!(g.get(), 3600);
        // Nobody sets it again, yet it moves on: poll (with a deadline) until it reads 3601.
        let deadline = Instant::now() + Duration::from_secs(5);
        while g.get() == 3600 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(g.get(), 3601);
    }
}
