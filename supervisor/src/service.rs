//! `datakit service -I|-U|-S|-T|-R`: install, uninstall, start, stop and restart the systemd
//! unit of a tarball install, as Datakit's `datakit service` does. The deb and rpm packages
//! ship the same unit (`packaging/systemd/datakit.service`) under the system unit directory.
//!
//! Everything goes through `systemctl` found on `PATH`; the unit directory is
//! `/etc/systemd/system` unless `DK_SYSTEMD_UNIT_DIR` names another (tests, scratch roots).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The unit's name.
pub const UNIT_NAME: &str = "datakit.service";
/// The unit file the packages ship; its paths name the default install dir.
const UNIT_TEMPLATE: &str = include_str!("../../packaging/systemd/datakit.service");
/// The install dir the template names.
const DEFAULT_WORKDIR: &str = "/usr/local/datakit";
/// Where a tarball install's unit goes (Datakit's place for it).
const DEFAULT_UNIT_DIR: &str = "/etc/systemd/system";
/// Overrides [`DEFAULT_UNIT_DIR`].
pub const UNIT_DIR_ENV: &str = "DK_SYSTEMD_UNIT_DIR";

/// What `datakit service` was asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `-I`: write the unit, reload systemd, enable and start it.
    Install,
    /// `-U`: stop and disable the unit, remove its file, reload systemd.
    Uninstall,
    /// `-S`.
    Start,
    /// `-T`.
    Stop,
    /// `-R`.
    Restart,
}

/// Why a service action failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Writing or removing the unit file failed.
    #[error("{path}: {source}; run as root, or set {UNIT_DIR_ENV} to a writable unit directory")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// `systemctl` is not on `PATH`.
    #[error(
        "systemctl not found on PATH: this host has no systemd; run `datakit run --workdir {workdir}` \
         under your service manager instead"
    )]
    NoSystemctl {
        /// The install dir to run from.
        workdir: String,
    },
    /// `systemctl` ran and failed.
    #[error("`systemctl {args}` failed ({status}): {stderr}")]
    Systemctl {
        /// Its arguments.
        args: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// `-U` with no unit file to remove.
    #[error(
        "no unit file at {0}: the service is not installed there (a deb/rpm install owns its unit: remove the package instead)"
    )]
    NotInstalled(PathBuf),
    /// The install dir cannot go into a unit file.
    #[error(
        "the install dir {0} has characters a unit file cannot hold; install under a plain path"
    )]
    BadWorkdir(PathBuf),
}

/// The unit file text for an install in `workdir`.
///
/// # Errors
/// The path has whitespace, quotes, `%` or `\` (systemd would split or expand it).
pub fn unit_text(workdir: &Path) -> Result<String, ServiceError> {
    let dir = workdir
        .to_str()
        .ok_or_else(|| ServiceError::BadWorkdir(workdir.into()))?;
    let dir = dir.trim_end_matches('/');
    if !workdir.is_absolute()
        || dir.is_empty()
        || dir
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "\"'%\\;$".contains(c))
    {
        return Err(ServiceError::BadWorkdir(workdir.into()));
    }
    Ok(UNIT_TEMPLATE.replace(DEFAULT_WORKDIR, dir))
}

/// The unit directory: `DK_SYSTEMD_UNIT_DIR` or `/etc/systemd/system`.
pub fn unit_dir() -> PathBuf {
    std::env::var_os(UNIT_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_UNIT_DIR), PathBuf::from)
}

/// The install dir of the running binary (where the tarball put it), or the default.
pub fn default_workdir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_WORKDIR))
}

/// Does `action` for the install in `workdir`; returns what to tell the operator.
///
/// # Errors
/// See [`ServiceError`].
pub fn run(action: Action, workdir: &Path) -> Result<String, ServiceError> {
    let systemctl = |args: &[&str]| systemctl(args, workdir);
    let path = unit_dir().join(UNIT_NAME);
    match action {
        Action::Install => {
            let text = unit_text(workdir)?;
            write_atomic(&path, text.as_bytes())?;
            systemctl(&["daemon-reload"])?;
            systemctl(&["enable", "--now", UNIT_NAME])?;
            Ok(format!(
                "installed {} (work dir {}), enabled and started it",
                path.display(),
                workdir.display()
            ))
        }
        Action::Uninstall => {
            if !path.exists() {
                return Err(ServiceError::NotInstalled(path));
            }
            systemctl(&["disable", "--now", UNIT_NAME])?;
            std::fs::remove_file(&path).map_err(|source| ServiceError::Io {
                path: path.clone(),
                source,
            })?;
            systemctl(&["daemon-reload"])?;
            Ok(format!(
                "stopped, disabled and removed {}; config and data in {} are kept",
                path.display(),
                workdir.display()
            ))
        }
        Action::Start => systemctl(&["start", UNIT_NAME]).map(|()| "started datakit".into()),
        Action::Stop => systemctl(&["stop", UNIT_NAME]).map(|()| "stopped datakit".into()),
        Action::Restart => systemctl(&["restart", UNIT_NAME]).map(|()| "restarted datakit".into()),
    }
}

/// Writes `bytes` to `path` through a temp file and a rename, mode 0644.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ServiceError> {
    use std::io::Write as _;
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| ServiceError::Io { path: p, source }
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let tmp = path.with_extension("service.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    drop(f);
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

fn systemctl(args: &[&str], workdir: &Path) -> Result<(), ServiceError> {
    let out = match Command::new("systemctl").args(args).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ServiceError::NoSystemctl {
                workdir: workdir.display().to_string(),
            });
        }
        Err(e) => {
            return Err(ServiceError::Systemctl {
                args: args.join(" "),
                status: "not started".into(),
                stderr: e.to_string(),
            });
        }
    };
    if out.status.success() {
        return Ok(());
    }
    let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if stderr.contains("not been booted with systemd")
        || stderr.contains("Failed to connect to bus")
    {
        stderr.push_str(
            "; systemd is not running here: run `datakit run` under your service manager instead",
        );
    }
    Err(ServiceError::Systemctl {
        args: args.join(" "),
        status: out.status.to_string(),
        stderr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_runs_the_binary_of_the_install_dir_it_names() {
        let text = unit_text(Path::new("/opt/dk/")).unwrap();
        assert!(text.contains("ExecStart=/opt/dk/datakit run --workdir /opt/dk\n"));
        assert!(text.contains("ExecStartPre=/opt/dk/datakit check --config --workdir /opt/dk\n"));
        assert!(text.contains("ReadWritePaths=/opt/dk\n"));
        assert!(!text.contains(DEFAULT_WORKDIR), "{text}");
    }

    #[test]
    fn the_default_install_dir_gives_the_packaged_unit_unchanged() {
        assert_eq!(
            unit_text(Path::new(DEFAULT_WORKDIR)).unwrap(),
            UNIT_TEMPLATE
        );
    }

    #[test]
    fn refuses_install_dirs_systemd_would_split_or_expand() {
        for bad in ["/opt/my dk", "/opt/%h", "relative/dk", "/opt/a\"b"] {
            assert!(
                matches!(unit_text(Path::new(bad)), Err(ServiceError::BadWorkdir(_))),
                "{bad}"
            );
        }
    }
}
