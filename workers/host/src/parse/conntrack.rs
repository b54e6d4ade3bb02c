//! `/proc/net/stat/nf_conntrack`: per-CPU conntrack statistics, summed.

use super::{ParseError, i64_of};

const FILE: &str = "/proc/net/stat/nf_conntrack";

/// Conntrack statistics summed over CPUs (the `stat_*` fields of `conntrack`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConntrackStat {
    /// `found`.
    pub found: u64,
    /// `invalid`.
    pub invalid: u64,
    /// `ignore`.
    pub ignore: u64,
    /// `insert`.
    pub insert: u64,
    /// `insert_failed`.
    pub insert_failed: u64,
    /// `drop`.
    pub drop: u64,
    /// `early_drop`.
    pub early_drop: u64,
    /// `search_restart` (absent before Linux 2.6.35).
    pub search_restart: u64,
}

/// Parses the per-CPU table: a header line naming the columns, then one line of
/// hexadecimal counters per CPU. Columns are found by name, so kernels that renamed
/// `searched`/`delete_list` (to `clashres`/`chainlength`) parse the same.
///
/// # Errors
/// [`ParseError::Missing`] without a header; [`ParseError::BadLine`] for a row whose
/// column count differs from the header; [`ParseError::BadNumber`] for a bad hex value.
pub fn parse_conntrack_stat(text: &str) -> Result<ConntrackStat, ParseError> {
    let mut lines = text.lines().enumerate();
    let header: Vec<&str> = lines
        .next()
        .map(|(_, l)| l.split_ascii_whitespace().collect())
        .unwrap_or_default();
    if header.is_empty() {
        return Err(ParseError::Missing {
            file: FILE,
            what: "the header line".to_string(),
        });
    }
    let col = |name: &str| header.iter().position(|h| *h == name);
    let cols = [
        col("found"),
        col("invalid"),
        col("ignore"),
        col("insert"),
        col("insert_failed"),
        col("drop"),
        col("early_drop"),
        col("search_restart"),
    ];
    let mut sums = [0u64; 8];
    for (idx, line) in lines {
        let row: Vec<&str> = line.split_ascii_whitespace().collect();
        if row.is_empty() {
            continue;
        }
        if row.len() != header.len() {
            return Err(ParseError::BadLine {
                file: FILE,
                line: idx + 1,
                reason: format!("{} columns, the header has {}", row.len(), header.len()),
            });
        }
        for (sum, c) in sums.iter_mut().zip(cols) {
            if let Some(c) = c {
                let v = u64::from_str_radix(row[c], 16).map_err(|_| ParseError::BadNumber {
                    file: FILE,
                    key: header[c].to_string(),
                    value: row[c].to_string(),
                })?;
                *sum = sum.wrapping_add(v);
            }
        }
    }
    Ok(ConntrackStat {
        found: sums[0],
        invalid: sums[1],
        ignore: sums[2],
        insert: sums[3],
        insert_failed: sums[4],
        drop: sums[5],
        early_drop: sums[6],
        search_restart: sums[7],
    })
}

/// Parses a file holding one decimal integer (`nf_conntrack_count`, `nf_conntrack_max`).
///
/// # Errors
/// [`ParseError::BadNumber`] when the content is not an integer.
pub fn parse_single_int(file: &'static str, text: &str) -> Result<i64, ParseError> {
    let t = text.trim();
    t.parse::<i64>().map_err(|_| ParseError::BadNumber {
        file,
        key: "value".to_string(),
        value: t.to_string(),
    })
}

/// `/proc/sys/fs/file-nr`: `(allocated, maximum)` file handles.
///
/// # Errors
/// [`ParseError::BadLine`] with fewer than three tab-separated values;
/// [`ParseError::BadNumber`] for values that are not integers.
pub fn parse_file_nr(text: &str) -> Result<(i64, i64), ParseError> {
    const F: &str = "/proc/sys/fs/file-nr";
    let parts: Vec<&str> = text.trim().split('\t').collect();
    if parts.len() < 3 {
        return Err(ParseError::BadLine {
            file: F,
            line: 1,
            reason: format!("{} values, expected 3", parts.len()),
        });
    }
    let allocated = i64_of(F, "allocated", parts[0].trim())?;
    let maximum = i64_of(F, "maximum", parts[2].trim())?;
    Ok((allocated, maximum))
}

/// Datakit's `maximum_mega`: the maximum in millions, keeping the fraction.
pub fn maximum_mega(maximum: i64) -> f64 {
    (maximum / 1_000_000) as f64 + (maximum % 1_000_000) as f64 / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_rows_of_a_captured_file() {
        let s = parse_conntrack_stat(include_str!("../../testdata/nf_conntrack_stat")).unwrap();
        assert_eq!(s, ConntrackStat::default());
    }

    #[test]
    fn sums_hex_counters_over_cpus_by_column_name() {
        let text = "entries searched found new invalid ignore delete delete_list insert insert_failed drop early_drop icmp_error expect_new expect_create expect_delete search_restart\n\
                    0000000a 00000000 00000010 00000000 00000001 00000002 00000000 00000000 00000003 00000004 00000005 00000006 00000000 00000000 00000000 00000000 00000007\n\
                    0000000a 00000000 00000010 00000000 00000001 00000002 00000000 00000000 00000003 00000004 00000005 00000006 00000000 00000000 00000000 00000000 00000007\n";
        let s = parse_conntrack_stat(text).unwrap();
        assert_eq!(s.found, 32);
        assert_eq!(s.invalid, 2);
        assert_eq!(s.ignore, 4);
        assert_eq!(s.insert, 6);
        assert_eq!(s.insert_failed, 8);
        assert_eq!(s.drop, 10);
        assert_eq!(s.early_drop, 12);
        assert_eq!(s.search_restart, 14);
    }

    #[test]
    fn old_kernels_without_search_restart_report_zero() {
        let text = "entries found\n00000001 00000002\n";
        let s = parse_conntrack_stat(text).unwrap();
        assert_eq!(s.found, 2);
        assert_eq!(s.search_restart, 0);
    }

    #[test]
    fn a_ragged_row_is_an_error() {
        let e = parse_conntrack_stat("entries found\n1\n").unwrap_err();
        assert!(matches!(e, ParseError::BadLine { line: 2, .. }), "{e}");
        assert!(matches!(
            parse_conntrack_stat("").unwrap_err(),
            ParseError::Missing { .. }
        ));
    }

    #[test]
    fn file_nr_gives_allocated_and_maximum() {
        let (a, m) = parse_file_nr(include_str!("../../testdata/file-nr")).unwrap();
        assert_eq!((a, m), (527, 2_466_170));
        assert!((maximum_mega(m) - 2.46617).abs() < 1e-12);
        assert!(parse_file_nr("1 2 3").is_err());
    }

    #[test]
    fn single_int_files_trim_whitespace() {
        assert_eq!(parse_single_int("x", "262144\n").unwrap(), 262_144);
        assert!(parse_single_int("x", "").is_err());
    }
}
