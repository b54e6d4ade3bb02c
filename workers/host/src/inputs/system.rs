//! `system`: load, CPU count, users, uptime and overall CPU/memory use, plus the
//! `conntrack` and `filefd` measurements.

use std::fs;
use std::time::Duration;

use dk_proto::{Point, Value};

use crate::config::BasicConfig;
use crate::parse::conntrack::{
    ConntrackStat, maximum_mega, parse_conntrack_stat, parse_file_nr, parse_single_int,
};
use crate::parse::meminfo::parse_meminfo;
use crate::parse::stat::{CpuTimes, busy_percent, parse_stat};
use crate::parse::util::{parse_loadavg, parse_uptime};
use crate::parse::utmp::{count_utmp_users, is_live_user_session};
use crate::runner::Collector;
use crate::sys::{CollectError, HostPaths, Reader};

/// The `system` input.
pub struct System {
    cfg: BasicConfig,
    reader: Reader,
    last_cpu: Option<CpuTimes>,
}

impl System {
    /// A `system` input reading from `paths`.
    pub fn new(cfg: BasicConfig, paths: HostPaths) -> Self {
        System {
            cfg,
            reader: Reader::new(paths),
            last_cpu: None,
        }
    }
}

/// Conntrack counters as Datakit reports them: `entries`/`entries_limit` are -1 when
/// the netfilter files are absent, the statistics 0.
pub(crate) fn conntrack(reader: &mut Reader) -> (i64, i64, ConntrackStat) {
    let mut int = |rel: &str| {
        let p = reader.paths.proc(rel);
        reader
            .read(&p)
            .ok()
            .and_then(|t| parse_single_int("nf_conntrack", t).ok())
            .unwrap_or(-1)
    };
    let count = int("sys/net/netfilter/nf_conntrack_count");
    let max = int("sys/net/netfilter/nf_conntrack_max");
    let stat = reader
        .proc("net/stat/nf_conntrack")
        .ok()
        .and_then(|t| parse_conntrack_stat(t).ok())
        .unwrap_or_default();
    (count, max, stat)
}

/// The `conntrack` point.
pub(crate) fn conntrack_point(count: i64, max: i64, s: &ConntrackStat, ts: i64) -> Point {
    let i = |v: u64| Value::I(i64::try_from(v).unwrap_or(i64::MAX));
    Point::new("conntrack", ts)
        .field("entries", Value::I(count))
        .field("entries_limit", Value::I(max))
        .field("stat_found", i(s.found))
        .field("stat_invalid", i(s.invalid))
        .field("stat_ignore", i(s.ignore))
        .field("stat_insert", i(s.insert))
        .field("stat_insert_failed", i(s.insert_failed))
        .field("stat_drop", i(s.drop))
        .field("stat_early_drop", i(s.early_drop))
        .field("stat_search_restart", i(s.search_restart))
}

/// Logged-in users: utmp `USER_PROCESS` records; on hosts without a utmp file, live
/// systemd-logind user sessions; `None` when neither exists.
fn n_users(reader: &mut Reader) -> Option<i64> {
    for p in [reader.paths.var("run/utmp"), reader.paths.run("utmp")] {
        if let Ok(bytes) = fs::read(&p) {
            return Some(count_utmp_users(&bytes) as i64);
        }
    }
    let dir = reader.paths.run("systemd/sessions");
    let entries = fs::read_dir(&dir).ok()?;
    let files: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_none())
        .collect();
    let mut n = 0;
    for f in files {
        if reader.read(&f).map(is_live_user_session).unwrap_or(false) {
            n += 1;
        }
    }
    Some(n)
}

fn process_count(reader: &Reader) -> Option<i64> {
    let entries = fs::read_dir(reader.paths.proc("")).ok()?;
    let n = entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        })
        .count();
    Some(n as i64)
}

impl Collector for System {
    fn name(&self) -> &'static str {
        "system"
    }

    fn interval(&self) -> Duration {
        self.cfg.interval
    }

    fn collect(&mut self, ts: i64) -> Result<Vec<Point>, CollectError> {
        let r = &mut self.reader;
        let (load1, load5, load15) = parse_loadavg(r.proc("loadavg")?)?;
        let stat = parse_stat(r.proc("stat")?)?;
        let mut points = Vec::with_capacity(3);

        let (count, max, cstat) = conntrack(r);
        points.push(conntrack_point(count, max, &cstat, ts));

        match r.proc("sys/fs/file-nr").map(parse_file_nr) {
            Ok(Ok((allocated, maximum))) => points.push(
                Point::new("filefd", ts)
                    .field("allocated", Value::I(allocated))
                    .field("maximum_mega", Value::F(maximum_mega(maximum))),
            ),
            Ok(Err(e)) => tracing::warn!("filefd: {e}; skipped"),
            Err(e) => tracing::warn!("filefd: {e}; skipped"),
        }

        let mut p = Point::new("system", ts);
        // The first sample compares with boot (all counters zero): usage since boot.
        let prev = self.last_cpu.unwrap_or_default();
        p.set_field(
            "cpu_total_usage",
            Value::F(busy_percent(&stat.total, &prev)),
        );
        self.last_cpu = Some(stat.total);
        match r.proc("meminfo").map(parse_meminfo) {
            Ok(Ok(m)) => p.set_field("memory_usage", Value::F(m.used_percent())),
            Ok(Err(e)) => tracing::warn!("memory_usage: {e}; skipped"),
            Err(e) => tracing::warn!("memory_usage: {e}; skipped"),
        }
        if let Some(n) = process_count(r) {
            p.set_field("process_count", Value::I(n));
        }
        let n_cpus = stat.per_cpu.len().max(1);
        let per_core = |l: f64| Value::F(l / n_cpus as f64);
        p.set_field("load1_per_core", per_core(load1));
        p.set_field("load1", Value::F(load1));
        p.set_field("load15_per_core", per_core(load15));
        p.set_field("load15", Value::F(load15));
        p.set_field("load5_per_core", per_core(load5));
        p.set_field("load5", Value::F(load5));
        p.set_field("n_cpus", Value::I(n_cpus as i64));
        if let Some(n) = n_users(r) {
            p.set_field("n_users", Value::I(n));
        }
        match r.proc("uptime").map(parse_uptime) {
            Ok(Ok(up)) => p.set_field("uptime", Value::U(up)),
            Ok(Err(e)) => tracing::warn!("uptime: {e}; skipped"),
            Err(e) => tracing::warn!("uptime: {e}; skipped"),
        }
        points.push(p);
        Ok(points)
    }
}
