//! Exec in place with every listening socket inherited, and the watchdog that rolls a new
//! binary back when it does not become healthy.
//!
//! The old supervisor stops its API and workers (they flush), closes the queue, clears
//! `FD_CLOEXEC` on every listening socket and `execve`s the new binary under the same PID,
//! with the descriptor numbers in [`ENV_FDS`]. The sockets never close, so datagrams and
//! connections that arrive meanwhile wait in the kernel queues. The new supervisor adopts
//! them instead of binding ([`Inherited`]).
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};

use super::{RollbackRecord, rollback_record_path, stage::restore_prev};

/// Descriptor numbers handed to the new binary (JSON [`FdMap`]).
pub const ENV_FDS: &str = "DK_INHERITED_FDS";
/// Pid of the watchdog the new binary must stop once healthy.
pub const ENV_WATCHDOG: &str = "DK_UPGRADE_WATCHDOG";
/// The version the new binary was upgraded from.
pub const ENV_UPGRADE_FROM: &str = "DK_UPGRADE_FROM";

/// Which inherited descriptor is which.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct FdMap {
    /// The HTTP API (9529).
    pub api: Option<RawFd>,
    /// The upgrade service (9542).
    pub upgrader: Option<RawFd>,
    /// Input listeners by configured address.
    pub listeners: BTreeMap<String, Vec<RawFd>>,
    /// Workers that outlive the exec: the new binary takes them over.
    #[serde(default)]
    pub workers: Vec<WorkerFd>,
}

/// A worker that outlives the exec.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct WorkerFd {
    /// Its family.
    pub family: String,
    /// Its pid.
    pub pid: u32,
    /// The read end of its stderr pipe.
    pub stderr: Option<RawFd>,
}

/// Sockets inherited from the previous binary, taken one by one as the config asks for them;
/// those nobody takes are closed when this is dropped.
#[derive(Debug, Default)]
pub struct Inherited {
    /// The API socket.
    pub api: Option<OwnedFd>,
    /// The 9542 socket.
    pub upgrader: Option<OwnedFd>,
    /// Input listeners by address.
    pub listeners: BTreeMap<String, Vec<OwnedFd>>,
    /// Workers of the previous binary that are still our children, by family.
    pub workers: BTreeMap<String, crate::procman::Adopted>,
}

/// Whether `fd` is an open socket.
fn is_socket(fd: RawFd) -> bool {
    nix::sys::stat::fstat(
        // SAFETY: fstat only reads the descriptor's metadata; a closed number fails with EBADF.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
    )
    .is_ok_and(|st| (st.st_mode & libc::S_IFMT) == libc::S_IFSOCK)
}

/// The worker of the previous binary, if it is still our child (after a rollback the
/// watchdog hands on a map whose workers belonged to the binary that died: not ours).
fn adopt_worker(w: WorkerFd) -> Option<crate::procman::Adopted> {
    let stderr = w.stderr.filter(|fd| *fd > 2 && is_fifo(*fd)).map(|fd| {
        // SAFETY: the number came from our predecessor in ENV_FDS, it is an open pipe
        // (checked above) and nothing else in this process owns it: adopted once here.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let _ = fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
        owned
    });
    (parent_of(w.pid) == Some(std::process::id())).then_some(crate::procman::Adopted {
        family: w.family,
        pid: w.pid,
        stderr,
    })
}

/// The parent pid of `pid`, from `/proc/<pid>/stat`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn is_fifo(fd: RawFd) -> bool {
    nix::sys::stat::fstat(
        // SAFETY: fstat only reads the descriptor's metadata; a closed number fails with EBADF.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
    )
    .is_ok_and(|st| (st.st_mode & libc::S_IFMT) == libc::S_IFIFO)
}

fn adopt(fd: RawFd) -> Option<OwnedFd> {
    if fd < 3 || !is_socket(fd) {
        return None;
    }
    // SAFETY: the number came from our predecessor in ENV_FDS, it is an open socket (checked
    // above) and nothing else in this process owns it: it is adopted exactly once here.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let _ = fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    Some(owned)
}

impl Inherited {
    /// Reads [`ENV_FDS`] (once per process; later calls get nothing).
    pub fn from_env() -> Inherited {
        static TAKEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if TAKEN.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Inherited::default();
        }
        let Some(map) = std::env::var(ENV_FDS)
            .ok()
            .and_then(|v| serde_json::from_str::<FdMap>(&v).ok())
        else {
            return Inherited::default();
        };
        Inherited {
            api: map.api.and_then(adopt),
            upgrader: map.upgrader.and_then(adopt),
            listeners: map
                .listeners
                .into_iter()
                .map(|(a, fds)| (a, fds.into_iter().filter_map(adopt).collect::<Vec<_>>()))
                .filter(|(_, fds)| !fds.is_empty())
                .collect(),
            workers: map
                .workers
                .into_iter()
                .filter_map(adopt_worker)
                .map(|w| (w.family.clone(), w))
                .collect(),
        }
    }

    /// Whether any socket was inherited.
    pub fn is_empty(&self) -> bool {
        self.api.is_none() && self.upgrader.is_none() && self.listeners.is_empty()
    }
}

/// What the old supervisor hands to the new binary.
#[derive(Debug, Default)]
pub struct Handover {
    /// The sockets (kept open until the exec).
    pub fds: Vec<OwnedFd>,
    /// Their roles.
    pub map: FdMap,
    /// Start a watchdog (an upgrade, not a plain re-exec).
    pub watch: Option<Watch>,
}

/// The watchdog's parameters.
#[derive(Debug, Clone)]
pub struct Watch {
    /// The work dir (for the rollback record).
    pub workdir: PathBuf,
    /// How long the new binary has to become healthy.
    pub rollback_after: Duration,
}

impl Handover {
    /// Adds a socket under a role.
    pub fn push(&mut self, fd: OwnedFd) -> RawFd {
        let raw = fd.as_raw_fd();
        self.fds.push(fd);
        raw
    }
}

fn cstring(bytes: &[u8]) -> Option<CString> {
    CString::new(bytes).ok()
}

/// The environment for the next binary: ours, without upgrade variables, plus `extra`.
fn next_env(extra: &[(&str, String)]) -> Vec<CString> {
    let ours = [ENV_FDS, ENV_WATCHDOG, ENV_UPGRADE_FROM];
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| !ours.iter().any(|o| k == o))
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            cstring(&kv)
        })
        .collect();
    env.extend(
        extra
            .iter()
            .filter_map(|(k, v)| cstring(format!("{k}={v}").as_bytes())),
    );
    env
}

/// Clears `FD_CLOEXEC` on every handed-over socket and `execve`s `exe` with `args`; returns
/// only on failure.
fn exec_with(exe: &Path, args: &[OsString], fds: &[OwnedFd], env: &[CString]) -> String {
    for fd in fds {
        if let Err(e) = fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())) {
            return format!(
                "cannot keep socket {} open across exec: {e}",
                fd.as_raw_fd()
            );
        }
    }
    let Some(path) = cstring(exe.as_os_str().as_bytes()) else {
        return format!("{} is not a valid path", exe.display());
    };
    let argv: Vec<CString> = args.iter().filter_map(|a| cstring(a.as_bytes())).collect();
    match nix::unistd::execve(&path, &argv, env) {
        Ok(never) => match never {},
        Err(e) => format!("cannot exec {}: {e}", exe.display()),
    }
}

impl Handover {
    /// Execs `exe` in place (same PID, same arguments) with the sockets inherited; starts the
    /// watchdog first when [`Handover::watch`] is set. Returns only on failure, with why.
    pub fn exec(self, exe: &Path) -> String {
        let map = match serde_json::to_string(&self.map) {
            Ok(m) => m,
            Err(e) => return format!("cannot describe the sockets: {e}"),
        };
        let args: Vec<OsString> = std::env::args_os().collect();
        let mut extra = vec![(ENV_FDS, map.clone())];
        if let Some(w) = &self.watch {
            let prev = super::prev_path(exe);
            // The watchdog runs the previous binary; it inherits the sockets too.
            for fd in &self.fds {
                let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()));
            }
            let spawned = std::process::Command::new(&prev)
                .arg("upgrade")
                .arg("--watch")
                .arg(std::process::id().to_string())
                .arg("--exe")
                .arg(exe)
                .arg("--workdir")
                .arg(&w.workdir)
                .arg("--within-ms")
                .arg(w.rollback_after.as_millis().to_string())
                .arg("--")
                .args(args.iter().skip(1))
                .env(ENV_FDS, &map)
                .env_remove(ENV_WATCHDOG)
                .stdin(std::process::Stdio::null())
                .spawn();
            match spawned {
                Ok(child) => {
                    extra.push((ENV_WATCHDOG, child.id().to_string()));
                    extra.push((ENV_UPGRADE_FROM, dk_proto::version().to_string()));
                }
                Err(e) => {
                    return format!(
                        "cannot start the upgrade watchdog {}: {e}; not switching binaries",
                        prev.display()
                    );
                }
            }
        }
        let env = next_env(&extra);
        exec_with(exe, &args, &self.fds, &env)
    }
}

/// What `exe version` says, given at most 5 s (a broken binary must not stall the watchdog).
fn binary_version(exe: &Path) -> Option<String> {
    use std::io::Read as _;
    let mut child = std::process::Command::new(exe)
        .arg("version")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let mut out = String::new();
    child.stdout.take()?.read_to_string(&mut out).ok()?;
    out.split_whitespace().nth(1).map(str::to_string)
}

/// `datakit upgrade --watch PID`: run by the previous binary beside the new one. The new
/// binary stops it (SIGTERM) once healthy; if the new binary dies or is not healthy within
/// `within`, it is killed, the previous binary is put back over `exe` and exec'd here with the
/// inherited sockets (they never closed: this process holds them too).
pub fn watch(pid: u32, exe: &Path, workdir: &Path, within: Duration, args: &[OsString]) -> String {
    let started = Instant::now();
    let failed_version = binary_version(exe).unwrap_or_else(|| "the new version".into());
    let reason = loop {
        if nix::unistd::getppid().as_raw() != pid as i32
            || dk_worker::worker::proc_state(pid).is_none_or(|s| s == 'Z')
        {
            break format!("datakit {failed_version} exited before it became healthy");
        }
        if started.elapsed() >= within {
            break format!(
                "datakit {failed_version} was not healthy (API answering, every worker up) within {within:?} ([dk_upgrader] rollback_after)"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Decided: a SIGTERM from a new binary that turns healthy just now must not stop the
    // rollback half-way.
    // Ignored (not blocked): the disposition is inherited by the old binary we exec, whose
    // runtime installs its own SIGTERM handler at start.
    // SAFETY: SIG_IGN installs no handler code; the watchdog is single-threaded.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGTERM,
            nix::sys::signal::SigHandler::SigIgn,
        )
    };
    // Not our child: kill it and wait until it has let go of the pid file lock.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while dk_worker::worker::proc_state(pid).is_some_and(|s| s != 'Z') && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    if let Err(e) = restore_prev(exe) {
        return format!("rollback failed: {e}");
    }
    let record = RollbackRecord {
        failed_version,
        restored_version: dk_proto::version().to_string(),
        reason,
        rollback_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    let path = rollback_record_path(workdir);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Ok(text) = serde_json::to_string(&record) {
        let _ = std::fs::write(&path, text);
    }
    // The sockets are ours under the same numbers; hand them on as they came.
    let map = std::env::var(ENV_FDS).unwrap_or_default();
    let mut argv = vec![exe.as_os_str().to_owned()];
    argv.extend(args.iter().cloned());
    let env = next_env(&[(ENV_FDS, map)]);
    exec_with(exe, &argv, &[], &env)
}
