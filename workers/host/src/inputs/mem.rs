//! `mem`: `/proc/meminfo` as Datakit's Linux `mem` measurement.

use std::time::Duration;

use dk_proto::{Point, Value};

use crate::config::BasicConfig;
use crate::parse::meminfo::{MemInfo, parse_meminfo};
use crate::runner::Collector;
use crate::sys::{CollectError, HostPaths, Reader};

/// The `mem` input.
pub struct Mem {
    cfg: BasicConfig,
    reader: Reader,
}

impl Mem {
    /// A `mem` input reading from `paths`.
    pub fn new(cfg: BasicConfig, paths: HostPaths) -> Self {
        Mem {
            cfg,
            reader: Reader::new(paths),
        }
    }
}

/// The `mem` point of one sample (byte counts are unsigned, as Datakit sends them).
pub fn mem_point(m: &MemInfo, ts: i64) -> Point {
    let u = Value::U;
    Point::new("mem", ts)
        .field("total", u(m.total))
        .field("available", u(m.available))
        .field("used", u(m.used))
        .field("used_percent", Value::F(m.used_percent()))
        .field("available_percent", Value::F(m.available_percent()))
        .field("active", u(m.active))
        .field("buffered", u(m.buffers))
        .field("cached", u(m.cached))
        .field("commit_limit", u(m.commit_limit))
        .field("committed_as", u(m.committed_as))
        .field("dirty", u(m.dirty))
        .field("free", u(m.free))
        .field("high_free", u(m.high_free))
        .field("high_total", u(m.high_total))
        .field("huge_pages_free", u(m.huge_pages_free))
        .field("huge_pages_size", u(m.huge_page_size))
        .field("huge_pages_total", u(m.huge_pages_total))
        .field("inactive", u(m.inactive))
        .field("low_free", u(m.low_free))
        .field("low_total", u(m.low_total))
        .field("mapped", u(m.mapped))
        .field("page_tables", u(m.page_tables))
        .field("shared", u(m.shared))
        .field("slab", u(m.slab))
        .field("sreclaimable", u(m.sreclaimable))
        .field("sunreclaim", u(m.sunreclaim))
        .field("swap_cached", u(m.swap_cached))
        .field("swap_free", u(m.swap_free))
        .field("swap_total", u(m.swap_total))
        .field("vmalloc_chunk", u(m.vmalloc_chunk))
        .field("vmalloc_total", u(m.vmalloc_total))
        .field("vmalloc_used", u(m.vmalloc_used))
        .field("write_back_tmp", u(m.writeback_tmp))
        .field("write_back", u(m.writeback))
}

impl Collector for Mem {
    fn name(&self) -> &'static str {
        "mem"
    }

    fn interval(&self) -> Duration {
        self.cfg.interval
    }

    fn collect(&mut self, ts: i64) -> Result<Vec<Point>, CollectError> {
        let m = parse_meminfo(self.reader.proc("meminfo")?)?;
        Ok(vec![mem_point(&m, ts)])
    }
}
