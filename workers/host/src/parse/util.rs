//! Small one-line files: `/proc/loadavg`, `/proc/uptime`, `/proc/vmstat`, sysfs flags and
//! CPU lists, plus Datakit's `load5s` estimate.

use super::{ParseError, f64_of, u64_of};

/// `/proc/loadavg`: the 1, 5 and 15 minute load averages.
///
/// # Errors
/// [`ParseError::BadLine`] with fewer than three values; [`ParseError::BadNumber`] for
/// values that are not numbers.
pub fn parse_loadavg(text: &str) -> Result<(f64, f64, f64), ParseError> {
    const F: &str = "/proc/loadavg";
    let v: Vec<&str> = text.split_ascii_whitespace().collect();
    if v.len() < 3 {
        return Err(ParseError::BadLine {
            file: F,
            line: 1,
            reason: format!("{} values, expected at least 3", v.len()),
        });
    }
    Ok((
        f64_of(F, "load1", v[0])?,
        f64_of(F, "load5", v[1])?,
        f64_of(F, "load15", v[2])?,
    ))
}

/// `/proc/uptime`: whole seconds since boot.
///
/// # Errors
/// [`ParseError::BadNumber`] when the first value is missing or not a number.
pub fn parse_uptime(text: &str) -> Result<u64, ParseError> {
    const F: &str = "/proc/uptime";
    let first = text.split_ascii_whitespace().next().unwrap_or("");
    let secs = f64_of(F, "uptime", first)?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(ParseError::BadNumber {
            file: F,
            key: "uptime".to_string(),
            value: first.to_string(),
        });
    }
    Ok(secs as u64)
}

/// `/proc/vmstat`: `(pswpin, pswpout)` pages swapped in and out since boot; absent
/// counters (kernels without swap support) are 0.
///
/// # Errors
/// [`ParseError::BadNumber`] when either counter is not a number.
pub fn parse_vmstat_swap(text: &str) -> Result<(u64, u64), ParseError> {
    const F: &str = "/proc/vmstat";
    let (mut sin, mut sout) = (0, 0);
    for line in text.lines() {
        let mut it = line.split_ascii_whitespace();
        match (it.next(), it.next()) {
            (Some("pswpin"), Some(v)) => sin = u64_of(F, "pswpin", v)?,
            (Some("pswpout"), Some(v)) => sout = u64_of(F, "pswpout", v)?,
            _ => {}
        }
    }
    Ok((sin, sout))
}

/// A sysfs hexadecimal flags file (`/sys/class/net/<if>/flags`, e.g. `0x1003`).
///
/// # Errors
/// [`ParseError::BadNumber`] when the content is not hexadecimal.
pub fn parse_hex_flags(file: &'static str, text: &str) -> Result<u32, ParseError> {
    let t = text.trim();
    let digits = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    u32::from_str_radix(digits, 16).map_err(|_| ParseError::BadNumber {
        file,
        key: "flags".to_string(),
        value: t.to_string(),
    })
}

/// Counts the CPUs of a kernel CPU list (`0-3,8,10-11` is 7).
///
/// # Errors
/// [`ParseError::BadNumber`] for a range that is not `N` or `N-M` with `N <= M`.
pub fn count_cpu_list(file: &'static str, text: &str) -> Result<usize, ParseError> {
    let mut n = 0usize;
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let bad = || ParseError::BadNumber {
            file,
            key: "cpu list".to_string(),
            value: part.to_string(),
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let a: usize = a.trim().parse().map_err(|_| bad())?;
                let b: usize = b.trim().parse().map_err(|_| bad())?;
                if b < a {
                    return Err(bad());
                }
                n += b - a + 1;
            }
            None => {
                part.trim().parse::<usize>().map_err(|_| bad())?;
                n += 1;
            }
        }
    }
    Ok(n)
}

/// The CPUs this process may run on, from `/proc/self/status` (`Cpus_allowed_list`), as
/// Go's `runtime.NumCPU`; `None` when the line is absent.
///
/// # Errors
/// [`ParseError::BadNumber`] for a malformed list.
pub fn parse_cpus_allowed(text: &str) -> Result<Option<usize>, ParseError> {
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Cpus_allowed_list:") {
            return count_cpu_list("/proc/self/status", rest).map(Some);
        }
    }
    Ok(None)
}

/// Datakit's `load5s`: a 5-second load estimate derived from two successive `load1`
/// readings 5 s apart (the kernel's exponential decay solved for the newest sample).
/// Without a previous reading, or with a zero one, it is `load1` truncated.
pub fn load5s(load1: f64, last_load1: f64) -> i64 {
    let v = if last_load1 == 0.0 || load1 == 0.0 {
        load1
    } else {
        ((2048.0 * (2048.0 * load1 - 10.0) - 1024.0 - 1884.0 * 2048.0 * last_load1)
            / 164.0
            / 2048.0)
            .round()
    };
    // Go's int32(float) truncates toward zero; keep within int32 like Datakit does.
    v.clamp(i32::MIN as f64, i32::MAX as f64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loadavg_parses_a_captured_file() {
        let (l1, l5, l15) = parse_loadavg(include_str!("../../testdata/proc_loadavg")).unwrap();
        assert!(l1 >= 0.0 && l5 >= 0.0 && l15 >= 0.0);
        assert_eq!(
            parse_loadavg("0.50 1.25 2.00 1/100 42\n").unwrap(),
            (0.5, 1.25, 2.0)
        );
        assert!(parse_loadavg("0.5\n").is_err());
    }

    #[test]
    fn uptime_truncates_to_whole_seconds() {
        assert_eq!(parse_uptime("350735.47 234388.90\n").unwrap(), 350_735);
        assert!(parse_uptime(include_str!("../../testdata/proc_uptime")).unwrap() > 0);
        assert!(parse_uptime("").is_err());
        assert!(parse_uptime("-3 1").is_err());
    }

    #[test]
    fn vmstat_gives_swap_pages_and_tolerates_their_absence() {
        let (i, o) = parse_vmstat_swap("nr_free_pages 5\npswpin 7\npswpout 9\n").unwrap();
        assert_eq!((i, o), (7, 9));
        assert_eq!(parse_vmstat_swap("nr_free_pages 5\n").unwrap(), (0, 0));
        assert!(parse_vmstat_swap(include_str!("../../testdata/proc_vmstat")).is_ok());
    }

    #[test]
    fn hex_flags_with_and_without_prefix() {
        assert_eq!(parse_hex_flags("f", "0x1003\n").unwrap(), 0x1003);
        assert_eq!(parse_hex_flags("f", "9").unwrap(), 9);
        assert!(parse_hex_flags("f", "up").is_err());
    }

    #[test]
    fn cpu_lists_count_ranges_and_singles() {
        assert_eq!(count_cpu_list("f", "0-3,8,10-11\n").unwrap(), 7);
        assert_eq!(count_cpu_list("f", "0").unwrap(), 1);
        assert!(count_cpu_list("f", "3-1").is_err());
        let status = "Name:\tx\nCpus_allowed:\t3\nCpus_allowed_list:\t0-1\n";
        assert_eq!(parse_cpus_allowed(status).unwrap(), Some(2));
        assert_eq!(parse_cpus_allowed("Name: x\n").unwrap(), None);
    }

    #[test]
    fn load5s_falls_back_to_load1_without_history() {
        assert_eq!(load5s(1.7, 0.0), 1);
        assert_eq!(load5s(0.0, 3.0), 0);
        // Steady load: the estimate stays near the load itself.
        let steady = load5s(2.0, 2.0);
        assert!((0..=3).contains(&steady), "{steady}");
    }
}
