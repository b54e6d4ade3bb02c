//! `diskio`: per-device I/O counters from `/proc/diskstats`, with byte rates from the
//! previous sample and udev-based names, tags and serial numbers.

use std::collections::HashMap;
use std::time::Duration;

use dk_proto::{Point, Value};

use crate::config::DiskioConfig;
use crate::inputs::{rate, secs_between};
use crate::parse::diskstats::{DiskStat, parse_diskstats};
use crate::parse::udev::{UdevInfo, render_name_template};
use crate::runner::Collector;
use crate::sys::{CollectError, HostPaths, Reader};

/// The `diskio` input.
pub struct Diskio {
    cfg: DiskioConfig,
    reader: Reader,
    last: HashMap<String, (u64, u64)>,
    last_ts: Option<i64>,
}

impl Diskio {
    /// A `diskio` input reading from `paths`.
    pub fn new(cfg: DiskioConfig, paths: HostPaths) -> Self {
        Diskio {
            cfg,
            reader: Reader::new(paths),
            last: HashMap::new(),
            last_ts: None,
        }
    }

    fn needs_udev(&self) -> bool {
        !self.cfg.devices.is_empty()
            || !self.cfg.device_tags.is_empty()
            || !self.cfg.name_templates.is_empty()
            || !self.cfg.skip_serial_number
    }
}

/// Builds the `diskio` point of one device; `udev` is its udev entry when known,
/// `prev` its `(read_bytes, write_bytes)` `secs` seconds ago.
pub fn diskio_point(
    cfg: &DiskioConfig,
    s: &DiskStat,
    udev: Option<&UdevInfo>,
    prev: Option<(u64, u64)>,
    secs: f64,
    ts: i64,
) -> Point {
    let device = format!("/dev/{}", s.name);
    let name = udev
        .and_then(|u| {
            cfg.name_templates
                .iter()
                .find_map(|t| render_name_template(t, u, &device))
        })
        .unwrap_or_else(|| device.clone());
    let mut p = Point::new("diskio", ts).tag("name", name);
    if let Some(u) = udev {
        for key in &cfg.device_tags {
            if let Some(v) = u.get(key) {
                p.set_tag(key.as_str(), v);
            }
        }
    }
    if !cfg.skip_serial_number {
        let serial = udev
            .and_then(|u| u.get("ID_SERIAL"))
            .filter(|s| !s.is_empty())
            .unwrap_or("unknown");
        p.set_tag("serial", serial);
    }
    let u = Value::U;
    p = p
        .field("reads", u(s.reads))
        .field("writes", u(s.writes))
        .field("read_bytes", u(s.read_bytes))
        .field("write_bytes", u(s.write_bytes))
        .field("read_time", u(s.read_time))
        .field("write_time", u(s.write_time))
        .field("io_time", u(s.io_time))
        .field("weighted_io_time", u(s.weighted_io_time))
        .field("iops_in_progress", u(s.iops_in_progress))
        .field("merged_reads", u(s.merged_reads))
        .field("merged_writes", u(s.merged_writes));
    if let Some((read, write)) = prev {
        if let Some(r) = rate(s.read_bytes, read, secs) {
            p.set_field("read_bytes/sec", Value::I(r));
        }
        if let Some(w) = rate(s.write_bytes, write, secs) {
            p.set_field("write_bytes/sec", Value::I(w));
        }
    }
    p
}

/// Whether a device passes the `devices` filter (its name or one of its udev links).
fn selected(cfg: &DiskioConfig, s: &DiskStat, udev: Option<&UdevInfo>) -> bool {
    if cfg.devices.is_empty() || cfg.devices.iter().any(|r| r.is_match(&s.name)) {
        return true;
    }
    udev.is_some_and(|u| {
        u.devlinks
            .iter()
            .any(|l| cfg.devices.iter().any(|r| r.is_match(l)))
    })
}

impl Collector for Diskio {
    fn name(&self) -> &'static str {
        "diskio"
    }

    fn interval(&self) -> Duration {
        self.cfg.interval
    }

    fn collect(&mut self, ts: i64) -> Result<Vec<Point>, CollectError> {
        let stats = parse_diskstats(self.reader.proc("diskstats")?)?;
        let secs = self.last_ts.map(|t| secs_between(t, ts)).unwrap_or(0.0);
        let with_udev = self.needs_udev();
        let mut points = Vec::with_capacity(stats.len());
        for s in &stats {
            let udev = if with_udev {
                self.reader.udev_data(s.major, s.minor)
            } else {
                None
            };
            if !selected(&self.cfg, s, udev.as_ref()) {
                continue;
            }
            let prev = self.last.get(&s.name).copied();
            points.push(diskio_point(&self.cfg, s, udev.as_ref(), prev, secs, ts));
        }
        self.last.clear();
        self.last.extend(
            stats
                .into_iter()
                .map(|s| (s.name, (s.read_bytes, s.write_bytes))),
        );
        self.last_ts = Some(ts);
        Ok(points)
    }
}
