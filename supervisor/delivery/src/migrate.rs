//! Adopting the data a Datakit install left unsent in `cache/dw-wal`.
//!
//! Datakit's WAL and fail cache share our queue's default directory: one sub-directory per
//! category name plus `fc/`, each a `diskcache` queue: the write file `data`, rotated files
//! `data.<32-digit seq>` (records, then the EOF marker `0xdeadbeef`) and `.pos` (int64 LE read
//! offset, then the path of the file being read). A record is a uint32 LE length and a
//! `CacheData` protobuf whose payload (gzip or not) is a body of points. None of these names
//! is one of ours (`<20 digits>.seg`, `<consumer>.pos`, `queue.lock`), so both live side by
//! side and our queue ignores Datakit's files.
//!
//! [`adopt_datakit_wal`] replays every record after the `.pos` offset into our durable queue
//! (fsynced, original timestamps, no global tags added: Datakit added its own), then, file by
//! file, notes the file in the marker [`MIGRATION_MARKER`] (fsynced) and deletes it. A crash
//! while a file is fed replays that file again at the next start (duplicates, never a loss);
//! a crash between the note and the deletion only deletes the file at the next start. Bad
//! records are skipped and counted, never fatal.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dk_proto::lineproto::{DecodeOptions, Precision};
use dk_proto::{Category, FeedOpts, Point};
use prost::Message as _;
use tokio::sync::mpsc;

use crate::delivery::Delivery;
use crate::error::DeliveryError;
use crate::metrics::{CategoryLabels, ReasonLabels};

/// The marker file, in the WAL directory: one line per adopted Datakit file and a summary
/// line per migration.
pub const MIGRATION_MARKER: &str = "datakit-migration.log";

/// The input name the replayed points are fed under (`datakit_io_feed_point_total{name}`).
const INPUT_NAME: &str = "datakit_migration";
/// diskcache's end-of-file marker, where a record length would be.
const EOF_MARKER: u32 = 0xdead_beef;
/// Largest record we accept: Datakit's bodies are at most 1 MiB raw, its files 20 MiB.
const MAX_RECORD_BYTES: u32 = 64 << 20;
/// Largest inflated payload (a gzip bomb in a damaged file is refused, not inflated).
const MAX_PAYLOAD_BYTES: u64 = 256 << 20;
/// Decoded records waiting to be fed.
const CHANNEL_RECORDS: usize = 4;
/// Wait between attempts while a full `no_drop` queue refuses the replay.
const BUSY_RETRY: Duration = Duration::from_secs(1);

/// Datakit's `CacheData` (`internal/io/dataway/cachedata.proto`, package `dataway`).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct CacheData {
    /// Category enum (see [`category_of`]).
    #[prost(int32, tag = "1")]
    pub category: i32,
    /// 0 line protocol, 1 protobuf, 2 JSON, 3 PB-JSON.
    #[prost(int32, tag = "2")]
    pub payload_type: i32,
    /// The body, gzip-compressed or not.
    #[prost(bytes = "vec", tag = "3")]
    pub payload: Vec<u8>,
    /// Points in the body.
    #[prost(int32, tag = "4")]
    pub pts: i32,
    /// Length of the body before compression.
    #[prost(int32, tag = "5")]
    pub raw_len: i32,
    /// Extra upload headers (sinker `X-Global-Tags`...).
    #[prost(message, repeated, tag = "6")]
    pub headers: Vec<HttpHeader>,
    /// Upload URL of a `dynamic_dw` body.
    #[prost(string, tag = "7")]
    pub dyn_url: String,
    /// When the body was made (Unix seconds).
    #[prost(uint32, tag = "8")]
    pub pkg_time: u32,
}

/// `HTTPHeader { key = 1; value = 2; }`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct HttpHeader {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// Why a record (or the rest of a file) was not adopted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Skip {
    /// The file ends inside a record (counted once; the file's end).
    Truncated,
    /// A record length beyond any Datakit record (the rest of the file cannot be framed).
    BadLength,
    /// Not a `CacheData` protobuf.
    BadCacheData,
    /// The payload looks gzipped but does not inflate (or inflates past 256 MiB).
    BadGzip,
    /// The payload does not decode as its `payloadType` says.
    BadPayload,
    /// A category number we do not know.
    UnknownCategory,
    /// A `dynamic_dw` body: its upload URL was Datakit's dial-testing task, not ours.
    DynamicUrl,
    /// The queue refused the points for good (one record over its cap).
    Rejected,
}

impl Skip {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Skip::Truncated => "truncated",
            Skip::BadLength => "bad_length",
            Skip::BadCacheData => "bad_cachedata",
            Skip::BadGzip => "bad_gzip",
            Skip::BadPayload => "bad_payload",
            Skip::UnknownCategory => "unknown_category",
            Skip::DynamicUrl => "dynamic_url",
            Skip::Rejected => "rejected",
        }
    }
}

/// Why the migration stopped (what it did not finish is retried at the next start).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// A file of the Datakit WAL or the marker could not be read, written or deleted.
    #[error(
        "Datakit migration: cannot {action} {}: {source}; check the permissions of the [dataway.wal] directory (the migration is retried at the next start)",
        .path.display()
    )]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Our queue did not take the points (disk error, shutdown).
    #[error("Datakit migration of {}: {source}; the file is kept and replayed at the next start", .path.display())]
    Delivery {
        /// The Datakit file being replayed.
        path: PathBuf,
        /// Why delivery refused.
        #[source]
        source: DeliveryError,
    },
    /// A blocking task panicked or was cancelled.
    #[error(
        "Datakit migration: a file task failed: {0}; the migration is retried at the next start"
    )]
    Task(String),
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> MigrateError + 'a {
    move |source| MigrateError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// What one migration did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Datakit files read (or deleted as already adopted) and removed.
    pub files: u64,
    /// Records replayed.
    pub records: u64,
    /// Points taken into our queue, by category name.
    pub points: BTreeMap<&'static str, u64>,
    /// Records skipped, by reason.
    pub skipped: BTreeMap<&'static str, u64>,
}

impl MigrationReport {
    /// All points taken.
    pub fn total_points(&self) -> u64 {
        self.points.values().sum()
    }
}

/// The category of Datakit's `CacheData.category` enum (`None`: unknown).
pub(crate) fn category_of(n: i32) -> Option<Category> {
    Some(match n {
        1 => Category::DynamicDw,
        // `metrics` is the deprecated name of `metric`; both upload to /v1/write/metric.
        2 | 3 => Category::Metric,
        4 => Category::Network,
        5 => Category::KeyEvent,
        6 => Category::Object,
        7 => Category::ObjectChange,
        8 => Category::CustomObject,
        9 => Category::Logging,
        10 => Category::Tracing,
        11 => Category::Rum,
        12 => Category::Security,
        13 => Category::Profiling,
        14 => Category::DialTesting,
        _ => return None,
    })
}

/// Reads the records of one diskcache file from a start offset: `Ok` per record, at most one
/// `Err` (the framing is lost: the rest of the file is skipped), then the end.
pub(crate) struct RecordReader<R> {
    r: R,
    offset: u64,
    len: u64,
    done: bool,
}

impl<R: Read> RecordReader<R> {
    /// `r` is positioned at `offset` of a file of `len` bytes.
    pub(crate) fn new(r: R, offset: u64, len: u64) -> Self {
        RecordReader {
            r,
            offset,
            len,
            done: offset >= len,
        }
    }

    fn fail(&mut self, why: Skip) -> Option<io::Result<Result<Vec<u8>, Skip>>> {
        self.done = true;
        Some(Ok(Err(why)))
    }
}

impl<R: Read> Iterator for RecordReader<R> {
    /// The outer error is an I/O failure; the inner one a framing problem.
    type Item = io::Result<Result<Vec<u8>, Skip>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let left = self.len.saturating_sub(self.offset);
        if left == 0 {
            // The write file `data` has no EOF marker.
            self.done = true;
            return None;
        }
        if left < 4 {
            return self.fail(Skip::Truncated);
        }
        let mut hdr = [0u8; 4];
        if let Err(e) = self.r.read_exact(&mut hdr) {
            self.done = true;
            return Some(Err(e));
        }
        let n = u32::from_le_bytes(hdr);
        if n == EOF_MARKER {
            self.done = true;
            return None;
        }
        if n > MAX_RECORD_BYTES {
            return self.fail(Skip::BadLength);
        }
        if u64::from(n) > left - 4 {
            return self.fail(Skip::Truncated);
        }
        let mut buf = vec![0u8; n as usize];
        if let Err(e) = self.r.read_exact(&mut buf) {
            self.done = true;
            return Some(Err(e));
        }
        self.offset += 4 + u64::from(n);
        Some(Ok(Ok(buf)))
    }
}

/// Decodes one record into its category and points, at their original times.
pub(crate) fn decode_record(record: &[u8]) -> Result<(Category, Vec<Point>), Skip> {
    let cd = CacheData::decode(record).map_err(|_| Skip::BadCacheData)?;
    let category = category_of(cd.category).ok_or(Skip::UnknownCategory)?;
    if category == Category::DynamicDw {
        return Err(Skip::DynamicUrl);
    }
    let body = if cd.payload.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(usize::try_from(cd.raw_len.max(0)).unwrap_or(0));
        flate2::read::MultiGzDecoder::new(&cd.payload[..])
            .take(MAX_PAYLOAD_BYTES + 1)
            .read_to_end(&mut out)
            .map_err(|_| Skip::BadGzip)?;
        if out.len() as u64 > MAX_PAYLOAD_BYTES {
            return Err(Skip::BadGzip);
        }
        out
    } else {
        cd.payload
    };
    // Points without a time get the time the body was made.
    let made_ns = i64::from(cd.pkg_time).saturating_mul(1_000_000_000);
    let opts = DecodeOptions::new(Precision::Ns, made_ns);
    let points = match cd.payload_type {
        0 => dk_proto::lineproto::decode(&body, &opts).map_err(|_| Skip::BadPayload)?,
        1 => dk_proto::pb::decode(&body).map_err(|_| Skip::BadPayload)?,
        2 => dk_proto::json::decode_with(&body, &opts).map_err(|_| Skip::BadPayload)?,
        3 => dk_proto::json::decode_pbjson_with(&body, &opts).map_err(|_| Skip::BadPayload)?,
        _ => return Err(Skip::BadPayload),
    };
    let mut points = points;
    points.iter_mut().for_each(restore_original_time);
    Ok((category, points))
}

/// Undoes Datakit's `auto_timestamp_correction`: a point Datakit re-stamped with its receive
/// time carries the time it was written with in the int field `__orig_time`; the replay
/// delivers it at that original time, without the field.
fn restore_original_time(p: &mut Point) {
    if let Some(i) = p.fields.iter().position(|(k, _)| k == "__orig_time")
        && let dk_proto::Value::I(orig) = p.fields[i].1
    {
        p.time = orig;
        p.fields.remove(i);
    }
}

/// One Datakit queue directory: its files in reading order and where to start in each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DatakitQueue {
    pub dir: PathBuf,
    /// Rotated files by sequence, then the write file `data`; with the start offset.
    pub files: Vec<(PathBuf, u64)>,
    /// The `.pos` file, if any.
    pub pos: Option<PathBuf>,
}

/// The sequence number of a rotated diskcache file name `data.<32 digits>`.
fn rotated_seq(name: &str) -> Option<u128> {
    let digits = name.strip_prefix("data.")?;
    if digits.len() != 32 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Reads a diskcache `.pos`: the read offset and the base name of the file it applies to
/// (`None` when it says "nothing read": offset −1 or no name).
pub(crate) fn read_pos(path: &Path) -> io::Result<Option<(u64, String)>> {
    let bytes = fs::read(path)?;
    let Some(head) = bytes.get(..8) else {
        return Ok(None);
    };
    let mut off = [0u8; 8];
    off.copy_from_slice(head);
    let Ok(offset) = u64::try_from(i64::from_le_bytes(off)) else {
        return Ok(None);
    };
    let name = String::from_utf8_lossy(&bytes[8..]);
    let base = name
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .trim_end_matches('\0');
    if base.is_empty() {
        return Ok(None);
    }
    Ok(Some((offset, base.to_string())))
}

/// Finds the Datakit queues under `wal_dir` (sub-directories holding `data`, `data.<seq>`
/// or `.pos`), in name order.
pub(crate) fn plan(wal_dir: &Path) -> Result<Vec<DatakitQueue>, MigrateError> {
    let entries = match fs::read_dir(wal_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("list", wal_dir)(e)),
    };
    let mut dirs: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("list", wal_dir))?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            dirs.push(entry.path());
        }
    }
    dirs.sort();
    let mut out = Vec::new();
    for dir in dirs {
        let mut rotated: Vec<(u128, PathBuf)> = Vec::new();
        let mut write_file = None;
        let mut pos = None;
        for entry in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
            let entry = entry.map_err(io_err("list", &dir))?;
            if !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                continue;
            };
            if name == "data" {
                write_file = Some(entry.path());
            } else if name == ".pos" {
                pos = Some(entry.path());
            } else if let Some(seq) = rotated_seq(name) {
                rotated.push((seq, entry.path()));
            }
        }
        if rotated.is_empty() && write_file.is_none() && pos.is_none() {
            continue;
        }
        rotated.sort_unstable_by_key(|(seq, _)| *seq);
        let start = match &pos {
            Some(p) => match read_pos(p) {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(path = %p.display(), error = %e, "Cannot read Datakit's read position; its queue is replayed from the start (duplicates possible).");
                    None
                }
            },
            None => None,
        };
        let files = rotated
            .into_iter()
            .map(|(_, p)| p)
            .chain(write_file)
            .map(|p| {
                let offset = match &start {
                    Some((off, name)) if p.file_name().is_some_and(|n| n == name.as_str()) => *off,
                    _ => 0,
                };
                (p, offset)
            })
            .collect();
        out.push(DatakitQueue { dir, files, pos });
    }
    Ok(out)
}

/// The marker: which files were already adopted (relative path and length).
struct Marker {
    path: PathBuf,
    adopted: HashSet<(String, u64)>,
}

impl Marker {
    fn load(wal_dir: &Path) -> Result<Marker, MigrateError> {
        let path = wal_dir.join(MIGRATION_MARKER);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        let adopted = text
            .lines()
            .filter_map(|l| {
                let rest = l.strip_prefix("adopted ")?;
                let (len, name) = rest.split_once(' ')?;
                Some((name.to_string(), len.parse().ok()?))
            })
            .collect();
        Ok(Marker { path, adopted })
    }
}

/// Appends a line to the marker and makes it durable.
fn append_marker(path: &Path, line: &str) -> Result<(), MigrateError> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err("open", path))?;
    f.write_all(format!("{line}\n").as_bytes())
        .and_then(|()| f.sync_data())
        .map_err(io_err("write", path))
}

fn relative(wal_dir: &Path, path: &Path) -> String {
    path.strip_prefix(wal_dir)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

fn file_len(path: &Path) -> Result<u64, MigrateError> {
    fs::metadata(path)
        .map(|m| m.len())
        .map_err(io_err("stat", path))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, MigrateError> + Send + 'static,
) -> Result<T, MigrateError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| MigrateError::Task(e.to_string()))?
}

/// What the file reader hands the feeder.
type Decoded = Result<(Category, Vec<Point>), Skip>;

/// Reads and decodes one file on a blocking thread, sending records as they decode.
fn read_file(path: &Path, start: u64, tx: &mpsc::Sender<Decoded>) -> Result<(), MigrateError> {
    let mut f = File::open(path).map_err(io_err("open", path))?;
    let len = f.metadata().map_err(io_err("stat", path))?.len();
    let start = start.min(len);
    f.seek(SeekFrom::Start(start))
        .map_err(io_err("seek", path))?;
    for rec in RecordReader::new(BufReader::with_capacity(256 << 10, f), start, len) {
        let rec = rec.map_err(io_err("read", path))?;
        let decoded = rec.and_then(|bytes| decode_record(&bytes));
        if tx.blocking_send(decoded).is_err() {
            // The feeder stopped (its error is reported).
            break;
        }
    }
    Ok(())
}

/// Replays what a Datakit install left unsent under `wal_dir` (its `cache/dw-wal`) into
/// `delivery`'s durable queue once, then removes Datakit's files (counted in
/// `datakit_io_migrated_point_total{category}`, logged). Nothing to do returns an empty
/// report at once.
///
/// # Errors
/// [`MigrateError`] when a Datakit file cannot be read or deleted, or our queue refuses the
/// points; what was not finished stays on disk and is replayed at the next start.
pub async fn adopt_datakit_wal(
    delivery: &Delivery,
    wal_dir: &Path,
) -> Result<MigrationReport, MigrateError> {
    let started = Instant::now();
    let mut report = MigrationReport::default();
    let dir = wal_dir.to_path_buf();
    let queues = blocking(move || plan(&dir)).await?;
    if queues.is_empty() {
        return Ok(report);
    }
    let dir = wal_dir.to_path_buf();
    let marker = blocking(move || Marker::load(&dir)).await?;
    let metrics = delivery.metrics().clone();
    let skip = |report: &mut MigrationReport, why: Skip| {
        *report.skipped.entry(why.reason()).or_default() += 1;
        metrics
            .migrate_skipped
            .get_or_create(&ReasonLabels {
                reason: why.reason(),
            })
            .inc();
    };
    for queue in &queues {
        for (path, start) in &queue.files {
            let p = path.clone();
            let len = blocking(move || file_len(&p)).await?;
            let rel = relative(wal_dir, path);
            if !marker.adopted.contains(&(rel.clone(), len)) && start < &len {
                let (tx, mut rx) = mpsc::channel::<Decoded>(CHANNEL_RECORDS);
                let (p, s) = (path.clone(), *start);
                let reader = tokio::task::spawn_blocking(move || read_file(&p, s, &tx));
                while let Some(decoded) = rx.recv().await {
                    let (category, points) = match decoded {
                        Ok(v) => v,
                        Err(why) => {
                            skip(&mut report, why);
                            continue;
                        }
                    };
                    match feed_retrying(delivery, category, points).await {
                        Ok(accepted) => {
                            report.records += 1;
                            *report.points.entry(category.name()).or_default() +=
                                u64::from(accepted);
                            delivery
                                .metrics()
                                .migrated_points
                                .get_or_create(&CategoryLabels {
                                    category: category.name(),
                                })
                                .inc_by(u64::from(accepted));
                        }
                        Err(DeliveryError::Rejected(m)) => {
                            tracing::warn!(path = %path.display(), reason = %m, "A record of Datakit's WAL is too large for our queue; skipped.");
                            skip(&mut report, Skip::Rejected);
                        }
                        Err(source) => {
                            drop(rx);
                            let _ = reader.await;
                            return Err(MigrateError::Delivery {
                                path: path.clone(),
                                source,
                            });
                        }
                    }
                }
                reader
                    .await
                    .map_err(|e| MigrateError::Task(e.to_string()))??;
            }
            // Everything of the file is fsynced in our queue: note it, then delete it.
            let p = path.clone();
            let line = format!("adopted {len} {rel}");
            let m = marker.path.clone();
            blocking(move || {
                append_marker(&m, &line)?;
                fs::remove_file(&p).map_err(io_err("delete", &p))
            })
            .await?;
            report.files += 1;
        }
        let (dir, pos) = (queue.dir.clone(), queue.pos.clone());
        blocking(move || {
            if let Some(pos) = pos {
                match fs::remove_file(&pos) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err("delete", &pos)(e)),
                }
            }
            // Only Datakit's own directories (fc/) end up empty; ours hold queue.lock.
            let _ = fs::remove_dir(&dir);
            Ok(())
        })
        .await?;
    }
    let summary = format!(
        "migrated files={} records={} points={} skipped={} took_ms={}",
        report.files,
        report.records,
        report.total_points(),
        report.skipped.values().sum::<u64>(),
        started.elapsed().as_millis()
    );
    let m = marker.path.clone();
    blocking(move || append_marker(&m, &summary)).await?;
    if !report.skipped.is_empty() {
        tracing::warn!(
            path = %wal_dir.display(),
            files = report.files,
            records = report.records,
            points = ?report.points,
            skipped = ?report.skipped,
            took = ?started.elapsed(),
            "Adopted the data Datakit left unsent in its WAL, except damaged records (counted in datakit_io_migrate_skipped_record_total); its files are removed."
        );
    } else if report.total_points() > 0 {
        tracing::info!(
            path = %wal_dir.display(),
            files = report.files,
            records = report.records,
            points = ?report.points,
            skipped = ?report.skipped,
            took = ?started.elapsed(),
            "Adopted the data Datakit left unsent in its WAL; its files are removed."
        );
    }
    Ok(report)
}

/// Feeds replayed points, waiting while a full `no_drop` queue refuses them.
async fn feed_retrying(
    delivery: &Delivery,
    category: Category,
    points: Vec<Point>,
) -> Result<u32, DeliveryError> {
    let opts = FeedOpts {
        election: false,
        no_global_tags: true,
    };
    loop {
        match delivery
            .feed_as_recorded(category, INPUT_NAME, opts, points.clone())
            .await
        {
            Err(DeliveryError::Busy(_)) => tokio::time::sleep(BUSY_RETRY).await,
            other => return other.map(|o| o.accepted),
        }
    }
}

#[cfg(test)]
mod tests;
