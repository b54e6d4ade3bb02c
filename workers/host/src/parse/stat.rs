//! `/proc/stat`: CPU time counters (total and per CPU) and the boot time.

use super::{ParseError, u64_of};

const FILE: &str = "/proc/stat";

/// CPU time counters of one `cpu` line, in clock ticks (`USER_HZ`).
///
/// Columns a kernel does not report (old kernels lack `steal`, `guest`, `guest_nice`)
/// are zero. As on Linux, `user` includes `guest` and `nice` includes `guest_nice`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Time in user mode (including guest).
    pub user: u64,
    /// Time in user mode with low priority (including guest_nice).
    pub nice: u64,
    /// Time in system mode.
    pub system: u64,
    /// Idle time.
    pub idle: u64,
    /// Waiting for I/O.
    pub iowait: u64,
    /// Servicing interrupts.
    pub irq: u64,
    /// Servicing softirqs.
    pub softirq: u64,
    /// Stolen by the hypervisor.
    pub steal: u64,
    /// Running a guest.
    pub guest: u64,
    /// Running a niced guest.
    pub guest_nice: u64,
}

impl CpuTimes {
    /// All time except guest time (which `user`/`nice` already include), as Datakit's
    /// `TimesStat.Total()`.
    pub fn total(&self) -> f64 {
        (self.user
            + self.system
            + self.nice
            + self.iowait
            + self.irq
            + self.softirq
            + self.steal
            + self.idle) as f64
    }
}

/// What `/proc/stat` says about CPUs and boot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcStat {
    /// The aggregate `cpu` line.
    pub total: CpuTimes,
    /// One entry per `cpuN` line, in file order: `(N, times)`.
    pub per_cpu: Vec<(u32, CpuTimes)>,
    /// `btime`: boot time in seconds since the epoch, when present.
    pub boot_time: Option<u64>,
}

/// Parses `/proc/stat`.
///
/// # Errors
/// [`ParseError::Missing`] without an aggregate `cpu` line; [`ParseError::BadLine`] for a
/// `cpu` line with fewer than four counters; [`ParseError::BadNumber`] for a counter that
/// is not a number.
pub fn parse_stat(text: &str) -> Result<ProcStat, ParseError> {
    let mut out = ProcStat::default();
    let mut seen_total = false;
    for (idx, line) in text.lines().enumerate() {
        let mut cols = line.split_ascii_whitespace();
        let Some(key) = cols.next() else { continue };
        if key == "btime" {
            if let Some(v) = cols.next() {
                out.boot_time = Some(u64_of(FILE, "btime", v)?);
            }
            continue;
        }
        let Some(suffix) = key.strip_prefix("cpu") else {
            continue;
        };
        let times = parse_cpu_columns(idx + 1, key, cols)?;
        if suffix.is_empty() {
            out.total = times;
            seen_total = true;
        } else if let Ok(n) = suffix.parse::<u32>() {
            out.per_cpu.push((n, times));
        }
    }
    if !seen_total {
        return Err(ParseError::Missing {
            file: FILE,
            what: "the aggregate \"cpu\" line".to_string(),
        });
    }
    Ok(out)
}

fn parse_cpu_columns<'a>(
    line: usize,
    key: &str,
    cols: impl Iterator<Item = &'a str>,
) -> Result<CpuTimes, ParseError> {
    let mut v = [0u64; 10];
    let mut n = 0;
    for (slot, text) in v.iter_mut().zip(cols) {
        *slot = u64_of(FILE, key, text)?;
        n += 1;
    }
    if n < 4 {
        return Err(ParseError::BadLine {
            file: FILE,
            line,
            reason: format!("{key} has {n} counters, expected at least 4"),
        });
    }
    Ok(CpuTimes {
        user: v[0],
        nice: v[1],
        system: v[2],
        idle: v[3],
        iowait: v[4],
        irq: v[5],
        softirq: v[6],
        steal: v[7],
        guest: v[8],
        guest_nice: v[9],
    })
}

/// CPU usage percentages between two samples, as Datakit's `cpu` input reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuUsage {
    /// `usage_user` (user minus guest).
    pub user: f64,
    /// `usage_system`.
    pub system: f64,
    /// `usage_idle`.
    pub idle: f64,
    /// `usage_nice` (nice minus guest_nice).
    pub nice: f64,
    /// `usage_iowait`.
    pub iowait: f64,
    /// `usage_irq`.
    pub irq: f64,
    /// `usage_softirq`.
    pub softirq: f64,
    /// `usage_steal`.
    pub steal: f64,
    /// `usage_guest`.
    pub guest: f64,
    /// `usage_guest_nice`.
    pub guest_nice: f64,
    /// `usage_total`: everything but idle.
    pub total: f64,
}

/// The outcome of comparing two CPU samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UsageDelta {
    /// Percentages over the interval.
    Usage(CpuUsage),
    /// No time passed for this CPU (skip it).
    NoTime,
    /// The counters went backwards (CPU hot-plug, counter reset): skip the sample.
    Backwards,
}

/// Percent of `total` spent between `prev` and `cur`; values outside 0..=100 are
/// reported as 0, as Datakit does.
fn pct(cur: f64, prev: f64, total: f64) -> f64 {
    let v = 100.0 * (cur - prev) / total;
    if (0.0..=100.0).contains(&v) { v } else { 0.0 }
}

/// CPU usage between two samples of the same CPU.
pub fn cpu_usage(cur: &CpuTimes, prev: &CpuTimes) -> UsageDelta {
    let delta = cur.total() - prev.total();
    if delta < 0.0 {
        return UsageDelta::Backwards;
    }
    if delta == 0.0 {
        return UsageDelta::NoTime;
    }
    let f = |x: u64| x as f64;
    let mut u = CpuUsage {
        user: pct(
            f(cur.user) - f(cur.guest),
            f(prev.user) - f(prev.guest),
            delta,
        ),
        system: pct(f(cur.system), f(prev.system), delta),
        idle: pct(f(cur.idle), f(prev.idle), delta),
        nice: pct(
            f(cur.nice) - f(cur.guest_nice),
            f(prev.nice) - f(prev.guest_nice),
            delta,
        ),
        iowait: pct(f(cur.iowait), f(prev.iowait), delta),
        irq: pct(f(cur.irq), f(prev.irq), delta),
        softirq: pct(f(cur.softirq), f(prev.softirq), delta),
        steal: pct(f(cur.steal), f(prev.steal), delta),
        guest: pct(f(cur.guest), f(prev.guest), delta),
        guest_nice: pct(f(cur.guest_nice), f(prev.guest_nice), delta),
        total: 0.0,
    };
    let total = u.user
        + u.system
        + u.nice
        + u.iowait
        + u.irq
        + u.softirq
        + u.steal
        + u.guest
        + u.guest_nice;
    u.total = if (0.0..=100.0).contains(&total) {
        total
    } else {
        0.0
    };
    UsageDelta::Usage(u)
}

/// Busy percent between two samples, as the `system` input's `cpu_total_usage` and the
/// host object's `cpu_usage` (gopsutil's `cpu.Percent` semantics: busy excludes idle
/// and guest; no busy time gives 0, busy time without total time gives 100).
pub fn busy_percent(cur: &CpuTimes, prev: &CpuTimes) -> f64 {
    let all_busy = |t: &CpuTimes| {
        let busy = (t.user + t.system + t.nice + t.iowait + t.irq + t.softirq + t.steal) as f64;
        (busy + t.idle as f64, busy)
    };
    let (all1, busy1) = all_busy(prev);
    let (all2, busy2) = all_busy(cur);
    if busy2 <= busy1 {
        return 0.0;
    }
    if all2 <= all1 {
        return 100.0;
    }
    ((busy2 - busy1) / (all2 - all1) * 100.0).clamp(0.0, 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../../testdata/proc_stat");

    #[test]
    fn parses_total_per_cpu_and_boot_time_from_a_captured_file() {
        let s = parse_stat(FIXTURE).unwrap();
        assert_eq!(s.total.user, 10422);
        assert_eq!(s.total.system, 4542);
        assert_eq!(s.total.idle, 83471);
        assert_eq!(s.total.steal, 657);
        assert_eq!(s.per_cpu.len(), 2);
        assert_eq!(s.per_cpu[1].0, 1);
        assert_eq!(s.per_cpu[1].1.user, 5439);
        assert_eq!(s.boot_time, Some(1_795_304_018));
    }

    #[test]
    fn old_kernels_with_four_counters_leave_the_rest_zero() {
        let s = parse_stat("cpu 1 2 3 4\ncpu0 1 2 3 4\n").unwrap();
        assert_eq!(s.total.idle, 4);
        assert_eq!(s.total.steal, 0);
        assert_eq!(s.total.guest_nice, 0);
        assert_eq!(s.boot_time, None);
    }

    #[test]
    fn extra_columns_from_future_kernels_are_ignored() {
        let s = parse_stat("cpu 1 2 3 4 5 6 7 8 9 10 11 12\n").unwrap();
        assert_eq!(s.total.guest_nice, 10);
    }

    #[test]
    fn a_missing_cpu_line_is_an_error() {
        let e = parse_stat("intr 1 2\nbtime 5\n").unwrap_err();
        assert!(matches!(e, ParseError::Missing { .. }), "{e}");
    }

    #[test]
    fn a_short_cpu_line_is_an_error() {
        let e = parse_stat("cpu 1 2\n").unwrap_err();
        assert!(matches!(e, ParseError::BadLine { line: 1, .. }), "{e}");
    }

    #[test]
    fn a_non_numeric_counter_names_the_cpu() {
        let e = parse_stat("cpu 1 2 x 4\n").unwrap_err();
        assert_eq!(
            e,
            ParseError::BadNumber {
                file: FILE,
                key: "cpu".into(),
                value: "x".into()
            }
        );
    }

    #[test]
    fn usage_is_the_share_of_each_counter_in_the_delta() {
        let prev = CpuTimes {
            user: 100,
            system: 50,
            idle: 800,
            ..Default::default()
        };
        let cur = CpuTimes {
            user: 130,
            system: 60,
            idle: 860,
            ..Default::default()
        };
        let UsageDelta::Usage(u) = cpu_usage(&cur, &prev) else {
            panic!("expected usage");
        };
        assert!((u.user - 30.0).abs() < 1e-9);
        assert!((u.system - 10.0).abs() < 1e-9);
        assert!((u.idle - 60.0).abs() < 1e-9);
        assert!((u.total - 40.0).abs() < 1e-9);
    }

    #[test]
    fn guest_time_is_taken_out_of_user_and_counted_once_in_total() {
        let prev = CpuTimes::default();
        let cur = CpuTimes {
            user: 50,
            guest: 20,
            idle: 50,
            ..Default::default()
        };
        let UsageDelta::Usage(u) = cpu_usage(&cur, &prev) else {
            panic!("expected usage");
        };
        assert!((u.user - 30.0).abs() < 1e-9);
        assert!((u.guest - 20.0).abs() < 1e-9);
        assert!((u.total - 50.0).abs() < 1e-9);
    }

    #[test]
    fn counters_going_backwards_are_not_a_negative_usage() {
        let prev = CpuTimes {
            user: 100,
            idle: 100,
            ..Default::default()
        };
        let cur = CpuTimes {
            user: 10,
            idle: 10,
            ..Default::default()
        };
        assert_eq!(cpu_usage(&cur, &prev), UsageDelta::Backwards);
        assert_eq!(cpu_usage(&prev, &prev), UsageDelta::NoTime);
    }

    #[test]
    fn busy_percent_follows_gopsutil_edge_rules() {
        let prev = CpuTimes {
            user: 10,
            idle: 10,
            ..Default::default()
        };
        let busier = CpuTimes {
            user: 20,
            idle: 20,
            ..Default::default()
        };
        assert!((busy_percent(&busier, &prev) - 50.0).abs() < 1e-9);
        assert_eq!(busy_percent(&prev, &prev), 0.0);
    }
}
