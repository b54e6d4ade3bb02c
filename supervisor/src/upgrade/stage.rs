//! Fetching a release (`<base>/version`, the tarball and its `.sig`, over HTTP(S) or from a
//! local directory), verifying it (sha256 from the version file and an ed25519 signature)
//! before anything is written, staging the binary next to the running one and swapping it in.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{UpgradeError, compare_versions, prev_path};
use crate::release::{self, VersionFile};

/// Largest tarball accepted.
const MAX_TARBALL: usize = 512 << 20;
/// Largest `version` / `.sig` file accepted.
const MAX_SMALL: usize = 64 << 10;

/// Where releases come from: an `http(s)://` base URL, a `file://` URL or a directory.
pub struct Source {
    base: String,
    client: Option<reqwest::Client>,
}

impl Source {
    /// A source for `base`; `proxy` is used for HTTP(S) bases.
    ///
    /// # Errors
    /// An invalid proxy.
    pub fn new(base: &str, proxy: &str) -> Result<Source, UpgradeError> {
        let base = base.trim().trim_end_matches('/').to_string();
        if base.is_empty() {
            return Err(UpgradeError::Verify(
                "no install base: set [dk_upgrader] install_base_url".into(),
            ));
        }
        let client = if base.starts_with("http://") || base.starts_with("https://") {
            let opts = dk_sinks::http::ClientOptions {
                timeout: Duration::from_secs(300),
                proxy: (!proxy.trim().is_empty()).then(|| proxy.trim().to_string()),
                tls_insecure: false,
                max_idle_per_host: 2,
                idle_timeout: Duration::from_secs(30),
                default_headers: reqwest::header::HeaderMap::new(),
            };
            Some(
                dk_sinks::http::build_client(&opts).map_err(|e| UpgradeError::Fetch {
                    what: base.clone(),
                    reason: format!("[dk_upgrader] proxy: {e}"),
                })?,
            )
        } else {
            None
        };
        Ok(Source { base, client })
    }

    /// `<base>/<name>`, at most `limit` bytes.
    async fn get(&self, name: &str, limit: usize) -> Result<Vec<u8>, UpgradeError> {
        let what = format!("{}/{name}", self.base);
        let fail = |reason: String| UpgradeError::Fetch {
            what: what.clone(),
            reason,
        };
        if let Some(client) = &self.client {
            let resp = client
                .get(&what)
                .send()
                .await
                .map_err(|e| fail(e.to_string()))?;
            if !resp.status().is_success() {
                return Err(fail(format!("the server answered {}", resp.status())));
            }
            if resp.content_length().is_some_and(|n| n > limit as u64) {
                return Err(fail(format!("larger than {limit} bytes")));
            }
            let body = resp.bytes().await.map_err(|e| fail(e.to_string()))?;
            if body.len() > limit {
                return Err(fail(format!("larger than {limit} bytes")));
            }
            Ok(body.to_vec())
        } else {
            let dir = self.base.strip_prefix("file://").unwrap_or(&self.base);
            let path = Path::new(dir).join(name);
            let bytes = tokio::fs::read(&path)
                .await
                .map_err(|e| fail(e.to_string()))?;
            if bytes.len() > limit {
                return Err(fail(format!("larger than {limit} bytes")));
            }
            Ok(bytes)
        }
    }
}

/// A verified release, not yet written anywhere.
pub struct Release {
    /// Its version.
    pub version: String,
    /// The `datakit` binary from the tarball.
    pub binary: Vec<u8>,
}

/// What the running binary is.
pub struct Running<'a> {
    /// `dk_proto::version()`.
    pub version: &'a str,
    /// `dk_proto::build_id()`.
    pub commit: &'a str,
}

/// Fetches and verifies a release: `requested` (else the version file's), refusing the
/// running version (up to date) and older ones unless `force`.
///
/// # Errors
/// [`UpgradeError`]; nothing is written.
pub async fn fetch(
    source: &Source,
    public_keys: &[String],
    running: &Running<'_>,
    requested: Option<&str>,
    force: bool,
) -> Result<Release, UpgradeError> {
    let version_file = match requested {
        Some(_) => None,
        None => {
            let bytes = source.get("version", MAX_SMALL).await?;
            let vf: VersionFile = serde_json::from_slice(&bytes).map_err(|e| {
                UpgradeError::Verify(format!(
                    "{}/version is not a version file ({e})",
                    source.base
                ))
            })?;
            Some(vf)
        }
    };
    let version = requested
        .map(str::to_string)
        .or_else(|| version_file.as_ref().map(|v| v.version.clone()))
        .unwrap_or_default();
    if version.is_empty()
        || !version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
    {
        return Err(UpgradeError::Verify(format!(
            "{version:?} is not a version (X.Y.Z)"
        )));
    }
    if !force {
        let same_commit = version_file
            .as_ref()
            .is_none_or(|v| v.commit.is_empty() || v.commit == running.commit);
        match compare_versions(&version, running.version) {
            std::cmp::Ordering::Equal if same_commit => {
                return Err(UpgradeError::UpToDate(version));
            }
            std::cmp::Ordering::Less => {
                return Err(UpgradeError::Downgrade {
                    from: running.version.to_string(),
                    to: version,
                });
            }
            _ => {}
        }
    }
    let tarball_name = release::tarball_name(&version);
    if let Some(vf) = &version_file
        && vf.tarball != tarball_name
    {
        return Err(UpgradeError::Verify(format!(
            "the version file names the tarball {:?}, expected {tarball_name:?} for this OS and architecture",
            vf.tarball
        )));
    }
    let tarball = source.get(&tarball_name, MAX_TARBALL).await?;
    let sig_name = format!("{tarball_name}.sig");
    let signature = match source.get(&sig_name, MAX_SMALL).await {
        Ok(s) => s,
        Err(e) => {
            return Err(UpgradeError::Verify(format!(
                "the signature is missing ({e}): releases must be signed (datakit tool --sign)"
            )));
        }
    };
    verify(&tarball, &signature, version_file.as_ref(), public_keys)?;
    let binary = tokio::task::spawn_blocking(move || extract_binary(&tarball))
        .await
        .map_err(|e| UpgradeError::Verify(format!("unpacking the tarball: {e}")))??;
    Ok(Release { version, binary })
}

/// sha256 (when a version file says it) and the signature of the tarball.
///
/// # Errors
/// [`UpgradeError::Verify`] saying which check failed.
pub fn verify(
    tarball: &[u8],
    signature: &[u8],
    version_file: Option<&VersionFile>,
    public_keys: &[String],
) -> Result<(), UpgradeError> {
    if let Some(vf) = version_file {
        let actual = release::sha256_hex(tarball);
        if !actual.eq_ignore_ascii_case(vf.sha256.trim()) {
            return Err(UpgradeError::Verify(format!(
                "the tarball's sha256 is {actual}, the version file says {}",
                vf.sha256
            )));
        }
    }
    let sig = std::str::from_utf8(signature)
        .map_err(|_| UpgradeError::Verify("the signature file is not text".into()))?;
    release::verify(tarball, sig, public_keys)
        .map_err(|e| UpgradeError::Verify(format!("signature check failed: {e}")))?;
    Ok(())
}

/// The `datakit` file at the root of a `.tar.gz` (ustar; `./datakit` counts too).
///
/// # Errors
/// Not gzip, not tar, or no `datakit` inside.
pub fn extract_binary(tarball: &[u8]) -> Result<Vec<u8>, UpgradeError> {
    let bad = |m: String| UpgradeError::Verify(format!("the tarball {m}"));
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(tarball)
        .take((MAX_TARBALL as u64) * 4)
        .read_to_end(&mut tar)
        .map_err(|e| bad(format!("is not gzip: {e}")))?;
    let mut at = 0usize;
    let mut long_name: Option<String> = None;
    while at + 512 <= tar.len() {
        let header = &tar[at..at + 512];
        if header.iter().all(|b| *b == 0) {
            break;
        }
        let field = |from: usize, len: usize| {
            let f = &header[from..from + len];
            let end = f.iter().position(|b| *b == 0).unwrap_or(len);
            String::from_utf8_lossy(&f[..end]).into_owned()
        };
        let size_text = field(124, 12);
        let size = usize::from_str_radix(size_text.trim(), 8)
            .map_err(|_| bad(format!("has a bad entry size {size_text:?}")))?;
        let kind = header[156];
        let data_at = at + 512;
        let data_end = data_at
            .checked_add(size)
            .filter(|e| *e <= tar.len())
            .ok_or_else(|| bad("is truncated".into()))?;
        let mut name = long_name.take().unwrap_or_else(|| {
            let prefix = field(345, 155);
            let name = field(0, 100);
            if prefix.is_empty() || &header[257..262] != b"ustar" {
                name
            } else {
                format!("{prefix}/{name}")
            }
        });
        if kind == b'L' {
            long_name = Some(
                String::from_utf8_lossy(&tar[data_at..data_end])
                    .trim_end_matches('\0')
                    .to_string(),
            );
        } else {
            if let Some(stripped) = name.strip_prefix("./") {
                name = stripped.to_string();
            }
            if (kind == b'0' || kind == 0) && name == "datakit" {
                return Ok(tar[data_at..data_end].to_vec());
            }
        }
        at = data_end.div_ceil(512) * 512;
    }
    Err(bad("has no `datakit` binary at its root".into()))
}

/// Writes `binary` as `<dir of exe>/datakit.new` (0755, synced), checks that it runs and reports
/// `version`, then swaps it over `exe`, keeping the running one as `<exe>.prev`.
///
/// # Errors
/// [`UpgradeError::Stage`]; on failure before the rename the running binary is untouched.
pub fn stage_and_swap(exe: &Path, binary: &[u8], version: &str) -> Result<(), UpgradeError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = exe.parent().unwrap_or(Path::new("."));
    let staged = dir.join("datakit.new");
    let fail = |path: &Path, reason: String| UpgradeError::Stage {
        path: path.to_path_buf(),
        reason,
    };
    let _ = std::fs::remove_file(&staged);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .open(&staged)
        .map_err(|e| fail(&staged, format!("cannot create the staged binary: {e}")))?;
    f.write_all(binary)
        .and_then(|()| f.sync_all())
        .map_err(|e| fail(&staged, format!("cannot write the staged binary: {e}")))?;
    drop(f);
    let said = std::process::Command::new(&staged)
        .arg("version")
        .output()
        .map_err(|e| fail(&staged, format!("the new binary does not run: {e}")));
    let said = match said {
        Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
        Err(e) => {
            let _ = std::fs::remove_file(&staged);
            return Err(e);
        }
    };
    if !said.starts_with(&format!("datakit {version} ")) {
        let _ = std::fs::remove_file(&staged);
        return Err(UpgradeError::Verify(format!(
            "the binary in the tarball reports {:?}, expected version {version}",
            said.trim()
        )));
    }
    swap_in(exe, &staged)
}

/// Keeps `exe` as `<exe>.prev` (a hard link, else a copy) and renames `staged` over `exe`.
///
/// # Errors
/// [`UpgradeError::Stage`].
pub fn swap_in(exe: &Path, staged: &Path) -> Result<(), UpgradeError> {
    let prev = prev_path(exe);
    let fail = |path: &Path, reason: String| UpgradeError::Stage {
        path: path.to_path_buf(),
        reason,
    };
    let _ = std::fs::remove_file(&prev);
    if std::fs::hard_link(exe, &prev).is_err() {
        std::fs::copy(exe, &prev)
            .map_err(|e| fail(&prev, format!("cannot keep the running binary: {e}")))?;
    }
    std::fs::rename(staged, exe)
        .map_err(|e| fail(exe, format!("cannot swap the new binary in: {e}")))?;
    sync_dir(exe);
    Ok(())
}

/// Puts `<exe>.prev` back over `exe` (manual or automatic rollback).
///
/// # Errors
/// [`UpgradeError::Stage`] when there is no previous binary or the rename fails.
pub fn restore_prev(exe: &Path) -> Result<(), UpgradeError> {
    let prev = prev_path(exe);
    if !prev.exists() {
        return Err(UpgradeError::Stage {
            path: prev,
            reason: "there is no previous binary to roll back to".into(),
        });
    }
    std::fs::rename(&prev, exe).map_err(|e| UpgradeError::Stage {
        path: exe.to_path_buf(),
        reason: format!("cannot put the previous binary back: {e}"),
    })?;
    sync_dir(exe);
    Ok(())
}

fn sync_dir(file: &Path) {
    if let Some(dir) = file.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
}

/// The path of the running binary, as it was when we started (it may be swapped later).
pub fn exe_path() -> Option<PathBuf> {
    static EXE: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    EXE.get_or_init(|| std::env::current_exe().ok()).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        for (name, data) in entries {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        }
        let out = dir.path().join("t.tar.gz");
        let names: Vec<&str> = entries.iter().map(|(n, _)| *n).collect();
        let st = std::process::Command::new("tar")
            .arg("czf")
            .arg(&out)
            .arg("-C")
            .arg(dir.path())
            .args(&names)
            .status()
            .unwrap();
        assert!(st.success());
        std::fs::read(out).unwrap()
    }

    #[test]
    fn finds_the_binary_at_the_root_of_a_tarball_made_by_tar() {
        let t = tar_gz(&[("conf.d/x.conf", b"x = 1"), ("datakit", b"ELF-bytes")]);
        assert_eq!(extract_binary(&t).unwrap(), b"ELF-bytes");
        let none = tar_gz(&[("conf.d/datakit", b"nope")]);
        assert!(extract_binary(&none).is_err());
        assert!(extract_binary(b"not gzip").is_err());
    }

    #[test]
    fn a_tarball_whose_sha256_or_signature_does_not_match_is_refused() {
        let keys = tempfile::tempdir().unwrap();
        let public = release::keygen(keys.path()).unwrap();
        let tarball = b"tarball".to_vec();
        let sig = release::sign(&tarball, &keys.path().join(release::PRIVATE_KEY_FILE)).unwrap();
        let vf = VersionFile {
            version: "9.9.9".into(),
            commit: String::new(),
            tarball: "t".into(),
            sha256: release::sha256_hex(&tarball),
        };
        let keys_ok = std::slice::from_ref(&public);
        verify(&tarball, sig.as_bytes(), Some(&vf), keys_ok).unwrap();
        let mut tampered = tarball;
        tampered[0] ^= 1;
        let e = verify(&tampered, sig.as_bytes(), Some(&vf), keys_ok).unwrap_err();
        assert!(e.to_string().contains("sha256"), "{e}");
        let e = verify(&tampered, sig.as_bytes(), None, keys_ok).unwrap_err();
        assert!(e.to_string().contains("signature"), "{e}");
    }

    #[test]
    fn a_swap_keeps_the_previous_binary_and_a_rollback_restores_it() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("datakit");
        std::fs::write(&exe, b"A").unwrap();
        let staged = dir.path().join("datakit.new");
        std::fs::write(&staged, b"B").unwrap();
        swap_in(&exe, &staged).unwrap();
        assert_eq!(std::fs::read(&exe).unwrap(), b"B");
        assert_eq!(std::fs::read(prev_path(&exe)).unwrap(), b"A");
        restore_prev(&exe).unwrap();
        assert_eq!(std::fs::read(&exe).unwrap(), b"A");
        assert!(restore_prev(&exe).is_err());
    }
}
