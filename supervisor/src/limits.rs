//! Resource limits of the agent and its workers: the open-files limit (`ulimit`) and what each
//! worker gets before exec (no core dumps, first in line for the OOM killer). The memory cap
//! per worker is enforced in `procman`.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_files_limit_is_raised_within_what_is_permitted() {
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        let (new_soft, new_hard) = raise_nofile(soft.max(1024)).unwrap();
        assert!(new_soft >= soft && new_hard >= hard.min(new_soft));
        // Asking for less never lowers it.
        assert_eq!(raise_nofile(1).unwrap().0, new_soft);
    }
}
