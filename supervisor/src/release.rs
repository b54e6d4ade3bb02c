//! Release artefacts: ed25519 key pairs, detached signatures, sha256 sums and the `version`
//! file an install base serves. Used by `datakit tool --keygen|--sign`, `scripts/package.sh`
//! and the upgrader, so every side agrees on one format:
//!
//! - key pair (`datakit tool --keygen DIR`): `DIR/datakit.key` holds the 32-byte ed25519 seed,
//!   `DIR/datakit.pub` the 32-byte public key, each as one line of standard base64; the public
//!   line is what `[dk_upgrader] public_keys` lists;
//! - signature (`FILE.sig`): one line, the standard-base64 64-byte ed25519 signature of the
//!   file's bytes;
//! - `version` file (JSON): `{"version","commit","tarball","sha256"}`, where `tarball` is the
//!   file name next to it (`datakit-linux-<arch>-<version>.tar.gz`) and `sha256` its hex digest.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

/// File name of the private key written by [`keygen`].
pub const PRIVATE_KEY_FILE: &str = "datakit.key";
/// File name of the public key written by [`keygen`].
pub const PUBLIC_KEY_FILE: &str = "datakit.pub";

/// What went wrong with keys, signatures or release files.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A key, signature or version file is not in the expected form.
    #[error("{0}")]
    Format(String),
    /// The signature does not match any configured public key.
    #[error("{0}")]
    BadSignature(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReleaseError + '_ {
    move |source| ReleaseError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The `version` file an install base serves next to the tarball.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionFile {
    /// `X.Y.Z`.
    pub version: String,
    /// The build id of the binary inside.
    pub commit: String,
    /// The tarball's file name, next to the version file.
    pub tarball: String,
    /// Hex sha256 of the tarball.
    pub sha256: String,
}

/// The release tarball's name for this OS/arch and `version`.
pub fn tarball_name(version: &str) -> String {
    format!(
        "datakit-{}-{}-{version}.tar.gz",
        std::env::consts::OS,
        go_arch()
    )
}

/// The architecture as Datakit (Go) names it.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes a new key pair into `dir` (created if missing); the private key is mode 0600.
/// Returns the public key line.
///
/// # Errors
/// I/O errors, or no randomness from the OS.
pub fn keygen(dir: &Path) -> Result<String, ReleaseError> {
    use ring::rand::SecureRandom as _;
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut seed = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut seed)
        .map_err(|_| ReleaseError::Format("the OS gave no randomness for a key".into()))?;
    let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
        .map_err(|e| ReleaseError::Format(format!("cannot make a key pair: {e}")))?;
    let public = B64.encode(pair.public_key().as_ref());
    let key_path = dir.join(PRIVATE_KEY_FILE);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key_path)
        .map_err(io(&key_path))?;
    f.write_all(format!("{}\n", B64.encode(seed)).as_bytes())
        .map_err(io(&key_path))?;
    let pub_path = dir.join(PUBLIC_KEY_FILE);
    std::fs::write(&pub_path, format!("{public}\n")).map_err(io(&pub_path))?;
    Ok(public)
}

fn decode_32(text: &str, what: &str) -> Result<[u8; 32], ReleaseError> {
    let bytes = B64
        .decode(text.trim())
        .map_err(|e| ReleaseError::Format(format!("{what} is not base64: {e}")))?;
    bytes
        .try_into()
        .map_err(|_| ReleaseError::Format(format!("{what} is not 32 bytes")))
}

/// Signs `bytes` with the private key file `key` (as written by [`keygen`]); the `.sig` line.
///
/// # Errors
/// The key cannot be read or is malformed.
pub fn sign(bytes: &[u8], key: &Path) -> Result<String, ReleaseError> {
    let text = std::fs::read_to_string(key).map_err(io(key))?;
    let seed = decode_32(&text, &format!("private key {}", key.display()))?;
    let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
        .map_err(|e| ReleaseError::Format(format!("private key {}: {e}", key.display())))?;
    Ok(B64.encode(pair.sign(bytes).as_ref()))
}

/// Checks that `signature` (a `.sig` line) signs `bytes` under one of `public_keys`
/// (base64 lines); the index of the key that matched.
///
/// # Errors
/// A malformed signature or key, no key configured, or no key that verifies.
pub fn verify(
    bytes: &[u8],
    signature: &str,
    public_keys: &[String],
) -> Result<usize, ReleaseError> {
    if public_keys.is_empty() {
        return Err(ReleaseError::BadSignature(
            "no public key is configured: set [dk_upgrader] public_keys".into(),
        ));
    }
    let sig = B64
        .decode(signature.trim())
        .map_err(|e| ReleaseError::BadSignature(format!("the signature is not base64: {e}")))?;
    for (i, k) in public_keys.iter().enumerate() {
        let key = decode_32(k, &format!("[dk_upgrader] public_keys[{i}]"))?;
        if UnparsedPublicKey::new(&ED25519, key)
            .verify(bytes, &sig)
            .is_ok()
        {
            return Ok(i);
        }
    }
    Err(ReleaseError::BadSignature(
        "the signature matches none of [dk_upgrader] public_keys".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_under_its_key_and_not_after_one_byte_changes() {
        let dir = tempfile::tempdir().unwrap();
        let public = keygen(dir.path()).unwrap();
        let data = b"the release tarball".to_vec();
        let sig = sign(&data, &dir.path().join(PRIVATE_KEY_FILE)).unwrap();
        assert_eq!(
            verify(&data, &sig, std::slice::from_ref(&public)).unwrap(),
            0
        );
        let mut tampered = data.clone();
        tampered[0] ^= 1;
        assert!(matches!(
            verify(&tampered, &sig, std::slice::from_ref(&public)),
            Err(ReleaseError::BadSignature(_))
        ));
        let other = tempfile::tempdir().unwrap();
        let wrong = keygen(other.path()).unwrap();
        assert!(verify(&data, &sig, std::slice::from_ref(&wrong)).is_err());
        assert_eq!(verify(&data, &sig, &[wrong, public]).unwrap(), 1);
        assert!(verify(&data, &sig, &[]).is_err());
    }

    #[test]
    fn the_private_key_is_only_readable_by_its_owner_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        keygen(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(PRIVATE_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(keygen(dir.path()).is_err());
    }

    #[test]
    fn sha256_matches_the_known_digest() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
