//! What a worker process gets set up between fork and exec: inherited sockets, death signal,
//! no core dumps, and a raised OOM score.
#![allow(unsafe_code)]

use std::os::fd::RawFd;

use tokio::process::Command;

/// Makes `fds` survive the exec (clears `FD_CLOEXEC` in the child only) and makes the child
/// die with SIGKILL if the supervisor dies, so no orphan worker keeps a port's queue. The
/// worker also gets no core dumps (a crash loop must not fill the disk with buffers of user
/// data) and `oom_score_adj` [`crate::limits::WORKER_OOM_SCORE_ADJ`], so the OOM killer takes
/// a worker, which is restarted, before the supervisor; both are best effort.
pub fn prepare(cmd: &mut Command, fds: Vec<RawFd>) {
    // SAFETY: the closure runs in the forked child before exec and only calls the
    // async-signal-safe functions prctl(2), fcntl(2), setrlimit(2), open(2), write(2) and
    // close(2); the path is a static C string and the Vec was allocated before the fork and
    // is only read, so it allocates nothing.
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
            let no_core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            let _ = libc::setrlimit(libc::RLIMIT_CORE, &raw const no_core);
            let adj = crate::limits::WORKER_OOM_SCORE_ADJ;
            let fd = libc::open(c"/proc/self/oom_score_adj".as_ptr(), libc::O_WRONLY);
            if fd >= 0 {
                let _ = libc::write(fd, adj.as_ptr().cast(), adj.len());
                libc::close(fd);
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

    #[tokio::test]
    async fn a_worker_gets_no_core_dumps_and_goes_first_to_the_oom_killer() {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg("ulimit -c; cat /proc/self/oom_score_adj");
        prepare(&mut cmd, Vec::new());
        let out = cmd.output().await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines, vec!["0", "500"], "{stdout:?}");
    }
}
