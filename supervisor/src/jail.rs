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

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    #[tokio::test]
    async fn listed_descriptors_survive_exec_and_others_do_not() {
        let passed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let kept_back = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (p, k) = (passed.as_raw_fd(), kept_back.as_raw_fd());
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(format!(
            "test -e /proc/self/fd/{p} && readlink /proc/self/fd/{p}; test -e /proc/self/fd/{k} && echo leaked"
        ));
        prepare(&mut cmd, vec![p]);
        let out = cmd.output().await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.starts_with("socket:["),
            "the listed socket is inherited: {stdout:?}"
        );
        assert!(
            !stdout.contains("leaked"),
            "other descriptors stay close-on-exec: {stdout:?}"
        );
    }
}
