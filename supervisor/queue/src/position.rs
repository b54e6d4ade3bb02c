//! Consumer position files (`<dir>/<consumer>.pos`), written atomically: tmp file, fsync, rename.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 4] = b"DKQP";
const LEN: usize = 16;

/// File name of a consumer's position; bytes outside `[A-Za-z0-9_-]` are percent-encoded so any
/// consumer name is a safe, unique file name.
pub(crate) fn file_name(consumer: &str) -> String {
    let mut s = String::with_capacity(consumer.len() + 4);
    for b in consumer.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s.push_str(".pos");
    s
}

/// Path of a consumer's position file.
pub(crate) fn path(dir: &Path, consumer: &str) -> PathBuf {
    dir.join(file_name(consumer))
}

fn encode(seq: u64) -> [u8; LEN] {
    let mut b = [0u8; LEN];
    b[..4].copy_from_slice(MAGIC);
    b[4..12].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32fast::hash(&b[..12]);
    b[12..].copy_from_slice(&crc.to_le_bytes());
    b
}

fn decode(b: &[u8]) -> Option<u64> {
    if b.len() != LEN || &b[..4] != MAGIC {
        return None;
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&b[12..]);
    if crc32fast::hash(&b[..12]) != u32::from_le_bytes(crc) {
        return None;
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&b[4..12]);
    Some(u64::from_le_bytes(seq))
}

/// Reads a position: `Ok(None)` when the file does not exist, `InvalidData` when it is damaged.
pub(crate) fn load(path: &Path) -> io::Result<Option<u64>> {
    match fs::read(path) {
        Ok(b) => decode(&b)
            .map(Some)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "damaged position file")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes a position atomically (the caller fsyncs the directory to make the rename durable).
pub(crate) fn store(path: &Path, seq: u64) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    f.write_all(&encode(seq))?;
    debug_fsync_pause();
    f.sync_data()?;
    drop(f);
    fs::rename(&tmp, path)
}

/// Fsyncs a directory so that the names created, renamed or removed in it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    let d = File::open(dir)?;
    debug_fsync_pause();
    d.sync_all()
}

/// Debug knob `DK_DEBUG_FSYNC_DELAY_MS=N` (read once): every queue fsync first sleeps N ms, to
/// show that a slow disk never stalls the async threads. Only ever called on the queue's own
/// threads (the writer thread, blocking tasks).
pub(crate) fn debug_fsync_pause() {
    static DELAY: std::sync::OnceLock<Option<std::time::Duration>> = std::sync::OnceLock::new();
    let delay = DELAY.get_or_init(|| {
        let ms = std::env::var("DK_DEBUG_FSYNC_DELAY_MS")
            .ok()?
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|ms| *ms > 0)?;
        tracing::warn!(
            ms,
            "DK_DEBUG_FSYNC_DELAY_MS is set: every queue fsync is delayed (debug only)."
        );
        Some(std::time::Duration::from_millis(ms))
    });
    if let Some(d) = delay {
        std::thread::sleep(*d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_names_become_safe_distinct_file_names() {
        assert_eq!(file_name("dataway"), "dataway.pos");
        assert_eq!(file_name("sink-1_a"), "sink-1_a.pos");
        assert_eq!(file_name("../x"), "%2E%2E%2Fx.pos");
        assert_eq!(file_name("a.b"), "a%2Eb.pos");
        assert_ne!(file_name("a%2Eb"), file_name("a.b"));
    }

    #[test]
    fn stored_position_loads_back_and_damage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), "c");
        assert_eq!(load(&p).unwrap(), None);
        store(&p, 12345).unwrap();
        assert_eq!(load(&p).unwrap(), Some(12345));
        store(&p, 7).unwrap();
        assert_eq!(load(&p).unwrap(), Some(7));
        let mut b = fs::read(&p).unwrap();
        b[5] ^= 1;
        fs::write(&p, &b).unwrap();
        assert_eq!(load(&p).unwrap_err().kind(), io::ErrorKind::InvalidData);
        fs::write(&p, b"short").unwrap();
        assert_eq!(load(&p).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }
}
