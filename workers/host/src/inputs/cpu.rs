//! `cpu`: usage percentages from `/proc/stat` deltas, optional core temperature and
//! `load5s`.
//!
//! As in Datakit, the first collection only records counters; points start with the
//! second one.

use std::time::Duration;

use dk_proto::{Point, Value};

use crate::config::CpuConfig;
use crate::parse::cpuinfo::core_temperature;
use crate::parse::stat::{CpuTimes, ProcStat, UsageDelta, cpu_usage, parse_stat};
use crate::parse::util::{load5s, parse_loadavg};
use crate::runner::Collector;
use crate::sys::{CollectError, HostPaths, Reader};

/// The `cpu` input.
pub struct Cpu {
    cfg: CpuConfig,
    reader: Reader,
    last: Option<ProcStat>,
    temperature: bool,
    load5s: i64,
    last_load1: f64,
}

impl Cpu {
    /// A `cpu` input reading from `paths`.
    pub fn new(cfg: CpuConfig, paths: HostPaths) -> Self {
        let temperature = cfg.enable_temperature;
        Cpu {
            cfg,
            reader: Reader::new(paths),
            last: None,
            temperature,
            load5s: 0,
            last_load1: 0.0,
        }
    }

    fn temperature(&mut self) -> Option<f64> {
        if !self.temperature {
            return None;
        }
        let t = core_temperature(&self.reader.hwmon_readings());
        if t.is_none() {
            // Datakit stops trying after the first failure.
            tracing::info!("no coretemp sensors: core_temperature is not collected");
            self.temperature = false;
        }
        t
    }
}

fn find(stat: &ProcStat, name: &str) -> Option<CpuTimes> {
    if name == "cpu-total" {
        return Some(stat.total);
    }
    let n: u32 = name.strip_prefix("cpu")?.parse().ok()?;
    stat.per_cpu.iter().find(|(i, _)| *i == n).map(|(_, t)| *t)
}

impl Collector for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn interval(&self) -> Duration {
        self.cfg.interval
    }

    fn collect(&mut self, ts: i64) -> Result<Vec<Point>, CollectError> {
        let stat = parse_stat(self.reader.proc("stat")?)?;
        let temp = self.temperature();
        let mut points = Vec::new();
        if let Some(prev) = &self.last {
            let mut names: Vec<(String, CpuTimes)> = Vec::new();
            if self.cfg.percpu {
                names.extend(stat.per_cpu.iter().map(|(n, t)| (format!("cpu{n}"), *t)));
            }
            names.push(("cpu-total".to_string(), stat.total));
            for (name, cur) in names {
                let Some(before) = find(prev, &name) else {
                    continue;
                };
                let u = match cpu_usage(&cur, &before) {
                    UsageDelta::Usage(u) => u,
                    UsageDelta::NoTime => continue,
                    UsageDelta::Backwards => {
                        tracing::warn!("cpu counters went backwards; skipping this sample");
                        break;
                    }
                };
                let mut p = Point::new("cpu", ts)
                    .field("usage_user", Value::F(u.user))
                    .field("usage_system", Value::F(u.system))
                    .field("usage_idle", Value::F(u.idle))
                    .field("usage_nice", Value::F(u.nice))
                    .field("usage_iowait", Value::F(u.iowait))
                    .field("usage_irq", Value::F(u.irq))
                    .field("usage_softirq", Value::F(u.softirq))
                    .field("usage_steal", Value::F(u.steal))
                    .field("usage_guest", Value::F(u.guest))
                    .field("usage_guest_nice", Value::F(u.guest_nice))
                    .field("usage_total", Value::F(u.total));
                if self.cfg.enable_load5s {
                    p.set_field("load5s", Value::I(self.load5s));
                }
                if name == "cpu-total"
                    && let Some(t) = temp
                {
                    p.set_field("core_temperature", Value::F(t));
                }
                p.set_tag("cpu", name);
                points.push(p);
            }
        }
        self.last = Some(stat);
        Ok(points)
    }

    fn side_interval(&self) -> Option<Duration> {
        self.cfg.enable_load5s.then_some(Duration::from_secs(5))
    }

    fn side_tick(&mut self) {
        let load = self.reader.proc("loadavg").ok().map(parse_loadavg);
        match load {
            Some(Ok((load1, _, _))) => {
                self.load5s = load5s(load1, self.last_load1);
                self.last_load1 = load1;
            }
            _ => self.last_load1 = 0.0,
        }
    }
}
