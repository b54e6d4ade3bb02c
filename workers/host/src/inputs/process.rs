//! `host_processes`: one `host_processes` object per process (category object, every
//! `object_interval`) and, with `open_metric`, one `host_processes` metric point per
//! process with a command line (every `metric_interval`), read from `/proc/<pid>/*` as
//! Datakit 1.84 reads them through gopsutil.
//!
//! A scan lists `/proc` once and reads, per process, `stat`, `cmdline`, `cgroup`, `status`
//! and `io` into reused buffers, plus the `fd` directory (count; socket links when
//! `enable_listen_ports`) and the `cwd` link for objects. Listening ports come from the
//! `/proc/<pid>/net/tcp{,6}` tables read once per network namespace per scan, and user
//! names from `/etc/passwd`, re-read only when it changes.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dk_proto::{Category, Point, Value};
use dk_worker::config::{Decoded, Problems};
use dk_worker::{Input, InputContext};
use futures::future::BoxFuture;
use regex::Regex;
use serde::Deserialize;
use serde_json::json;

use crate::config::compile_all;
use crate::parse::meminfo::parse_meminfo;
use crate::parse::pid::{
    PidIo, PidStatus, container_id, join_cmdline, listening_sockets, parse_passwd, parse_pid_io,
    parse_pid_stat, parse_pid_status, process_name, socket_inode, state_name,
};
use crate::parse::stat::parse_stat;
use crate::runner::{Collector, run_loop};
use crate::sys::{CollectError, HostPaths};

/// The input and measurement name.
pub const NAME: &str = "host_processes";

/// `[inputs.host_processes]`, decoded.
#[derive(Debug, Clone)]
pub struct ProcessesConfig {
    /// `process_name`: regular expressions; a metric is reported only for a process whose
    /// name matches one (all when empty). Objects are not filtered, as in Datakit.
    pub process_name: Vec<Regex>,
    /// `object_interval` (default 5 min, kept between 30 s and 15 min).
    pub object_interval: Duration,
    /// `metric_interval` (default 30 s, kept between 10 s and 1 min).
    pub metric_interval: Duration,
    /// `min_run_time`: processes younger than this are skipped (both kinds).
    pub min_run_time: Duration,
    /// `open_metric`: also report the metric.
    pub open_metric: bool,
    /// `enable_listen_ports`: the object's `listen_ports` field.
    pub enable_listen_ports: bool,
    /// `enable_open_files`: accepted; `open_files` is reported either way, as Datakit
    /// 1.84 does.
    pub enable_open_files: bool,
    /// `only_container_processes`: skip processes whose cgroup names no container.
    pub only_container_processes: bool,
    /// `[inputs.host_processes.tags]`.
    pub tags: Vec<(String, String)>,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct ProcessesToml {
    process_name: Vec<String>,
    #[serde(with = "dk_worker::config::go")]
    object_interval: Duration,
    #[serde(with = "dk_worker::config::go")]
    metric_interval: Duration,
    #[serde(with = "dk_worker::config::go")]
    min_run_time: Duration,
    open_metric: bool,
    enable_listen_ports: bool,
    enable_open_files: bool,
    only_container_processes: bool,
    tags: BTreeMap<String, String>,
    // Removed in Datakit (no pipeline on process objects); accepted and ignored.
    pipeline: String,
}

impl Default for ProcessesToml {
    fn default() -> Self {
        ProcessesToml {
            process_name: Vec::new(),
            object_interval: Duration::from_secs(300),
            metric_interval: Duration::from_secs(30),
            min_run_time: Duration::ZERO,
            open_metric: false,
            enable_listen_ports: false,
            enable_open_files: false,
            only_container_processes: false,
            tags: BTreeMap::new(),
            pipeline: String::new(),
        }
    }
}

/// Decodes one `[inputs.host_processes]` table with Datakit's keys and defaults.
pub(crate) fn decode_config(table: toml::Table) -> Decoded<ProcessesConfig> {
    dk_worker::config::decode_table::<ProcessesToml>(table).map(|t, p: &mut Problems| {
        ProcessesConfig {
            process_name: compile_all(p, "process_name", &t.process_name),
            object_interval: p.clamp(
                "object_interval",
                t.object_interval,
                Duration::from_secs(30),
                Duration::from_secs(900),
            ),
            metric_interval: p.clamp(
                "metric_interval",
                t.metric_interval,
                Duration::from_secs(10),
                Duration::from_secs(60),
            ),
            min_run_time: t.min_run_time,
            open_metric: t.open_metric,
            enable_listen_ports: t.enable_listen_ports,
            enable_open_files: t.enable_open_files,
            only_container_processes: t.only_container_processes,
            tags: t.tags.into_iter().collect(),
        }
    })
}

/// One process as a scan saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcInfo {
    /// Process id.
    pub pid: i32,
    /// gopsutil's `Name()`.
    pub name: String,
    /// The command line joined by spaces (empty for kernel threads).
    pub cmdline: String,
    /// User name of the real uid (the uid itself when `/etc/passwd` has no entry).
    pub username: String,
    /// Container id from the cgroup, when there is one.
    pub container_id: Option<String>,
    /// The one-letter state.
    pub state: u8,
    /// Start time, ms since the epoch (second precision, as gopsutil).
    pub start_ms: i64,
    /// User CPU seconds.
    pub user_secs: f64,
    /// System CPU seconds.
    pub system_secs: f64,
    /// Block I/O delay seconds (gopsutil's `iowait`).
    pub iowait_secs: f64,
    /// Resident set size, bytes.
    pub rss: u64,
    /// Virtual memory size, bytes.
    pub vms: u64,
    /// `status` counters.
    pub status: PidStatus,
    /// `io` counters (absent when the file is not readable).
    pub io: Option<PidIo>,
    /// `minflt`, `majflt`, `cminflt`, `cmajflt`.
    pub faults: [u64; 4],
    /// Entries of `/proc/<pid>/fd`.
    pub open_files: Option<i64>,
    /// Working directory (objects only).
    pub cwd: Option<String>,
    /// Listening TCP ports (objects with `enable_listen_ports` only).
    pub listen_ports: Option<Vec<u16>>,
}

/// What a scan reads besides the basics.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScanOptions {
    /// Apply the `process_name` filter and skip processes without a command line (metric).
    pub for_metric: bool,
    /// Read the working directory (object).
    pub cwd: bool,
    /// Resolve listening ports.
    pub listen_ports: bool,
    /// Count open files.
    pub open_files: bool,
}

/// The listening sockets of one network namespace: inode -> (table position, port).
#[derive(Debug, Default)]
struct NetnsSockets {
    by_inode: HashMap<u64, (usize, u16)>,
}

/// Reads processes from `/proc` with buffers kept between scans.
#[derive(Debug)]
pub struct Scanner {
    paths: HostPaths,
    proc_dir: String,
    clk_tck: u64,
    page_size: u64,
    path: String,
    buf: Vec<u8>,
    raw_cmdline: Vec<u8>,
    passwd: HashMap<u32, String>,
    passwd_stamp: Option<(SystemTime, u64)>,
    netns: HashMap<u64, NetnsSockets>,
    /// Processes that vanished or could not be read during the last scan.
    pub skipped: usize,
}

impl Scanner {
    /// A scanner over `paths`.
    pub fn new(paths: HostPaths) -> Self {
        let clk_tck = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .and_then(|v| u64::try_from(v).ok())
            .filter(|v| *v > 0)
            .unwrap_or(100);
        let page_size = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|v| u64::try_from(v).ok())
            .filter(|v| *v > 0)
            .unwrap_or(4096);
        Scanner {
            proc_dir: paths
                .proc("")
                .to_string_lossy()
                .trim_end_matches('/')
                .to_string(),
            paths,
            clk_tck,
            page_size,
            path: String::with_capacity(64),
            buf: Vec::with_capacity(4096),
            raw_cmdline: Vec::with_capacity(512),
            passwd: HashMap::new(),
            passwd_stamp: None,
            netns: HashMap::new(),
            skipped: 0,
        }
    }

    fn set_path(&mut self, pid: i32, file: &str) {
        self.path.clear();
        let _ = write!(self.path, "{}/{pid}/{file}", self.proc_dir);
    }

    /// Reads `/proc/<pid>/<file>` into `self.buf`.
    fn read_pid(&mut self, pid: i32, file: &str) -> std::io::Result<()> {
        self.set_path(pid, file);
        self.buf.clear();
        std::fs::File::open(&self.path)?.read_to_end(&mut self.buf)?;
        Ok(())
    }

    fn refresh_passwd(&mut self) {
        let p = self.paths.etc("passwd");
        let stamp = std::fs::metadata(&p)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())));
        if stamp.is_some() && stamp == self.passwd_stamp {
            return;
        }
        self.passwd = std::fs::read_to_string(&p)
            .map(|t| parse_passwd(&t))
            .unwrap_or_default();
        self.passwd_stamp = stamp;
    }

    fn username(&self, uid: Option<u32>) -> String {
        match uid {
            Some(u) => self
                .passwd
                .get(&u)
                .cloned()
                .unwrap_or_else(|| u.to_string()),
            None => String::new(),
        }
    }

    /// Host memory total (bytes) and boot time (s), read once per scan.
    fn host_basics(&mut self) -> Result<(u64, u64), CollectError> {
        let read = |p: PathBuf| {
            std::fs::read_to_string(&p).map_err(|source| CollectError::Io {
                path: p.display().to_string(),
                source,
            })
        };
        let mem = parse_meminfo(&read(self.paths.proc("meminfo"))?)?;
        let boot = parse_stat(&read(self.paths.proc("stat"))?)?
            .boot_time
            .unwrap_or(0);
        Ok((mem.total, boot))
    }

    /// Every process older than `min_run_time` at `now_ms` that passes the filters.
    ///
    /// # Errors
    /// [`CollectError::Io`] when `/proc` cannot be listed or `/proc/meminfo` or
    /// `/proc/stat` read; processes that vanish during the scan are skipped.
    pub fn scan(
        &mut self,
        cfg: &ProcessesConfig,
        opts: ScanOptions,
        now_ms: i64,
    ) -> Result<(Vec<ProcInfo>, u64), CollectError> {
        let (mem_total, boot) = self.host_basics()?;
        self.refresh_passwd();
        self.netns.clear();
        self.skipped = 0;
        let dir = self.paths.proc("");
        let entries = std::fs::read_dir(&dir).map_err(|source| CollectError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let min_run_ms = i64::try_from(cfg.min_run_time.as_millis()).unwrap_or(i64::MAX);
        let mut out = Vec::new();
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            match self.one(pid, cfg, opts, now_ms, min_run_ms, boot) {
                Ok(Some(p)) => out.push(p),
                Ok(None) => {}
                Err(_) => self.skipped += 1,
            }
        }
        Ok((out, mem_total))
    }

    fn one(
        &mut self,
        pid: i32,
        cfg: &ProcessesConfig,
        opts: ScanOptions,
        now_ms: i64,
        min_run_ms: i64,
        boot: u64,
    ) -> Result<Option<ProcInfo>, Skip> {
        self.read_pid(pid, "stat")?;
        // A name may hold any bytes (prctl): read them as Go strings are printed.
        let text = String::from_utf8_lossy(&self.buf);
        let st = parse_pid_stat(&text).map_err(|_| Skip)?;
        let start_ms = i64::try_from((st.starttime / self.clk_tck + boot) * 1000).unwrap_or(0);
        // Datakit keeps a process when it has run for longer than min_run_time.
        if now_ms - start_ms <= min_run_ms {
            return Ok(None);
        }
        let tck = self.clk_tck as f64;
        let comm = st.comm.to_string();
        let (state, faults) = (st.state, [st.minflt, st.majflt, st.cminflt, st.cmajflt]);
        let (user_secs, system_secs, iowait_secs) = (
            st.utime as f64 / tck,
            st.stime as f64 / tck,
            st.blkio_ticks as f64 / tck,
        );
        let (rss, vms) = (st.rss_pages * self.page_size, st.vsize);

        self.set_path(pid, "cmdline");
        self.raw_cmdline.clear();
        std::fs::File::open(&self.path)
            .and_then(|mut f| f.read_to_end(&mut self.raw_cmdline))
            .map_err(|_| Skip)?;
        let name = process_name(&comm, &self.raw_cmdline).into_owned();
        let mut cmdline = String::new();
        join_cmdline(&self.raw_cmdline, &mut cmdline);
        if opts.for_metric {
            if !cfg.process_name.is_empty() && !cfg.process_name.iter().any(|r| r.is_match(&name)) {
                return Ok(None);
            }
            if cmdline.is_empty() {
                return Ok(None);
            }
        }

        let container = match self.read_pid(pid, "cgroup") {
            Ok(()) => std::str::from_utf8(&self.buf)
                .ok()
                .and_then(container_id)
                .map(str::to_string),
            Err(_) => None,
        };
        if cfg.only_container_processes && container.is_none() {
            return Ok(None);
        }

        self.read_pid(pid, "status")?;
        let status = parse_pid_status(&String::from_utf8_lossy(&self.buf)).unwrap_or_default();
        let io = match self.read_pid(pid, "io") {
            Ok(()) => std::str::from_utf8(&self.buf).ok().map(parse_pid_io),
            Err(_) => None,
        };
        let (open_files, listen_ports) = self.fds(pid, opts);
        let cwd = if opts.cwd {
            self.set_path(pid, "cwd");
            std::fs::read_link(&self.path)
                .ok()
                .map(|p| p.to_string_lossy().into_owned())
        } else {
            None
        };
        Ok(Some(ProcInfo {
            pid,
            username: self.username(status.uid),
            name,
            cmdline,
            container_id: container,
            state,
            start_ms,
            user_secs,
            system_secs,
            iowait_secs,
            rss,
            vms,
            status,
            io,
            faults,
            open_files,
            cwd,
            listen_ports,
        }))
    }

    /// The open-file count and, when asked, the listening ports of `pid`.
    fn fds(&mut self, pid: i32, opts: ScanOptions) -> (Option<i64>, Option<Vec<u16>>) {
        if !opts.open_files && !opts.listen_ports {
            return (None, None);
        }
        self.set_path(pid, "fd");
        let Ok(dir) = std::fs::read_dir(&self.path) else {
            return (None, None);
        };
        if !opts.listen_ports {
            return (Some(dir.count() as i64), None);
        }
        let mut count = 0i64;
        let mut inodes = Vec::new();
        for e in dir.flatten() {
            count += 1;
            if let Ok(target) = std::fs::read_link(e.path())
                && let Some(inode) = socket_inode(target.as_os_str().as_encoded_bytes())
            {
                inodes.push(inode);
            }
        }
        let ports = if inodes.is_empty() {
            Vec::new()
        } else {
            let ns = self.netns_of(pid);
            let mut found: Vec<(usize, u16)> = inodes
                .iter()
                .filter_map(|i| ns.by_inode.get(i).copied())
                .collect();
            found.sort_unstable();
            found.into_iter().map(|(_, port)| port).collect()
        };
        (opts.open_files.then_some(count), Some(ports))
    }

    /// The listening sockets of the network namespace `pid` is in, read once per scan.
    fn netns_of(&mut self, pid: i32) -> &NetnsSockets {
        self.set_path(pid, "ns/net");
        let ns = std::fs::read_link(&self.path)
            .ok()
            .and_then(|t| {
                let t = t.to_string_lossy();
                t.strip_prefix("net:[")?
                    .strip_suffix(']')?
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0);
        if !self.netns.contains_key(&ns) {
            let mut listening = Vec::new();
            for file in ["net/tcp", "net/tcp6"] {
                if self.read_pid(pid, file).is_ok()
                    && let Ok(text) = std::str::from_utf8(&self.buf)
                {
                    listening_sockets(text, &mut listening);
                }
            }
            let by_inode = listening
                .into_iter()
                .enumerate()
                .map(|(i, (inode, port))| (inode, (i, port)))
                .collect();
            self.netns.insert(ns, NetnsSockets { by_inode });
        }
        self.netns.entry(ns).or_default()
    }
}

/// A process that vanished or could not be read.
#[derive(Debug)]
struct Skip;

impl From<std::io::Error> for Skip {
    fn from(_: std::io::Error) -> Self {
        Skip
    }
}

/// CPU seconds per process at the previous scan, for `cpu_usage_top`.
#[derive(Debug, Default)]
pub struct CpuRecorder {
    last: HashMap<i32, (i64, i64, f64)>,
}

impl CpuRecorder {
    /// Datakit's `cpu_usage`: CPU percent since the process started.
    pub fn since_start(p: &ProcInfo, now_ms: i64) -> f64 {
        let secs = (now_ms - p.start_ms) as f64 / 1000.0;
        if secs <= 0.0 {
            return 0.0;
        }
        100.0 * ((p.user_secs + p.system_secs) / secs)
    }

    /// Datakit's `cpu_usage_top`: CPU percent since the previous scan; on the first scan
    /// of a process (or when its pid was reused) the percent since it started.
    pub fn top(&self, p: &ProcInfo, now_ms: i64) -> f64 {
        let Some((start_ms, at_ms, cpu)) = self.last.get(&p.pid) else {
            return Self::since_start(p, now_ms);
        };
        if *start_ms != p.start_ms {
            return Self::since_start(p, now_ms);
        }
        let dt = (now_ms - at_ms) as f64 / 1000.0;
        if dt == 0.0 {
            return 0.0;
        }
        let diff = p.user_secs + p.system_secs - cpu;
        if diff < -1e-10 {
            Self::since_start(p, now_ms)
        } else if diff <= 0.0 {
            0.0
        } else {
            100.0 * diff / dt
        }
    }

    /// Remembers this scan's processes (and forgets the others).
    pub fn flush(&mut self, procs: &[ProcInfo], now_ms: i64) {
        self.last.clear();
        for p in procs {
            self.last
                .insert(p.pid, (p.start_ms, now_ms, p.user_secs + p.system_secs));
        }
    }
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The fields both kinds share (Datakit's `Parse`), in Datakit's order.
fn common_fields(p: &ProcInfo, mem_total: u64, cpu: (f64, f64)) -> Vec<(String, Value)> {
    let mut f: Vec<(String, Value)> = Vec::with_capacity(24);
    let mut put = |k: &str, v: Value| f.push((k.to_string(), v));
    put("rss", Value::U(p.rss));
    put("vms", Value::U(p.vms));
    if mem_total > 0 {
        let pct = 100.0 * p.rss as f32 / mem_total as f32;
        put("mem_used_percent", Value::F(f64::from(pct)));
    }
    put("cpu_usage", Value::F(cpu.0));
    put("cpu_usage_top", Value::F(cpu.1));
    if let Some(t) = p.status.threads {
        put("threads", Value::I(t));
    }
    if let Some(io) = p.io {
        put("proc_syscr", Value::U(io.syscr));
        put("proc_syscw", Value::U(io.syscw));
        put("proc_read_bytes", Value::U(io.read_bytes));
        put("proc_write_bytes", Value::U(io.write_bytes));
    }
    if let (Some(v), Some(n)) = (p.status.voluntary, p.status.nonvoluntary) {
        put("voluntary_ctxt_switches", Value::I(v));
        put("nonvoluntary_ctxt_switches", Value::I(n));
    }
    put("page_minor_faults", Value::U(p.faults[0]));
    put("page_major_faults", Value::U(p.faults[1]));
    put("page_children_minor_faults", Value::U(p.faults[2]));
    put("page_children_major_faults", Value::U(p.faults[3]));
    if let Some(n) = p.open_files {
        put("open_files", Value::I(n));
    }
    f
}

fn json_of(v: &Value) -> serde_json::Value {
    match v {
        Value::I(i) => json!(i),
        Value::U(u) => json!(u),
        Value::F(f) => json!(f),
        Value::B(b) => json!(b),
        Value::S(s) => json!(s),
        Value::D(_) | Value::A(_) => serde_json::Value::Null,
    }
}

/// The tags and fields the object and the metric of one process share.
fn base_point(p: &ProcInfo, mem_total: u64, cpu: (f64, f64), ts: i64) -> Point {
    let mut pt = Point::new(NAME, ts);
    if let Some(c) = &p.container_id {
        pt.tags.push(("container_id".into(), c.clone()));
    }
    pt.tags.push(("process_name".into(), p.name.clone()));
    pt.tags.push(("username".into(), p.username.clone()));
    pt.fields = common_fields(p, mem_total, cpu);
    pt
}

/// The `host_processes` object of one process, with Datakit's tags, fields and `message`.
pub fn object_point(
    p: &ProcInfo,
    hostname: &str,
    tags: &[(String, String)],
    mem_total: u64,
    cpu: (f64, f64),
    now_ms: i64,
    ts: i64,
) -> Point {
    let mut pt = base_point(p, mem_total, cpu, ts);
    pt.set_tag("name", format!("{hostname}_{}", p.pid));
    if let Some(ports) = &p.listen_ports {
        // json.Marshal of Go's nil slice when no port listens.
        let s = if ports.is_empty() {
            "null".to_string()
        } else {
            serde_json::to_string(ports).unwrap_or_default()
        };
        pt.set_field("listen_ports", Value::S(s));
    }
    for (k, v) in tags {
        pt.add_tag_if_absent(k, v);
    }
    pt.add_tag_if_absent("host", hostname);
    pt.set_tag("state", state_name(p.state));
    pt.set_field("state_zombie", Value::B(p.state == b'Z'));
    pt.set_field("pid", Value::I(i64::from(p.pid)));
    pt.set_field("started_duration", Value::I((now_ms - p.start_ms) / 1000));
    pt.set_field("start_time", Value::I(p.start_ms));
    if let Some(cwd) = &p.cwd {
        pt.set_field("work_directory", Value::S(cwd.clone()));
    }
    let cmdline = if p.cmdline.is_empty() {
        format!("({})", p.name)
    } else {
        p.cmdline.clone()
    };
    pt.set_field("cmdline", Value::S(cmdline));

    let mut message = serde_json::Map::new();
    for (k, v) in &pt.tags {
        message.insert(k.clone(), json!(v));
    }
    for (k, v) in &pt.fields {
        message.insert(k.clone(), json_of(v));
    }
    message.insert(
        "memory".into(),
        json!({"rss": p.rss, "vms": p.vms, "hwm": 0, "data": 0, "stack": 0, "locked": 0, "swap": 0}),
    );
    message.insert(
        "cpu".into(),
        json!({"cpu": "cpu", "user": p.user_secs, "system": p.system_secs, "idle": 0.0,
               "nice": 0.0, "iowait": p.iowait_secs, "irq": 0.0, "softirq": 0.0,
               "steal": 0.0, "guest": 0.0, "guestNice": 0.0}),
    );
    pt.set_field(
        "message",
        Value::S(serde_json::Value::Object(message).to_string()),
    );
    pt
}

/// The `host_processes` metric of one process.
pub fn metric_point(
    p: &ProcInfo,
    hostname: &str,
    tags: &[(String, String)],
    mem_total: u64,
    cpu: (f64, f64),
    ts: i64,
) -> Point {
    let mut pt = base_point(p, mem_total, cpu, ts);
    pt.set_tag("pid", p.pid.to_string());
    pt.set_tag("cmdline", p.cmdline.clone());
    for (k, v) in tags {
        pt.add_tag_if_absent(k, v);
    }
    pt.add_tag_if_absent("host", hostname);
    pt
}

/// What both halves keep between collections: the config, the scanner's buffers and the CPU
/// times of the previous scan.
struct Scanning {
    cfg: ProcessesConfig,
    scanner: Scanner,
    recorder: CpuRecorder,
    hostname: String,
}

impl Scanning {
    fn new(cfg: ProcessesConfig, paths: HostPaths, hostname: String) -> Self {
        Scanning {
            cfg,
            scanner: Scanner::new(paths),
            recorder: CpuRecorder::default(),
            hostname,
        }
    }

    /// One scan with `opts`, each process made a point by `point(process, cpu, mem_total)`.
    fn collect(
        &mut self,
        opts: ScanOptions,
        now_ms: i64,
        point: impl Fn(&ProcInfo, &Self, (f64, f64), u64) -> Point,
    ) -> Result<Vec<Point>, CollectError> {
        let (procs, mem_total) = self.scanner.scan(&self.cfg, opts, now_ms)?;
        let points = procs
            .iter()
            .map(|p| {
                let cpu = (
                    CpuRecorder::since_start(p, now_ms),
                    self.recorder.top(p, now_ms),
                );
                point(p, self, cpu, mem_total)
            })
            .collect();
        self.recorder.flush(&procs, now_ms);
        Ok(points)
    }
}

/// The object half (`category = object`).
pub struct ObjectCollector(Scanning);

/// The metric half (`open_metric`).
pub struct MetricCollector(Scanning);

impl ObjectCollector {
    /// The object collector of `cfg`.
    pub fn new(cfg: ProcessesConfig, paths: HostPaths, hostname: String) -> Self {
        ObjectCollector(Scanning::new(cfg, paths, hostname))
    }

    /// One collection at `now_ms`, points at `ts`.
    ///
    /// # Errors
    /// See [`Scanner::scan`].
    pub fn collect_at(&mut self, now_ms: i64, ts: i64) -> Result<Vec<Point>, CollectError> {
        let opts = ScanOptions {
            for_metric: false,
            cwd: true,
            listen_ports: self.0.cfg.enable_listen_ports,
            open_files: true,
        };
        self.0.collect(opts, now_ms, |p, s, cpu, mem_total| {
            object_point(p, &s.hostname, &s.cfg.tags, mem_total, cpu, now_ms, ts)
        })
    }
}

impl MetricCollector {
    /// The metric collector of `cfg`.
    pub fn new(cfg: ProcessesConfig, paths: HostPaths, hostname: String) -> Self {
        MetricCollector(Scanning::new(cfg, paths, hostname))
    }

    /// One collection at `now_ms`, points at `ts`.
    ///
    /// # Errors
    /// See [`Scanner::scan`].
    pub fn collect_at(&mut self, now_ms: i64, ts: i64) -> Result<Vec<Point>, CollectError> {
        let opts = ScanOptions {
            for_metric: true,
            cwd: false,
            listen_ports: false,
            open_files: true,
        };
        self.0.collect(opts, now_ms, |p, s, cpu, mem_total| {
            metric_point(p, &s.hostname, &s.cfg.tags, mem_total, cpu, ts)
        })
    }
}

impl Collector for ObjectCollector {
    fn name(&self) -> &'static str {
        NAME
    }
    fn category(&self) -> Category {
        Category::Object
    }
    fn interval(&self) -> Duration {
        self.0.cfg.object_interval
    }
    fn may_block(&self) -> bool {
        true
    }
    fn bind(&mut self, hostname: &str) {
        self.0.hostname = hostname.to_string();
    }
    fn collect(&mut self, ts: i64) -> Result<Vec<Point>, CollectError> {
        self.collect_at(wall_ms(), ts)
    }
}

impl Collector for MetricCollector {
    fn name(&self) -> &'static str {
        NAME
    }
    fn interval(&self) -> Duration {
        self.0.cfg.metric_interval
    }
    fn may_block(&self) -> bool {
        true
    }
    fn bind(&mut self, hostname: &str) {
        self.0.hostname = hostname.to_string();
    }
    fn collect(&mut self, ts: i64) -> Result<Vec<Point>, CollectError> {
        self.collect_at(wall_ms(), ts)
    }
}

/// The `host_processes` input: the object loop and, with `open_metric`, the metric loop.
pub struct ProcessesInput {
    object: ObjectCollector,
    metric: Option<MetricCollector>,
    tags: Vec<(String, String)>,
}

impl ProcessesInput {
    /// The input of `cfg`.
    pub fn new(cfg: ProcessesConfig, paths: HostPaths, hostname: &str) -> Self {
        let metric = cfg
            .open_metric
            .then(|| MetricCollector::new(cfg.clone(), paths.clone(), hostname.to_string()));
        ProcessesInput {
            tags: cfg.tags.clone(),
            object: ObjectCollector::new(cfg, paths, hostname.to_string()),
            metric,
        }
    }
}

impl Input for ProcessesInput {
    fn name(&self) -> &str {
        NAME
    }

    fn run(self: Box<Self>, ctx: InputContext) -> BoxFuture<'static, ()> {
        let ProcessesInput {
            object,
            metric,
            tags,
        } = *self;
        Box::pin(async move {
            let objects = run_loop(object, tags.clone(), ctx.clone());
            match metric {
                Some(m) => {
                    futures::join!(objects, run_loop(m, tags, ctx));
                }
                None => objects.await,
            }
        })
    }
}

#[cfg(test)]
#[path = "process_tests.rs"]
mod tests;
