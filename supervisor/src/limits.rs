//! Resource limits of the agent and its workers: the open-files limit (`ulimit`), a memory
//! cap per worker (`[resource_limit] mem_max_mb`, enforced by the supervisor from `/proc`),
//! and what each worker gets before exec (no core dumps, first in line for the OOM killer).

use std::io;

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// `oom_score_adj` of every worker: the kernel's OOM killer takes a worker (which the
/// supervisor restarts) before the supervisor and before most other programs.
pub const WORKER_OOM_SCORE_ADJ: &[u8] = b"500";

/// Raises the open-files limit towards `want` (Datakit's `ulimit`, default 64000): the hard
/// limit too where permitted (root), else the soft limit up to the hard one. Returns the
/// (soft, hard) limits in effect.
///
/// # Errors
/// When the limits cannot be read.
pub fn raise_nofile(want: u64) -> io::Result<(u64, u64)> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    if soft >= want {
        return Ok((soft, hard));
    }
    if setrlimit(Resource::RLIMIT_NOFILE, want, want.max(hard)).is_err() {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, want.min(hard), hard);
    }
    getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)
}

/// Resident memory of a process in bytes, from `/proc/<pid>/statm` (`None` when it is gone).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_resident_memory_of_a_process() {
        let rss = rss_bytes(std::process::id()).unwrap();
        // A test binary has at least a few hundred KiB resident and far less than 1 GiB.
        assert!(rss > 256 * 1024 && rss < 1 << 30, "{rss}");
        assert_eq!(rss_bytes(u32::MAX), None);
    }

    #[test]
    fn the_open_files_limit_is_raised_within_what_is_permitted() {
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        let (new_soft, new_hard) = raise_nofile(soft.max(1024)).unwrap();
        assert!(new_soft >= soft && new_hard >= hard.min(new_soft));
        // Asking for less never lowers it.
        assert_eq!(raise_nofile(1).unwrap().0, new_soft);
    }
}
