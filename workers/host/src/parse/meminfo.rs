//! `/proc/meminfo`: memory and swap sizes, with Datakit's derived `used` and `available`.

use super::{ParseError, u64_of};

const FILE: &str = "/proc/meminfo";

/// The `/proc/meminfo` values the host inputs use, in bytes (page counts for the
/// `HugePages_*` counters). Lines a kernel does not have are zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemInfo {
    /// `MemTotal`.
    pub total: u64,
    /// `MemFree`.
    pub free: u64,
    /// `MemAvailable`, or an estimate on kernels older than 3.14 (see [`parse_meminfo`]).
    pub available: u64,
    /// `Buffers`.
    pub buffers: u64,
    /// `Cached` plus `SReclaimable`, as gopsutil reports it.
    pub cached: u64,
    /// `Active`.
    pub active: u64,
    /// `Inactive`.
    pub inactive: u64,
    /// `Writeback`.
    pub writeback: u64,
    /// `WritebackTmp`.
    pub writeback_tmp: u64,
    /// `Dirty`.
    pub dirty: u64,
    /// `Shmem`.
    pub shared: u64,
    /// `Slab`.
    pub slab: u64,
    /// `SReclaimable`.
    pub sreclaimable: u64,
    /// `SUnreclaim`.
    pub sunreclaim: u64,
    /// `PageTables`.
    pub page_tables: u64,
    /// `SwapCached`.
    pub swap_cached: u64,
    /// `CommitLimit`.
    pub commit_limit: u64,
    /// `Committed_AS`.
    pub committed_as: u64,
    /// `HighTotal`.
    pub high_total: u64,
    /// `HighFree`.
    pub high_free: u64,
    /// `LowTotal`.
    pub low_total: u64,
    /// `LowFree`.
    pub low_free: u64,
    /// `SwapTotal`.
    pub swap_total: u64,
    /// `SwapFree`.
    pub swap_free: u64,
    /// `Mapped`.
    pub mapped: u64,
    /// `VmallocTotal`.
    pub vmalloc_total: u64,
    /// `VmallocUsed`.
    pub vmalloc_used: u64,
    /// `VmallocChunk`.
    pub vmalloc_chunk: u64,
    /// `HugePages_Total` (pages).
    pub huge_pages_total: u64,
    /// `HugePages_Free` (pages).
    pub huge_pages_free: u64,
    /// `Hugepagesize`.
    pub huge_page_size: u64,
    /// `total - free - buffers - cached`, floored at zero.
    pub used: u64,
}

impl MemInfo {
    /// `used / total` in percent (0 when the total is 0).
    pub fn used_percent(&self) -> f64 {
        percent(self.used, self.total)
    }

    /// `available / total` in percent (0 when the total is 0).
    pub fn available_percent(&self) -> f64 {
        percent(self.available, self.total)
    }

    /// Swap in use: `SwapTotal - SwapFree`, floored at zero.
    pub fn swap_used(&self) -> u64 {
        self.swap_total.saturating_sub(self.swap_free)
    }

    /// Swap used in percent of the swap total (0 without swap).
    pub fn swap_used_percent(&self) -> f64 {
        percent(self.swap_used(), self.swap_total)
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// Parses `/proc/meminfo`.
///
/// Unknown keys are ignored. `Cached` includes `SReclaimable` and, on kernels without
/// `MemAvailable`, `available` is `cached + free` (gopsutil's fallback without the
/// zoneinfo watermark refinement).
///
/// # Errors
/// [`ParseError::Missing`] without `MemTotal`; [`ParseError::BadNumber`] when a known
/// key's value is not a number.
pub fn parse_meminfo(text: &str) -> Result<MemInfo, ParseError> {
    let mut m = MemInfo::default();
    let mut have_total = false;
    let mut have_available = false;
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let key = key.trim();
        let rest = rest.trim();
        let (num, kb) = match rest.strip_suffix("kB") {
            Some(n) => (n.trim_end(), true),
            None => (rest, false),
        };
        let slot: &mut u64 = match key {
            "MemTotal" => {
                have_total = true;
                &mut m.total
            }
            "MemFree" => &mut m.free,
            "MemAvailable" => {
                have_available = true;
                &mut m.available
            }
            "Buffers" => &mut m.buffers,
            "Cached" => &mut m.cached,
            "Active" => &mut m.active,
            "Inactive" => &mut m.inactive,
            "Writeback" => &mut m.writeback,
            "WritebackTmp" => &mut m.writeback_tmp,
            "Dirty" => &mut m.dirty,
            "Shmem" => &mut m.shared,
            "Slab" => &mut m.slab,
            "SReclaimable" => &mut m.sreclaimable,
            "SUnreclaim" => &mut m.sunreclaim,
            "PageTables" => &mut m.page_tables,
            "SwapCached" => &mut m.swap_cached,
            "CommitLimit" => &mut m.commit_limit,
            "Committed_AS" => &mut m.committed_as,
            "HighTotal" => &mut m.high_total,
            "HighFree" => &mut m.high_free,
            "LowTotal" => &mut m.low_total,
            "LowFree" => &mut m.low_free,
            "SwapTotal" => &mut m.swap_total,
            "SwapFree" => &mut m.swap_free,
            "Mapped" => &mut m.mapped,
            "VmallocTotal" => &mut m.vmalloc_total,
            "VmallocUsed" => &mut m.vmalloc_used,
            "VmallocChunk" => &mut m.vmalloc_chunk,
            "HugePages_Total" => &mut m.huge_pages_total,
            "HugePages_Free" => &mut m.huge_pages_free,
            "Hugepagesize" => &mut m.huge_page_size,
            _ => continue,
        };
        let v = u64_of(FILE, key, num)?;
        *slot = if kb { v.saturating_mul(1024) } else { v };
    }
    if !have_total {
        return Err(ParseError::Missing {
            file: FILE,
            what: "MemTotal".to_string(),
        });
    }
    m.cached = m.cached.saturating_add(m.sreclaimable);
    if !have_available {
        m.available = m.cached.saturating_add(m.free);
    }
    m.used = m
        .total
        .saturating_sub(m.free)
        .saturating_sub(m.buffers)
        .saturating_sub(m.cached);
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../../testdata/proc_meminfo");

    #[test]
    fn parses_a_captured_file_into_bytes() {
        let m = parse_meminfo(FIXTURE).unwrap();
        assert_eq!(m.total, 24_684_084 * 1024);
        assert_eq!(m.available, 24_380_808 * 1024);
        assert_eq!(m.cached, (153_564 + 36_924) * 1024);
        assert_eq!(m.shared, 8_872 * 1024);
        assert_eq!(m.committed_as, 66_712 * 1024);
        assert_eq!(m.vmalloc_total, 34_359_738_367 * 1024);
        assert_eq!(m.huge_page_size, 2048 * 1024);
        assert_eq!(m.huge_pages_total, 0);
        assert_eq!(
            m.used,
            (24_684_084 - 24_411_484 - 2_088 - 153_564 - 36_924) * 1024
        );
        assert!((m.used_percent() - 100.0 * m.used as f64 / m.total as f64).abs() < 1e-12);
    }

    #[test]
    fn hugepage_counters_are_pages_not_kilobytes() {
        let m = parse_meminfo("MemTotal: 10 kB\nHugePages_Total: 4\nHugePages_Free: 3\n").unwrap();
        assert_eq!(m.huge_pages_total, 4);
        assert_eq!(m.huge_pages_free, 3);
    }

    #[test]
    fn old_kernels_without_memavailable_estimate_it_from_cache_and_free() {
        let m = parse_meminfo("MemTotal: 100 kB\nMemFree: 10 kB\nCached: 20 kB\n").unwrap();
        assert_eq!(m.available, 30 * 1024);
    }

    #[test]
    fn used_never_underflows() {
        let m = parse_meminfo("MemTotal: 10 kB\nMemFree: 20 kB\n").unwrap();
        assert_eq!(m.used, 0);
    }

    #[test]
    fn missing_memtotal_is_an_error() {
        let e = parse_meminfo("MemFree: 20 kB\n").unwrap_err();
        assert!(matches!(e, ParseError::Missing { .. }));
    }

    #[test]
    fn a_bad_value_names_its_key_and_unknown_keys_are_ignored() {
        let e = parse_meminfo("MemTotal: 1 kB\nDirty: lots kB\n").unwrap_err();
        assert_eq!(
            e,
            ParseError::BadNumber {
                file: FILE,
                key: "Dirty".into(),
                value: "lots".into()
            }
        );
        assert!(parse_meminfo("MemTotal: 1 kB\nNewThing: ?? kB\nnot a line\n").is_ok());
    }

    #[test]
    fn swap_usage_is_total_minus_free() {
        let m = parse_meminfo("MemTotal: 1 kB\nSwapTotal: 100 kB\nSwapFree: 25 kB\n").unwrap();
        assert_eq!(m.swap_used(), 75 * 1024);
        assert!((m.swap_used_percent() - 75.0).abs() < 1e-12);
        let none = parse_meminfo("MemTotal: 1 kB\n").unwrap();
        assert_eq!(none.swap_used_percent(), 0.0);
    }
}
