//! What a worker process gets set up between fork and exec: inherited sockets, death signal.
#![allow(unsafe_code)]

use std::os::fd::RawFd;

use tokio::process::Command;

/// Makes `fds` survive the exec (clears `FD_CLOEXEC` in the child only) and makes the child
/// die with SIGKILL if the supervisor dies, so no orphan worker keeps a port's queue.
pub fn prepare(cmd: &mut Command, fds: Vec<RawFd>) {
    // SAFETY: the closure runs in the forked child before exec and only calls the
    // async-signal-safe functions prctl(2) and fcntl(2) on descriptors we own; it allocates
    // nothing (the Vec was allocated before the fork and is only read).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            for &fd in &fds {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}
