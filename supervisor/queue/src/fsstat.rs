//! Filesystem usage of the queue directory through `statvfs(3)`.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Used and available space of a filesystem, in bytes, as `df` counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsUsage {
    /// Bytes in use (blocks minus free blocks).
    pub used: u64,
    /// Bytes an unprivileged writer may still use (the root reserve excluded).
    pub avail: u64,
}

impl FsUsage {
    /// Fraction of the filesystem in use once `extra` more bytes are written (`df`'s Use%:
    /// used / (used + available)); `extra` may be negative for bytes freed since the reading.
    pub fn ratio_with(&self, extra: i128) -> f64 {
        let size = i128::from(self.used) + i128::from(self.avail);
        if size <= 0 {
            return 1.0;
        }
        (i128::from(self.used) + extra).max(0) as f64 / size as f64
    }
}

/// Reads the usage of the filesystem holding `path`.
// The statvfs field types differ between platforms, so the casts are not always no-ops.
#[allow(clippy::unnecessary_cast)]
pub fn usage(path: &Path) -> io::Result<FsUsage> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut st = MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a valid NUL-terminated C string that outlives the call, and `st` points to
    // writable memory sized and aligned for a `statvfs`, which is all the call writes to.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled the struct (which was zeroed before anyway).
    let st = unsafe { st.assume_init() };
    let frsize = if st.f_frsize > 0 {
        st.f_frsize as u64
    } else {
        st.f_bsize as u64
    };
    let blocks = st.f_blocks as u64;
    let free = st.f_bfree as u64;
    Ok(FsUsage {
        used: blocks.saturating_sub(free).saturating_mul(frsize),
        avail: (st.f_bavail as u64).saturating_mul(frsize),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_of_the_temp_dir_is_plausible() {
        let u = usage(&std::env::temp_dir()).unwrap();
        assert!(u.used + u.avail > 0);
        let r = u.ratio_with(0);
        assert!((0.0..=1.0).contains(&r));
        assert!(u.ratio_with(i128::from(u.avail)) >= 0.999_999);
        assert!(u.ratio_with(-i128::from(u.used)) <= 0.000_001);
    }

    #[test]
    fn usage_of_a_missing_path_is_an_error() {
        assert!(usage(Path::new("/nonexistent/dk-queue/x")).is_err());
    }
}
