//! `datakit upgrade --from FILE|URL`, `datakit upgrade --rollback`, and the hidden
//! `datakit upgrade --watch PID` the supervisor starts beside a new binary.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use super::stage::{self, Running, Source};

/// The command line's options.
pub struct Options {
    /// Tarball or install base.
    pub from: Option<String>,
    /// Put the previous binary back.
    pub rollback: bool,
    /// Allow the same or an older version.
    pub force: bool,
    /// The agent's work dir.
    pub workdir: PathBuf,
    /// The binary to replace.
    pub exe: Option<PathBuf>,
    /// Watchdog mode: the new supervisor's pid.
    pub watch: Option<u32>,
    /// Watchdog: time the new binary has.
    pub within_ms: Option<u64>,
    /// Watchdog: the supervisor's arguments.
    pub args: Vec<OsString>,
}

fn say(text: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// The pid of the agent running with `workdir`, if one holds its pid file.
fn running_agent(workdir: &Path) -> Option<i32> {
    let path = workdir.join(".pid");
    let f = std::fs::File::open(&path).ok()?;
    if f.try_lock_shared().is_ok() {
        return None;
    }
    std::fs::read_to_string(&path).ok()?.trim().parse().ok()
}

/// Asks the running agent to exec the binary now on disk (SIGUSR2).
fn reexec_agent(workdir: &Path) -> bool {
    match running_agent(workdir) {
        Some(pid) => {
            let sent = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGUSR2,
            );
            match sent {
                Ok(()) => {
                    say(&format!(
                        "asked the running agent (pid {pid}) to switch binaries; it keeps its ports and pid"
                    ));
                    true
                }
                Err(e) => {
                    say(&format!(
                        "cannot signal the agent (pid {pid}): {e}; restart it to apply"
                    ));
                    false
                }
            }
        }
        None => {
            say("no agent runs with this work dir; the new binary runs at the next start");
            true
        }
    }
}

/// `datakit upgrade ...`.
pub fn run(
    opts: Options,
    public_keys: impl FnOnce(&Path) -> Result<(Vec<String>, String), String>,
) -> ExitCode {
    let Some(exe) = opts.exe.clone().or_else(stage::exe_path) else {
        say("datakit upgrade: cannot find the binary to replace; pass --exe");
        return ExitCode::FAILURE;
    };
    if let Some(pid) = opts.watch {
        let within = Duration::from_millis(opts.within_ms.unwrap_or(30_000));
        let why = super::handover::watch(pid, &exe, &opts.workdir, within, &opts.args);
        say(&format!("datakit upgrade watchdog: {why}"));
        return ExitCode::FAILURE;
    }
    if opts.rollback {
        return match stage::restore_prev(&exe) {
            Ok(()) => {
                say(&format!("{} is the previous binary again", exe.display()));
                if reexec_agent(&opts.workdir) {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                say(&format!("datakit upgrade --rollback: {e}"));
                ExitCode::FAILURE
            }
        };
    }
    let Some(from) = opts.from else {
        say(
            "datakit upgrade: say what to do: --from FILE|URL (a signed release tarball or an install base), or --rollback",
        );
        return ExitCode::from(64);
    };
    let (keys, proxy) = match public_keys(&opts.workdir) {
        Ok(k) => k,
        Err(e) => {
            say(&format!("datakit upgrade: {e}"));
            return ExitCode::from(crate::EXIT_CONFIG);
        }
    };
    // A tarball names its version; anything else is an install base with a `version` file.
    let (base, requested) = match from.rsplit_once('/') {
        Some((dir, name)) if name.ends_with(".tar.gz") => {
            (dir.to_string(), Some(tarball_version(name)))
        }
        _ if from.ends_with(".tar.gz") => (".".to_string(), Some(tarball_version(&from))),
        _ => (from.clone(), None),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            say(&format!(
                "datakit upgrade: cannot start the async runtime: {e}"
            ));
            return ExitCode::FAILURE;
        }
    };
    let commit = dk_proto::build_id();
    let running = Running {
        version: dk_proto::version(),
        commit: &commit,
    };
    let fetched = rt.block_on(async {
        let source = Source::new(&base, &proxy)?;
        stage::fetch(&source, &keys, &running, requested.as_deref(), opts.force).await
    });
    let release = match fetched {
        Ok(r) => r,
        Err(super::UpgradeError::UpToDate(v)) => {
            say(&format!("datakit {v} is already installed (up to date)"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            say(&format!("datakit upgrade: {e}"));
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = stage::stage_and_swap(&exe, &release.binary, &release.version) {
        say(&format!("datakit upgrade: {e}"));
        return ExitCode::FAILURE;
    }
    say(&format!(
        "installed datakit {} at {} (the previous binary is kept for --rollback)",
        release.version,
        exe.display()
    ));
    if reexec_agent(&opts.workdir) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The version in a release tarball's name, `datakit-<os>-<arch>-<version>.tar.gz` (the
/// version may have a suffix such as `-rc1`).
fn tarball_version(name: &str) -> String {
    let stem = name.trim_end_matches(".tar.gz");
    let parts: Vec<&str> = stem.split('-').collect();
    match parts.as_slice() {
        ["datakit", _os, _arch, version @ ..] if !version.is_empty() => version.join("-"),
        _ => parts.last().copied().unwrap_or("").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_of_a_tarball_keeps_its_suffix() {
        assert_eq!(tarball_version("datakit-linux-amd64-1.2.3.tar.gz"), "1.2.3");
        assert_eq!(
            tarball_version("datakit-linux-arm64-1.2.3-rc1.tar.gz"),
            "1.2.3-rc1"
        );
        assert_eq!(tarball_version("other-9.9.9.tar.gz"), "9.9.9");
    }
}
