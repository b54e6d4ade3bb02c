//! `disk`: usage of every mounted file system that passes the filters.

use std::time::Duration;

use dk_proto::{Point, Value};

use crate::config::{DiskConfig, MountFilter};
use crate::parse::mountinfo::parse_mountinfo;
use crate::runner::Collector;
use crate::sys::{CollectError, FsStat, Reader, statvfs};

/// Usage of one file system, as gopsutil's `disk.Usage` computes it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FsUsage {
    /// Size in bytes.
    pub total: u64,
    /// Bytes available to unprivileged users.
    pub free: u64,
    /// Bytes in use (`blocks - free blocks`).
    pub used: u64,
    /// `used / (used + free)` in percent (what the host object reports).
    pub used_percent: f64,
    /// Inodes.
    pub inodes_total: u64,
    /// Free inodes.
    pub inodes_free: u64,
    /// Used inodes.
    pub inodes_used: u64,
    /// Used inodes in percent.
    pub inodes_used_percent: f64,
}

/// Usage from raw `statvfs` numbers. When the inode counts are inconsistent (free above
/// total, as on some FUSE file systems), only sizes are filled, as gopsutil does.
pub fn fs_usage(s: &FsStat) -> FsUsage {
    let unit = s.fragment_size;
    let mut u = FsUsage {
        total: s.blocks.saturating_mul(unit),
        free: s.blocks_available.saturating_mul(unit),
        inodes_total: s.files,
        inodes_free: s.files_free,
        ..Default::default()
    };
    if u.inodes_total < u.inodes_free {
        return u;
    }
    u.inodes_used = u.inodes_total - u.inodes_free;
    u.used = s.blocks.saturating_sub(s.blocks_free).saturating_mul(unit);
    if u.inodes_total != 0 {
        u.inodes_used_percent = u.inodes_used as f64 / u.inodes_total as f64 * 100.0;
    }
    if u.used + u.free != 0 {
        u.used_percent = u.used as f64 / (u.used + u.free) as f64 * 100.0;
    }
    u
}

/// One mounted file system that passed the filters.
#[derive(Debug, Clone, PartialEq)]
pub struct MountUsage {
    /// Device (resolved as gopsutil resolves it).
    pub device: String,
    /// File system type.
    pub fstype: String,
    /// Mount point.
    pub mount_point: String,
    /// Usage.
    pub usage: FsUsage,
}

/// Reads the mount table and `statvfs`es every mount that passes `filter`; mounts whose
/// `statvfs` fails are skipped (as Datakit does, with no error).
///
/// # Errors
/// When the mount table cannot be read or parsed.
pub(crate) fn mounts(
    reader: &mut Reader,
    filter: &MountFilter,
) -> Result<Vec<MountUsage>, CollectError> {
    let table = parse_mountinfo(reader.mountinfo()?)?;
    let mut out = Vec::new();
    for m in table {
        let device = reader.resolve_device(&m.device, &m.major_minor);
        if !filter.keeps(&device, &m.fstype, &m.mount_point) {
            continue;
        }
        let Ok(st) = statvfs(&reader.paths.mount_point(&m.mount_point)) else {
            continue;
        };
        out.push(MountUsage {
            device,
            fstype: m.fstype,
            mount_point: m.mount_point,
            usage: fs_usage(&st),
        });
    }
    Ok(out)
}

/// The `disk` point of one mount.
pub fn disk_point(m: &MountUsage, ts: i64) -> Point {
    let u = &m.usage;
    let used_percent = if u.total == 0 {
        0.0
    } else {
        u.used as f64 / u.total as f64 * 100.0
    };
    Point::new("disk", ts)
        .tag("device", m.device.as_str())
        .tag("fstype", m.fstype.as_str())
        .tag("mount_point", m.mount_point.as_str())
        .field("used_percent", Value::F(used_percent))
        .field("total", Value::U(u.total))
        .field("free", Value::U(u.free))
        .field("used", Value::U(u.used))
        .field("inodes_total_mb", Value::U(u.inodes_total / 1_000_000))
        .field("inodes_free_mb", Value::U(u.inodes_free / 1_000_000))
        .field("inodes_used_mb", Value::U(u.inodes_used / 1_000_000))
        .field("inodes_used_percent", Value::F(u.inodes_used_percent))
        .field("inodes_total", Value::U(u.inodes_total))
        .field("inodes_free", Value::U(u.inodes_free))
        .field("inodes_used", Value::U(u.inodes_used))
}

/// The `disk` input.
pub struct Disk {
    cfg: DiskConfig,
    reader: Reader,
}

impl Disk {
    /// A `disk` input reading from `paths`.
    pub fn new(cfg: DiskConfig, paths: crate::sys::HostPaths) -> Self {
        Disk {
            cfg,
            reader: Reader::new(paths),
        }
    }
}

impl Collector for Disk {
    fn name(&self) -> &'static str {
        "disk"
    }

    fn interval(&self) -> Duration {
        self.cfg.interval
    }

    fn may_block(&self) -> bool {
        true
    }

    fn collect(&mut self, ts: i64) -> Result<Vec<Point>, CollectError> {
        Ok(mounts(&mut self.reader, &self.cfg.filter)?
            .iter()
            .filter(|m| m.usage.total != 0)
            .map(|m| disk_point(m, ts))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_blocks_in_fragment_units() {
        let s = FsStat {
            fragment_size: 4096,
            blocks: 1000,
            blocks_free: 300,
            blocks_available: 250,
            files: 100,
            files_free: 40,
        };
        let u = fs_usage(&s);
        assert_eq!(u.total, 4_096_000);
        assert_eq!(u.free, 1_024_000);
        assert_eq!(u.used, 2_867_200);
        assert_eq!(u.inodes_used, 60);
        assert!((u.inodes_used_percent - 60.0).abs() < 1e-9);
        assert!((u.used_percent - 700.0 / 950.0 * 100.0).abs() < 1e-9);
    }

    #[test]
    fn inconsistent_inode_counts_leave_used_at_zero() {
        let s = FsStat {
            fragment_size: 512,
            blocks: 10,
            blocks_free: 5,
            blocks_available: 5,
            files: 1,
            files_free: 2,
        };
        let u = fs_usage(&s);
        assert_eq!((u.used, u.inodes_used), (0, 0));
        assert_eq!(u.total, 5120);
    }
}
