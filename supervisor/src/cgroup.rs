//! `[resource_limit] cpu_cores`: the agent (supervisor and, by inheritance, every worker) in a
//! cgroup whose CPU quota is that many cores, as Datakit does in host mode. cgroup v2
//! (`cpu.max`) where the unified hierarchy has the cpu controller, else v1
//! (`cpu.cfs_quota_us`). Memory is capped per worker instead (see `limits`).

use std::io;
use std::path::{Path, PathBuf};

/// The CFS period used for the quota (the kernel's default).
const PERIOD_US: u64 = 100_000;

/// What [`apply_cpu_limit`] did.
#[derive(Debug, PartialEq)]
pub enum CpuLimit {
    /// No cgroup: the limit would not bind (at least as many cores as the host has) or is 0.
    NotNeeded,
    /// The agent now runs in this cgroup directory with `quota_us` per [`PERIOD_US`].
    Applied {
        /// The cgroup directory.
        dir: PathBuf,
        /// 1 or 2.
        version: u8,
        /// CPU time per period, in µs.
        quota_us: u64,
    },
}

/// Why the limit could not be applied (the agent runs on without it).
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// Neither a v2 hierarchy with the cpu controller nor a v1 cpu hierarchy is mounted.
    #[error("no cgroup cpu controller under {0} (cgroup v2 with cpu, or v1 cpu)")]
    NoController(PathBuf),
    /// A cgroup file could not be written (usually: not running as root).
    #[error("cannot {what} {}: {source}; run the agent as root or set [resource_limit] enable = false", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CgroupError {
    let path = path.to_path_buf();
    move |source| CgroupError::Io { what, path, source }
}

/// Puts process `pid` into the cgroup `path` (relative to the hierarchy root, `/datakit` by
/// default) under `root` (`/sys/fs/cgroup`) with a quota of `cores` CPUs; nothing when
/// `cores` is 0 or at least `host_cpus`.
///
/// # Errors
/// [`CgroupError`] when there is no cpu controller or a file cannot be written.
pub fn apply_cpu_limit(
    root: &Path,
    path: &str,
    cores: f64,
    host_cpus: usize,
    pid: u32,
) -> Result<CpuLimit, CgroupError> {
    if cores <= 0.0 || cores >= host_cpus as f64 {
        return Ok(CpuLimit::NotNeeded);
    }
    // At least 1 ms per period, as the kernel requires.
    let quota_us = ((cores * PERIOD_US as f64).round() as u64).max(1000);
    let rel = path.trim_start_matches('/');
    let v2_controllers = std::fs::read_to_string(root.join("cgroup.controllers")).ok();
    let (dir, version) = if v2_controllers
        .as_deref()
        .is_some_and(|c| c.split_whitespace().any(|x| x == "cpu"))
    {
        (root.join(rel), 2)
    } else if root.join("cpu").is_dir() {
        (root.join("cpu").join(rel), 1)
    } else {
        return Err(CgroupError::NoController(root.to_path_buf()));
    };
    std::fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
    if version == 2 {
        // cpu.max exists in a child only when every ancestor delegates the cpu controller.
        let mut ancestor = root.to_path_buf();
        for part in Path::new(rel)
            .parent()
            .into_iter()
            .flat_map(Path::components)
        {
            enable_cpu(&ancestor)?;
            ancestor.push(part);
        }
        enable_cpu(&ancestor)?;
        let file = dir.join("cpu.max");
        std::fs::write(&file, format!("{quota_us} {PERIOD_US}")).map_err(io_err("write", &file))?;
    } else {
        let period = dir.join("cpu.cfs_period_us");
        std::fs::write(&period, PERIOD_US.to_string()).map_err(io_err("write", &period))?;
        let quota = dir.join("cpu.cfs_quota_us");
        std::fs::write(&quota, quota_us.to_string()).map_err(io_err("write", &quota))?;
    }
    let procs = dir.join("cgroup.procs");
    std::fs::write(&procs, pid.to_string()).map_err(io_err("join", &procs))?;
    Ok(CpuLimit::Applied {
        dir,
        version,
        quota_us,
    })
}

fn enable_cpu(dir: &Path) -> Result<(), CgroupError> {
    let file = dir.join("cgroup.subtree_control");
    let on = std::fs::read_to_string(&file).is_ok_and(|c| c.split_whitespace().any(|x| x == "cpu"));
    if on {
        return Ok(());
    }
    std::fs::write(&file, "+cpu").map_err(io_err("enable the cpu controller in", &file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_that_would_not_bind_creates_no_cgroup() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("cpu")).unwrap();
        for cores in [0.0, 2.0, 8.0] {
            assert_eq!(
                apply_cpu_limit(root.path(), "/datakit", cores, 2, 1).unwrap(),
                CpuLimit::NotNeeded
            );
        }
        assert!(!root.path().join("cpu/datakit").exists());
    }

    #[test]
    fn cgroup_v2_gets_cpu_max_and_the_pid() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(
            root.path().join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        let got = apply_cpu_limit(root.path(), "/datakit", 1.5, 4, 4242).unwrap();
        let dir = root.path().join("datakit");
        assert_eq!(
            got,
            CpuLimit::Applied {
                dir: dir.clone(),
                version: 2,
                quota_us: 150_000
            }
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("cpu.max")).unwrap(),
            "150000 100000"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("cgroup.procs")).unwrap(),
            "4242"
        );
    }

    #[test]
    fn cgroup_v1_gets_a_cfs_quota_and_the_pid() {
        let root = tempfile::tempdir().unwrap();
        // A unified hierarchy without the cpu controller (hybrid mode) means v1.
        std::fs::write(root.path().join("cgroup.controllers"), "hugetlb\n").unwrap();
        std::fs::create_dir(root.path().join("cpu")).unwrap();
        let got = apply_cpu_limit(root.path(), "agents/datakit", 0.25, 2, 7).unwrap();
        let dir = root.path().join("cpu/agents/datakit");
        assert!(matches!(
            got,
            CpuLimit::Applied {
                version: 1,
                quota_us: 25_000,
                ..
            }
        ));
        assert_eq!(
            std::fs::read_to_string(dir.join("cpu.cfs_quota_us")).unwrap(),
            "25000"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("cpu.cfs_period_us")).unwrap(),
            "100000"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("cgroup.procs")).unwrap(),
            "7"
        );
    }

    #[test]
    fn no_controller_is_an_error_naming_the_root() {
        let root = tempfile::tempdir().unwrap();
        let err = apply_cpu_limit(root.path(), "/datakit", 0.5, 2, 1).unwrap_err();
        assert!(
            err.to_string().contains("no cgroup cpu controller"),
            "{err}"
        );
    }
}
