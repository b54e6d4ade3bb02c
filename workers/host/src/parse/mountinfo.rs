//! `/proc/<pid>/mountinfo`: the mounted file systems (device, mount point, type).

use super::ParseError;

const FILE: &str = "/proc/1/mountinfo";

/// One mount, as the `disk` input and the host object see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// `major:minor` of the device (field 3), used to resolve `/dev/root`.
    pub major_minor: String,
    /// Root of the mount inside its file system (field 4); not `/` for bind mounts.
    pub root: String,
    /// The mount point, with `\040`-style escapes decoded.
    pub mount_point: String,
    /// Mount options (field 6).
    pub options: String,
    /// File system type (first field after ` - `).
    pub fstype: String,
    /// The mount source, usually the device (`/dev/vda1`, `tmpfs`), escapes decoded.
    pub device: String,
}

/// Parses a mountinfo file.
///
/// Lines are `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS`;
/// the number of optional fields varies. Empty lines are skipped.
///
/// # Errors
/// [`ParseError::BadLine`] for a line without the ` - ` separator or with too few fields.
pub fn parse_mountinfo(text: &str) -> Result<Vec<Mount>, ParseError> {
    let mut out = Vec::new();
    for (idx, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: &str| ParseError::BadLine {
            file: FILE,
            line: idx + 1,
            reason: reason.to_string(),
        };
        let (left, right) = line
            .split_once(" - ")
            .ok_or_else(|| bad("no \" - \" separator"))?;
        let left: Vec<&str> = left.split_ascii_whitespace().collect();
        if left.len() < 6 {
            return Err(bad("fewer than 6 fields before the separator"));
        }
        let mut right = right.split_ascii_whitespace();
        let fstype = right
            .next()
            .ok_or_else(|| bad("no file system type after the separator"))?;
        let device = right.next().unwrap_or("none");
        out.push(Mount {
            major_minor: left[2].to_string(),
            root: unescape(left[3]),
            mount_point: unescape(left[4]),
            options: left[5].to_string(),
            fstype: fstype.to_string(),
            device: unescape(device),
        });
    }
    Ok(out)
}

/// Decodes the kernel's octal escapes (`\040` space, `\011` tab, `\012` newline,
/// `\134` backslash) in a mountinfo field.
pub fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') as u32 * 64
                + (bytes[i + 2] - b'0') as u32 * 8
                + (bytes[i + 3] - b'0') as u32;
            if let Ok(b) = u8::try_from(v) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../../testdata/mountinfo");

    #[test]
    fn parses_every_line_of_a_captured_file() {
        let m = parse_mountinfo(FIXTURE).unwrap();
        assert_eq!(m.len(), FIXTURE.lines().count());
        let root = m.iter().find(|m| m.mount_point == "/").unwrap();
        assert_eq!(root.device, "/dev/vda");
        assert_eq!(root.fstype, "ext4");
        assert_eq!(root.major_minor, "254:0");
        let cg2 = m.iter().find(|m| m.fstype == "cgroup2").unwrap();
        assert_eq!(cg2.mount_point, "/sys/fs/cgroup/unified");
    }

    #[test]
    fn optional_fields_of_any_count_are_skipped() {
        let text = "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue\n\
                    37 35 98:1 / /data rw - xfs /dev/sdb1 rw\n";
        let m = parse_mountinfo(text).unwrap();
        assert_eq!(m[0].root, "/mnt1");
        assert_eq!(m[0].mount_point, "/mnt2");
        assert_eq!(m[0].fstype, "ext3");
        assert_eq!(m[0].device, "/dev/root");
        assert_eq!(m[1].device, "/dev/sdb1");
    }

    #[test]
    fn escaped_spaces_in_mount_points_are_decoded() {
        let text = "40 1 8:1 / /media/My\\040Disk rw - vfat /dev/sdc1 rw\n";
        let m = parse_mountinfo(text).unwrap();
        assert_eq!(m[0].mount_point, "/media/My Disk");
        assert_eq!(unescape("a\\134b\\011c"), "a\\b\tc");
        assert_eq!(unescape("trailing\\04"), "trailing\\04");
    }

    #[test]
    fn a_line_without_separator_is_an_error_with_its_number() {
        let text = "22 27 0:21 / /proc rw - proc proc rw\n23 27 0:22 / /sys rw sysfs\n";
        let e = parse_mountinfo(text).unwrap_err();
        assert!(matches!(e, ParseError::BadLine { line: 2, .. }), "{e}");
    }

    #[test]
    fn a_missing_source_reads_as_none() {
        let m = parse_mountinfo("1 1 0:1 / /x rw - fuse\n").unwrap();
        assert_eq!(m[0].device, "none");
    }
}
