//! Remote upgrade (`[dk_upgrader]`, port 9542): fetch a signed release, verify it, stage it
//! next to the running binary, swap it in atomically, then exec the new binary in place with
//! every listening socket inherited ([`handover`]); a watchdog rolls back a new binary that
//! does not become healthy in time.
//!
//! Decisions are in `docs/adr/0006-upgrade.md`.

pub mod cli;
pub mod handover;
pub mod server;
pub mod stage;

use std::path::{Path, PathBuf};

/// Why an upgrade was refused or failed; nothing on disk changed unless it is [`UpgradeError::Stage`].
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// The running version is the one offered.
    #[error("datakit {0} is already running")]
    UpToDate(String),
    /// The offered version is older and `force` was not given.
    #[error(
        "refusing to downgrade from {from} to {to}: add force=1 (or --force) to install an older version"
    )]
    Downgrade {
        /// Running.
        from: String,
        /// Offered.
        to: String,
    },
    /// A release file could not be fetched.
    #[error("cannot fetch {what}: {reason}")]
    Fetch {
        /// The URL or path.
        what: String,
        /// Why.
        reason: String,
    },
    /// The release is not what the version file, the signature or the tarball layout says.
    #[error("{0}; nothing was changed")]
    Verify(String),
    /// Writing the staged binary or swapping it in failed.
    #[error("{path}: {reason}")]
    Stage {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Compares `X.Y.Z[-suffix]` versions numerically (missing parts are 0; a suffix is ignored).
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    let parts = |v: &str| -> Vec<u64> {
        v.trim()
            .trim_start_matches('v')
            .split(['-', '+'])
            .next()
            .unwrap_or("")
            .split('.')
            .map(|p| p.parse().unwrap_or(0))
            .collect()
    };
    let (pa, pb) = (parts(a), parts(b));
    let n = pa.len().max(pb.len());
    (0..n)
        .map(|i| {
            pa.get(i)
                .copied()
                .unwrap_or(0)
                .cmp(&pb.get(i).copied().unwrap_or(0))
        })
        .find(|o| o.is_ne())
        .unwrap_or(std::cmp::Ordering::Equal)
}

/// Where the previous binary is kept after a swap: `<exe>.prev`.
pub fn prev_path(exe: &Path) -> PathBuf {
    let mut p = exe.as_os_str().to_owned();
    p.push(".prev");
    PathBuf::from(p)
}

/// The record a rollback leaves for the binary it restores: `<workdir>/data/upgrade-rollback.json`.
pub fn rollback_record_path(workdir: &Path) -> PathBuf {
    workdir.join("data").join("upgrade-rollback.json")
}

/// What a rollback writes for the restored binary to report (log, `/v1/lasterror`, `/metrics`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RollbackRecord {
    /// The version that failed.
    pub failed_version: String,
    /// The version restored.
    pub restored_version: String,
    /// Why.
    pub reason: String,
    /// Milliseconds from the exec of the new binary to the exec of the old one.
    pub rollback_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    #[test]
    fn versions_compare_by_number_not_by_text() {
        assert_eq!(compare_versions("1.10.0", "1.9.9"), Ordering::Greater);
        assert_eq!(compare_versions("1.84.1", "1.84.1"), Ordering::Equal);
        assert_eq!(compare_versions("1.84", "1.84.0"), Ordering::Equal);
        assert_eq!(compare_versions("1.84.0", "1.84.1-rc1"), Ordering::Less);
    }
}
