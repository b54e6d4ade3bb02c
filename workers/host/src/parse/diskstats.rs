//! `/proc/diskstats`: per-block-device I/O counters.

use super::{ParseError, u64_of};

const FILE: &str = "/proc/diskstats";

/// Bytes per sector in `/proc/diskstats` (always 512, whatever the device's sector size).
pub const SECTOR_SIZE: u64 = 512;

/// The I/O counters of one block device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskStat {
    /// Device major number.
    pub major: u32,
    /// Device minor number.
    pub minor: u32,
    /// Kernel device name (`sda`, `nvme0n1p1`, `dm-0`).
    pub name: String,
    /// Reads completed.
    pub reads: u64,
    /// Reads merged.
    pub merged_reads: u64,
    /// Bytes read (sectors × 512).
    pub read_bytes: u64,
    /// Milliseconds spent reading.
    pub read_time: u64,
    /// Writes completed.
    pub writes: u64,
    /// Writes merged.
    pub merged_writes: u64,
    /// Bytes written (sectors × 512).
    pub write_bytes: u64,
    /// Milliseconds spent writing.
    pub write_time: u64,
    /// I/Os currently in progress.
    pub iops_in_progress: u64,
    /// Milliseconds spent doing I/O.
    pub io_time: u64,
    /// Weighted milliseconds spent doing I/O.
    pub weighted_io_time: u64,
}

impl DiskStat {
    fn counters_are_zero(&self) -> bool {
        self.reads == 0
            && self.merged_reads == 0
            && self.read_bytes == 0
            && self.read_time == 0
            && self.writes == 0
            && self.merged_writes == 0
            && self.write_bytes == 0
            && self.write_time == 0
            && self.iops_in_progress == 0
            && self.io_time == 0
            && self.weighted_io_time == 0
    }
}

/// Parses `/proc/diskstats`.
///
/// Lines with fewer than 14 columns are skipped and extra columns (discard and flush
/// counters of newer kernels) ignored. Devices whose counters are all zero (unused loop
/// devices) are left out, as Datakit does.
///
/// # Errors
/// [`ParseError::BadNumber`] when a counter is not a number.
pub fn parse_diskstats(text: &str) -> Result<Vec<DiskStat>, ParseError> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.len() < 14 {
            continue;
        }
        let name = f[2];
        let n = |i: usize| u64_of(FILE, name, f[i]);
        let d = DiskStat {
            major: u32::try_from(n(0)?).unwrap_or(u32::MAX),
            minor: u32::try_from(n(1)?).unwrap_or(u32::MAX),
            name: name.to_string(),
            reads: n(3)?,
            merged_reads: n(4)?,
            read_bytes: n(5)?.saturating_mul(SECTOR_SIZE),
            read_time: n(6)?,
            writes: n(7)?,
            merged_writes: n(8)?,
            write_bytes: n(9)?.saturating_mul(SECTOR_SIZE),
            write_time: n(10)?,
            iops_in_progress: n(11)?,
            io_time: n(12)?,
            weighted_io_time: n(13)?,
        };
        if !d.counters_are_zero() {
            out.push(d);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../../testdata/proc_diskstats");

    #[test]
    fn parses_a_captured_file_and_drops_idle_devices() {
        let d = parse_diskstats(FIXTURE).unwrap();
        assert_eq!(d.len(), 1, "only vda has I/O: {d:?}");
        let vda = &d[0];
        assert_eq!((vda.major, vda.minor), (254, 0));
        assert_eq!(vda.name, "vda");
        assert_eq!(vda.reads, 18856);
        assert_eq!(vda.merged_reads, 5228);
        assert_eq!(vda.read_bytes, 5_110_930 * 512);
        assert_eq!(vda.write_bytes, 2_107_504 * 512);
        assert_eq!(vda.io_time, 6016);
        assert_eq!(vda.weighted_io_time, 34142);
    }

    #[test]
    fn short_lines_are_skipped_and_old_14_column_lines_parse() {
        let text = "8 0 sda 1 2 3\n8 1 sda1 1 2 3 4 5 6 7 8 9 10 11\n";
        let d = parse_diskstats(text).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].name, "sda1");
        assert_eq!(d[0].weighted_io_time, 11);
    }

    #[test]
    fn a_bad_counter_names_the_device() {
        let e = parse_diskstats("8 0 sda 1 2 3 4 5 6 7 x 9 10 11\n").unwrap_err();
        assert_eq!(
            e,
            ParseError::BadNumber {
                file: FILE,
                key: "sda".into(),
                value: "x".into()
            }
        );
    }
}
