//! The local-files sink: per-category line-protocol files, fsynced per batch and rotated by size.
//!
//! Layout: `<dir>/<category>/current.lp` receives batches (one point per line, each line ending
//! in `\n`); before a write would take it past `max_file_bytes` it is renamed to
//! `current.<unix-millis>.lp` (millis made strictly increasing per category) and at most
//! `max_files` rotated files are kept. Directories are created 0750, files 0640.

use dk_proto::lineproto::encode_point;
use dk_proto::sink::{Sink, SinkError, SinkInput};
use dk_proto::{Category, Point};
use futures::future::BoxFuture;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Size at which the local-files sink rotates `current.lp`.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;
/// Rotated files the local-files sink keeps per category.
pub const DEFAULT_MAX_FILES: usize = 16;
/// The local-files sink: rotating line-protocol files under `<dir>/<category>/`.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalSinkConfig {
    /// Root directory; each category gets a sub-directory.
    pub dir: PathBuf,
    /// `current.lp` is rotated before a write would take it past this size.
    pub max_file_bytes: u64,
    /// Rotated files kept per category; older ones are deleted.
    pub max_files: usize,
    /// All files of all categories together stay within this many bytes (`[sinks.local]
    /// max_total_mb`): the oldest rotated files, whatever their category, go first.
    pub max_total_bytes: u64,
    /// Under disk pressure the oldest rotated files are deleted: the file system is kept
    /// below this used fraction minus [`LOCAL_SINK_DISK_HEADROOM`] (the durable queue refuses
    /// writes above it, so the sink leaves it room).
    pub max_disk_ratio: f64,
}

/// Default total size of the local-files sink: 1 GiB (less than 16 x 32 MiB per category).
pub const DEFAULT_LOCAL_MAX_TOTAL_BYTES: u64 = 1 << 30;
/// Share of the file system the local-files sink leaves free below `max_disk_ratio` for the
/// durable queue.
pub const LOCAL_SINK_DISK_HEADROOM: f64 = 0.02;

impl LocalSinkConfig {
    /// A local sink under `dir` with the default file size (32 MiB), file count (16), total
    /// size (1 GiB) and disk ratio (0.95, as the queue).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LocalSinkConfig {
            dir: dir.into(),
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            max_files: DEFAULT_MAX_FILES,
            max_total_bytes: DEFAULT_LOCAL_MAX_TOTAL_BYTES,
            max_disk_ratio: 0.95,
        }
    }
}

/// `{category}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CategoryLabels {
    category: &'static str,
}

const SINK_NAME: &str = "local";
/// Why rotated files were deleted (the `reason` label).
const REASON_MAX_FILES: &str = "max_files";
const REASON_MAX_TOTAL: &str = "max_total";
const REASON_DISK_FULL: &str = "disk_full";
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
    /// Every rotated file of every category (locked after a category's file, never before).
    index: Mutex<Index>,
    /// Reusable encode buffers, one per category.
    buffers: Vec<Mutex<Vec<u8>>>,
    rotations: Family<CategoryLabels, Counter>,
    deleted: Family<DeleteLabels, Counter>,
}

/// `{category, reason}` of a deleted rotated file.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeleteLabels {
    category: &'static str,
    /// `max_files`, `max_total` or `disk_full`.
    reason: &'static str,
}

/// One rotated file.
struct Rotated {
    ms: u64,
    category: usize,
    path: PathBuf,
    bytes: u64,
}

/// The rotated files of all categories, oldest first, and the size of each `current.lp`.
#[derive(Default)]
struct Index {
    /// The category directories were listed.
    loaded: bool,
    files: Vec<Rotated>,
    rotated_bytes: u64,
    current_bytes: Vec<u64>,
    /// Deletions for space not yet logged, and when that was last logged.
    unlogged: u64,
    last_log: Option<Instant>,
}

/// Deletions for space are logged at most this often.
const DELETE_LOG_EVERY: Duration = Duration::from_secs(60);

impl Index {
    fn total(&self) -> u64 {
        self.rotated_bytes + self.current_bytes.iter().sum::<u64>()
    }
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

/// ENOSPC or EDQUOT: the file system (or the quota) is full.
pub(crate) fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
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
        match Self::probe(&cfg.dir) {
            Ok(()) => {}
            // A full disk is no configuration mistake: start, and write once there is room.
            Err(SinkError::Io { source, .. }) if is_disk_full(&source) => {
                tracing::warn!(dir = %cfg.dir.display(), error = %source, "The local-files sink starts on a full disk: nothing can be written until disk space is freed.");
            }
            Err(e) => return Err(e),
        }
        let n = Category::ALL.len();
        Ok(LocalFileSink {
            inner: Arc::new(LocalInner {
                cfg,
                files: (0..n).map(|_| Mutex::new(CatFile::default())).collect(),
                index: Mutex::new(Index {
                    current_bytes: vec![0; n],
                    ..Index::default()
                }),
                buffers: (0..n).map(|_| Mutex::new(Vec::new())).collect(),
                rotations: Family::default(),
                deleted: Family::default(),
            }),
        })
    }

    /// Creates the directory and a file in it (then removes the file).
    fn probe(dir: &Path) -> Result<(), SinkError> {
        create_dir(dir)?;
        let probe = dir.join(".write-probe");
        let written = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o640)
            .open(&probe)
            .and_then(|mut f| f.write_all(b"probe"));
        let _ = std::fs::remove_file(&probe);
        written.map_err(|e| io_error("create a file in", dir, e))
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

    /// Appends `data` (whole lines) to the category's file and syncs it, rotating first if
    /// needed and deleting the oldest rotated files (of any category) to keep the total size
    /// cap and to stay below the disk ratio; a write that hits a full disk deletes the oldest
    /// rotated file and is tried again while there is one.
    fn append(&self, category: Category, data: &[u8]) -> Result<(), SinkError> {
        let ci = category_index(category);
        let mut st = lock(&self.files[ci]);
        let dir = self.cfg.dir.join(category.name());
        let current = dir.join(CURRENT);
        if !st.prepared {
            create_dir(&dir)?;
            self.load_index();
            st.last_rotated_ms = lock(&self.index)
                .files
                .iter()
                .filter(|f| f.category == ci)
                .map(|f| f.ms)
                .max()
                .unwrap_or(0);
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
        self.make_room(data.len() as u64);
        loop {
            let start = st.size;
            let Some(file) = st.file.as_mut() else {
                return Err(io_error(
                    "open",
                    &current,
                    std::io::Error::other("file not open"),
                ));
            };
            match file.write_all(data).and_then(|()| file.sync_data()) {
                Ok(()) => {
                    st.size = start + data.len() as u64;
                    lock(&self.index).current_bytes[ci] = st.size;
                    return Ok(());
                }
                Err(e) => {
                    // Leave no partial batch behind: delivery retries the whole batch.
                    let _ = file.set_len(start);
                    if is_disk_full(&e) && self.delete_oldest(REASON_DISK_FULL) {
                        continue;
                    }
                    st.file = None;
                    return Err(io_error("append to", &current, e));
                }
            }
        }
    }

    /// Lists the rotated files of every category once.
    fn load_index(&self) {
        let mut index = lock(&self.index);
        if index.loaded {
            return;
        }
        index.loaded = true;
        for (ci, category) in Category::ALL.iter().enumerate() {
            let dir = self.cfg.dir.join(category.name());
            let Ok(rotated) = rotated_files(&dir) else {
                continue;
            };
            for (ms, path) in rotated {
                let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
                index.rotated_bytes += bytes;
                index.files.push(Rotated {
                    ms,
                    category: ci,
                    path,
                    bytes,
                });
            }
            if let Ok(m) = std::fs::metadata(dir.join(CURRENT)) {
                index.current_bytes[ci] = m.len();
            }
        }
        index.files.sort_by_key(|f| f.ms);
    }

    /// Deletes the oldest rotated files until `incoming` more bytes fit the total cap and the
    /// file system stays below the disk ratio (minus the queue's headroom).
    fn make_room(&self, incoming: u64) {
        while lock(&self.index).total() + incoming > self.cfg.max_total_bytes {
            if !self.delete_oldest(REASON_MAX_TOTAL) {
                break;
            }
        }
        let ratio = self.cfg.max_disk_ratio;
        if ratio >= 1.0 {
            return;
        }
        let Ok(usage) = dk_queue::fs_usage(&self.cfg.dir) else {
            return;
        };
        let limit = ratio - LOCAL_SINK_DISK_HEADROOM;
        let mut freed = 0u64;
        while usage.ratio_with(i128::from(incoming) - i128::from(freed)) > limit {
            match self.delete_oldest_sized(REASON_DISK_FULL) {
                Some(bytes) => freed += bytes,
                None => break,
            }
        }
    }

    /// Deletes the oldest rotated file of any category; false when there is none.
    fn delete_oldest(&self, reason: &'static str) -> bool {
        self.delete_oldest_sized(reason).is_some()
    }

    /// Deletes the oldest rotated file of any category and returns its size.
    fn delete_oldest_sized(&self, reason: &'static str) -> Option<u64> {
        let mut index = lock(&self.index);
        if index.files.is_empty() {
            return None;
        }
        let f = index.files.remove(0);
        index.rotated_bytes = index.rotated_bytes.saturating_sub(f.bytes);
        self.remove_rotated(&mut index, &f, reason);
        Some(f.bytes)
    }

    /// Unlinks a rotated file already taken out of the index; counts and (rate-limited) logs it.
    fn remove_rotated(&self, index: &mut Index, f: &Rotated, reason: &'static str) {
        match std::fs::remove_file(&f.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %f.path.display(), error = %e, "local sink cannot delete an old file");
                return;
            }
        }
        let category = Category::ALL
            .get(f.category)
            .map_or("unknown", |c| c.name());
        self.deleted
            .get_or_create(&DeleteLabels { category, reason })
            .inc();
        if reason == REASON_MAX_FILES {
            return;
        }
        index.unlogged += 1;
        if index
            .last_log
            .is_none_or(|t| t.elapsed() >= DELETE_LOG_EVERY)
        {
            tracing::warn!(
                files = index.unlogged,
                reason,
                last = %f.path.display(),
                max_total_bytes = self.cfg.max_total_bytes,
                "The local-files sink deleted its oldest files to make room (max_total_mb or a nearly full disk); free disk space or raise [sinks.local] max_total_mb to keep more."
            );
            index.unlogged = 0;
            index.last_log = Some(Instant::now());
        }
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

    /// Renames `current.lp` to `current.<millis>.lp` and deletes the category's oldest rotated
    /// files beyond `max_files`.
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
        let ci = category_index(category);
        let label = CategoryLabels {
            category: category.name(),
        };
        self.rotations.get_or_create(&label).inc();
        {
            let mut index = lock(&self.index);
            index.rotated_bytes += st.size;
            index.current_bytes[ci] = 0;
            index.files.push(Rotated {
                ms,
                category: ci,
                path: target,
                bytes: st.size,
            });
            let mine = index.files.iter().filter(|f| f.category == ci).count();
            let mut excess = mine.saturating_sub(self.cfg.max_files);
            while excess > 0 {
                let Some(pos) = index.files.iter().position(|f| f.category == ci) else {
                    break;
                };
                let f = index.files.remove(pos);
                index.rotated_bytes = index.rotated_bytes.saturating_sub(f.bytes);
                self.remove_rotated(&mut index, &f, REASON_MAX_FILES);
                excess -= 1;
            }
        }
        st.size = 0;
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
            "Rotated files deleted by the local-files sink, by category and reason: max_files, max_total (max_total_mb), disk_full (disk above max_disk_ratio or ENOSPC)",
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

    fn lines(n: usize, tag: &str) -> Vec<u8> {
        let mut out = Vec::new();
        while out.len() < n {
            out.extend_from_slice(format!("m,t={tag} f=1i 1\n").as_bytes());
        }
        out
    }

    fn lp_files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".lp"))
            .collect();
        v.sort();
        v
    }

    fn deleted(sink: &LocalFileSink, category: &'static str, reason: &'static str) -> u64 {
        sink.inner
            .deleted
            .get_or_create(&DeleteLabels { category, reason })
            .get()
    }

    #[test]
    fn the_total_cap_deletes_the_oldest_rotated_files_of_any_category_first() {
        let tmp = tempfile::tempdir().unwrap();
        let sink = LocalFileSink::new(LocalSinkConfig {
            max_file_bytes: 1000,
            max_files: 100,
            max_total_bytes: 4000,
            max_disk_ratio: 1.0,
            ..LocalSinkConfig::new(tmp.path())
        })
        .unwrap();
        let inner = &sink.inner;
        // Metric first: its rotated files are the oldest.
        for _ in 0..4 {
            inner
                .append(Category::Metric, &lines(900, "metric"))
                .unwrap();
        }
        assert_eq!(lp_files(&tmp.path().join("metric")).len(), 4);
        for _ in 0..4 {
            inner
                .append(Category::Logging, &lines(900, "logging"))
                .unwrap();
        }
        // 8 x 900 bytes under a 4000-byte cap (current files count too): the oldest rotated
        // files went first, metric's three while logging was writing, then logging's oldest.
        let metric = lp_files(&tmp.path().join("metric"));
        let logging = lp_files(&tmp.path().join("logging"));
        assert_eq!(metric, vec!["current.lp".to_string()], "{metric:?}");
        assert_eq!(logging.len(), 3, "{logging:?}");
        assert_eq!(deleted(&sink, "metric", REASON_MAX_TOTAL), 3);
        assert_eq!(deleted(&sink, "logging", REASON_MAX_TOTAL), 1);
        let total: u64 = [tmp.path().join("metric"), tmp.path().join("logging")]
            .iter()
            .flat_map(|d| std::fs::read_dir(d).unwrap())
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(total <= 4000, "{total} bytes on disk");
    }

    #[test]
    fn max_files_deletes_only_the_categorys_own_oldest_files_and_counts_them() {
        let tmp = tempfile::tempdir().unwrap();
        let sink = LocalFileSink::new(LocalSinkConfig {
            max_file_bytes: 1000,
            max_files: 2,
            max_disk_ratio: 1.0,
            ..LocalSinkConfig::new(tmp.path())
        })
        .unwrap();
        for _ in 0..6 {
            sink.inner
                .append(Category::Metric, &lines(900, "metric"))
                .unwrap();
        }
        // Five rotations, two rotated files kept, plus current.lp.
        assert_eq!(lp_files(&tmp.path().join("metric")).len(), 3);
        assert_eq!(deleted(&sink, "metric", REASON_MAX_FILES), 3);
        assert_eq!(deleted(&sink, "metric", REASON_MAX_TOTAL), 0);
    }
}
