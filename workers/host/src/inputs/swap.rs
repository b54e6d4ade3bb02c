//! `swap`: swap size from `/proc/meminfo` and swap traffic from `/proc/vmstat`.

use std::time::Duration;

use dk_proto::{Point, Value};

use crate::config::BasicConfig;
use crate::parse::meminfo::parse_meminfo;
use crate::parse::util::parse_vmstat_swap;
use crate::runner::Collector;
use crate::sys::{CollectError, HostPaths, Reader};

/// Bytes per swapped page as gopsutil (and so Datakit) counts them: 4 KiB, whatever the
/// real page size.
const SWAP_PAGE: u64 = 4 * 1024;

/// The `swap` input.
pub struct Swap {
    cfg: BasicConfig,
    reader: Reader,
}

impl Swap {
    /// A `swap` input reading from `paths`.
    pub fn new(cfg: BasicConfig, paths: HostPaths) -> Self {
        Swap {
            cfg,
            reader: Reader::new(paths),
        }
    }
}

impl Collector for Swap {
    fn name(&self) -> &'static str {
        "swap"
    }

    fn interval(&self) -> Duration {
        self.cfg.interval
    }

    fn collect(&mut self, ts: i64) -> Result<Vec<Point>, CollectError> {
        let m = parse_meminfo(self.reader.proc("meminfo")?)?;
        // gopsutil ignores a missing /proc/vmstat: swap traffic is then 0.
        let (sin, sout) = match self.reader.proc("vmstat") {
            Ok(text) => parse_vmstat_swap(text)?,
            Err(_) => (0, 0),
        };
        Ok(vec![
            Point::new("swap", ts)
                .field("total", Value::U(m.swap_total))
                .field("used", Value::U(m.swap_used()))
                .field("free", Value::U(m.swap_free))
                .field("used_percent", Value::F(m.swap_used_percent()))
                .field("in", Value::U(sin.saturating_mul(SWAP_PAGE)))
                .field("out", Value::U(sout.saturating_mul(SWAP_PAGE))),
        ])
    }
}
