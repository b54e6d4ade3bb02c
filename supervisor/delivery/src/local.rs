//! The local-files sink: per-category line-protocol files, fsynced per batch and rotated by size.
//!
//! Layout: `<dir>/<category>/current.lp` receives batches (one point per line, each line ending
//! in `\n`); before a write would take it past `max_file_bytes` it is renamed to
//! `current.<unix-millis>.lp` (millis made strictly increasing per category) and at most
//! `max_files` rotated files are kept. Directories are created 0750, files 0640.

use crate::config::LocalSinkConfig;
use crate::error::SinkError;
use crate::metrics::CategoryLabels;
use crate::sink::{Sink, SinkInput};
use dk_proto::lineproto::encode_point;
use dk_proto::{Category, Point};
use futures::future::BoxFuture;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

const SINK_NAME: &str = "local";
const CURRENT: &str = "current.lp";
/// Bounds of the bytes one write carries (an eighth of `max_file_bytes` in between).
const MIN_WRITE_BYTES: u64 = 64 * 1024;
const MAX_WRITE_BYTES: u64 = 4 * 1024 * 1024;
/// Encode buffers larger than this are not kept for reuse.
const MAX_KEPT_BUFFER: usize = 8 * 1024 * 1024;

/// Writes batches to rotating line-protocol files under a data directory.
pub struct LocalFileSink {
    inner: Arc<LocalInner>,
}

struct LocalInner {
    cfg: LocalSinkConfig,
    /// One per category, in the order of [`Category::ALL`].
    files: Vec<Mutex<CatFile>>,
    /// Reusable encode buffers, one per category.
    buffers: Vec<Mutex<Vec<u8>>>,
    rotations: Family<CategoryLabels, Counter>,
    deleted: Family<CategoryLabels, Counter>,
}

#[derive(Default)]
struct CatFile {
    /// `current.lp`, open for appending once used.
    file: Option<File>,
    /// Its size in bytes.
    size: u64,
    /// The category directory exists and `last_rotated_ms` was read from it.
    prepared: bool,
    /// The largest millis suffix among rotated files.
    last_rotated_ms: u64,
    /// A rotation failed and was logged; the next failure is not logged again.
    rotate_failing: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn io_error(action: &'static str, path: &Path, source: std::io::Error) -> SinkError {
    SinkError::Io {
        sink: SINK_NAME.to_string(),
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn create_dir(dir: &Path) -> Result<(), SinkError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
        .map_err(|e| io_error("create directory", dir, e))
}

/// Makes renames and new files in `dir` durable (best effort: some file systems refuse it).
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The millis of a rotated file name `current.<millis>.lp`.
fn rotated_ms(name: &str) -> Option<u64> {
    name.strip_prefix("current.")?
        .strip_suffix(".lp")?
        .parse()
        .ok()
}

/// Rotated files of a category directory, oldest first.
fn rotated_files(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(ms) = entry.file_name().to_str().and_then(rotated_ms) {
            files.push((ms, entry.path()));
        }
    }
    files.sort_unstable();
    Ok(files)
}

/// The length of `file` up to and including its last `\n` (drops a torn last line).
fn complete_len(file: &mut File, len: u64) -> std::io::Result<u64> {
    let mut end = len;
    let mut chunk = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let n = usize::try_from(end - start).unwrap_or(chunk.len());
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk[..n])?;
        if let Some(pos) = chunk[..n].iter().rposition(|b| *b == b'\n') {
            return Ok(start + pos as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

impl LocalFileSink {
    /// Creates the data directory (0750) and checks that files can be created in it.
    ///
    /// # Errors
    /// [`SinkError::Io`] naming the directory when it cannot be created or written.
    pub fn new(cfg: LocalSinkConfig) -> Result<Self, SinkError> {
        create_dir(&cfg.dir)?;
        let probe = cfg.dir.join(".write-probe");
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o640)
            .open(&probe)
            .and_then(|mut f| f.write_all(b"probe"))
            .map_err(|e| io_error("create a file in", &cfg.dir, e))?;
        std::fs::remove_file(&probe).map_err(|e| io_error("remove", &probe, e))?;
        let n = Category::ALL.len();
        Ok(LocalFileSink {
            inner: Arc::new(LocalInner {
                cfg,
                files: (0..n).map(|_| Mutex::new(CatFile::default())).collect(),
                buffers: (0..n).map(|_| Mutex::new(Vec::new())).collect(),
                rotations: Family::default(),
                deleted: Family::default(),
            }),
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.cfg.dir
    }

    /// The file a category's batches are appended to: `<dir>/<category>/current.lp`.
    pub fn current_path(&self, category: Category) -> PathBuf {
        self.inner.cfg.dir.join(category.name()).join(CURRENT)
    }
}

fn category_index(category: Category) -> usize {
    Category::ALL
        .iter()
        .position(|c| *c == category)
        .unwrap_or_default()
}

impl LocalInner {
    /// The category's reusable encode buffer, emptied.
    fn take_buffer(&self, category: Category) -> Vec<u8> {
        let mut buf = std::mem::take(&mut *lock(&self.buffers[category_index(category)]));
        buf.clear();
        buf
    }

    /// Appends `data` (whole lines) to the category's file and syncs it, rotating first if needed.
    fn append(&self, category: Category, data: &[u8]) -> Result<(), SinkError> {
        let mut st = lock(&self.files[category_index(category)]);
        let dir = self.cfg.dir.join(category.name());
        let current = dir.join(CURRENT);
        if !st.prepared {
            create_dir(&dir)?;
            let rotated = rotated_files(&dir).map_err(|e| io_error("list", &dir, e))?;
            st.last_rotated_ms = rotated.last().map_or(0, |(ms, _)| *ms);
            st.prepared = true;
        }
        if st.file.is_none() {
            self.open(&mut st, &dir, &current)?;
        }
        if st.size > 0 && st.size.saturating_add(data.len() as u64) > self.cfg.max_file_bytes {
            match self.rotate(&mut st, category, &dir, &current) {
                Ok(()) => st.rotate_failing = false,
                Err(e) => {
                    if !st.rotate_failing {
                        tracing::warn!(error = %e, "local sink cannot rotate; appending to the current file");
                        st.rotate_failing = true;
                    }
                }
            }
            if st.file.is_none() {
                self.open(&mut st, &dir, &current)?;
            }
        }
        let start = st.size;
        let Some(file) = st.file.as_mut() else {
            return Err(io_error(
                "open",
                &current,
                std::io::Error::other("file not open"),
            ));
        };
        if let Err(e) = file.write_all(data).and_then(|()| file.sync_data()) {
            // Leave no partial batch behind: delivery retries the whole batch.
            let _ = file.set_len(start);
            st.file = None;
            return Err(io_error("append to", &current, e));
        }
        st.size = start + data.len() as u64;
        Ok(())
    }

    /// Opens `current.lp` for appending, dropping a torn last line left by a crash.
    fn open(&self, st: &mut CatFile, dir: &Path, current: &Path) -> Result<(), SinkError> {
        let existed = current.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o640)
            .open(current)
            .map_err(|e| io_error("open", current, e))?;
        let len = file
            .metadata()
            .map_err(|e| io_error("read the size of", current, e))?
            .len();
        let complete = complete_len(&mut file, len).map_err(|e| io_error("read", current, e))?;
        if complete < len {
            file.set_len(complete)
                .map_err(|e| io_error("truncate a torn line of", current, e))?;
            tracing::warn!(path = %current.display(), bytes = len - complete, "local sink dropped a torn last line");
        }
        if !existed {
            sync_dir(dir);
        }
        st.file = Some(file);
        st.size = complete;
        Ok(())
    }

    /// Renames `current.lp` to `current.<millis>.lp` and deletes the oldest rotated files.
    fn rotate(
        &self,
        st: &mut CatFile,
        category: Category,
        dir: &Path,
        current: &Path,
    ) -> Result<(), SinkError> {
        st.file = None;
        let ms = now_ms().max(st.last_rotated_ms + 1);
        let target = dir.join(format!("current.{ms}.lp"));
        std::fs::rename(current, &target).map_err(|e| io_error("rotate", current, e))?;
        st.last_rotated_ms = ms;
        st.size = 0;
        let label = CategoryLabels {
            category: category.name(),
        };
        self.rotations.get_or_create(&label).inc();
        let rotated = rotated_files(dir).map_err(|e| io_error("list", dir, e))?;
        let excess = rotated.len().saturating_sub(self.cfg.max_files);
        for (_, path) in rotated.into_iter().take(excess) {
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    self.deleted.get_or_create(&label).inc();
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "local sink cannot delete an old file");
                }
            }
        }
        sync_dir(dir);
        Ok(())
    }
}

impl Sink for LocalFileSink {
    fn name(&self) -> &str {
        SINK_NAME
    }

    fn write<'a>(
        &'a self,
        category: Category,
        points: &'a [Point],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            if points.is_empty() {
                return Ok(());
            }
            let mut buf = self.inner.take_buffer(category);
            for point in points {
                encode_point(point, &mut buf);
                buf.push(b'\n');
            }
            self.append_buffer(category, buf).await
        })
    }

    /// Lines. `max_cache_count` bounds uploads; here fewer, larger writes mean fewer fsyncs,
    /// and an eighth of the file size keeps rotated files nearly full.
    fn input(&self, _max_cache_count: usize) -> SinkInput {
        let bytes = (self.inner.cfg.max_file_bytes / 8).clamp(MIN_WRITE_BYTES, MAX_WRITE_BYTES);
        SinkInput::Lines {
            points: usize::MAX,
            bytes: usize::try_from(bytes).unwrap_or(usize::MAX),
        }
    }

    fn write_lines<'a>(
        &'a self,
        category: Category,
        lines: &'a [u8],
        points: usize,
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            if points == 0 {
                return Ok(());
            }
            let mut buf = self.inner.take_buffer(category);
            buf.extend_from_slice(lines);
            self.append_buffer(category, buf).await
        })
    }

    fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "datakit_io_local_sink_rotate",
            "Files rotated by the local-files sink, by category",
            self.inner.rotations.clone(),
        );
        registry.register(
            "datakit_io_local_sink_deleted_files",
            "Rotated files deleted by the local-files sink to keep max_files, by category",
            self.inner.deleted.clone(),
        );
    }
}

impl LocalFileSink {
    /// Appends `buf` (whole lines) off the async threads and keeps the buffer for reuse.
    async fn append_buffer(&self, category: Category, buf: Vec<u8>) -> Result<(), SinkError> {
        let inner = Arc::clone(&self.inner);
        let joined = tokio::task::spawn_blocking(move || {
            let result = inner.append(category, &buf);
            (result, buf)
        })
        .await;
        match joined {
            Ok((result, buf)) => {
                if buf.capacity() <= MAX_KEPT_BUFFER {
                    *lock(&self.inner.buffers[category_index(category)]) = buf;
                }
                result
            }
            Err(e) => Err(SinkError::Unavailable {
                sink: SINK_NAME.to_string(),
                message: format!("the file writer task failed: {e}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_rotated_names_yield_their_millis() {
        assert_eq!(
            rotated_ms("current.1700000000123.lp"),
            Some(1_700_000_000_123)
        );
        assert_eq!(rotated_ms("current.lp"), None);
        assert_eq!(rotated_ms("current.x.lp"), None);
        assert_eq!(rotated_ms("other.12.lp"), None);
    }

    #[test]
    fn writes_carry_an_eighth_of_the_file_size_within_bounds() {
        let tmp = tempfile::tempdir().unwrap();
        let sink = |max_file_bytes| {
            LocalFileSink::new(LocalSinkConfig {
                max_file_bytes,
                ..LocalSinkConfig::new(tmp.path())
            })
            .unwrap()
        };
        let lines = |bytes| SinkInput::Lines {
            points: usize::MAX,
            bytes,
        };
        assert_eq!(sink(32 << 20).input(1000), lines(4 << 20));
        assert_eq!(sink(1 << 20).input(1000), lines(128 << 10));
        assert_eq!(sink(1000).input(1000), lines(64 << 10));
        assert_eq!(sink(1 << 40).input(1000), lines(4 << 20));
    }

    #[test]
    fn complete_len_stops_after_the_last_newline() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        let mut body = vec![b'a'; 100_000];
        body.push(b'\n');
        body.extend(vec![b'b'; 70_000]);
        std::fs::write(&path, &body).unwrap();
        let mut file = File::open(&path).unwrap();
        assert_eq!(complete_len(&mut file, body.len() as u64).unwrap(), 100_001);
        std::fs::write(&path, b"no newline").unwrap();
        let mut file = File::open(&path).unwrap();
        assert_eq!(complete_len(&mut file, 10).unwrap(), 0);
        assert_eq!(complete_len(&mut file, 0).unwrap(), 0);
    }
}
