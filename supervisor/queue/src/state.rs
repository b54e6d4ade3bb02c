//! State shared by the writer thread, readers and committers, and the statistics derived from it.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::config::QueueConfig;
use crate::error::QueueError;
use crate::position;
use crate::reader::SegReader;

/// Locks a mutex, ignoring poisoning (no code path panics while holding one).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Records and points.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub records: u64,
    pub points: u64,
}

/// Dropped records and points by reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// Oldest segments deleted because `max_disk_bytes` was reached.
    pub evicted_cap: Counts,
    /// Oldest segments deleted because the filesystem would exceed `max_disk_ratio`.
    pub evicted_disk_ratio: Counts,
    /// Records lost to a corrupt or torn segment (points are counted when the header was
    /// readable, records always).
    pub corrupt: Counts,
}

impl Dropped {
    /// Records and points dropped for any reason.
    pub fn total(&self) -> Counts {
        Counts {
            records: self.evicted_cap.records
                + self.evicted_disk_ratio.records
                + self.corrupt.records,
            points: self.evicted_cap.points + self.evicted_disk_ratio.points + self.corrupt.points,
        }
    }

    pub(crate) fn add(&mut self, reason: DropReason, records: u64, points: u64) {
        let c = match reason {
            DropReason::Cap => &mut self.evicted_cap,
            DropReason::DiskRatio => &mut self.evicted_disk_ratio,
            DropReason::Corrupt => &mut self.corrupt,
        };
        c.records += records;
        c.points += points;
    }
}

/// Why records were dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropReason {
    Cap,
    DiskRatio,
    Corrupt,
}

impl DropReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DropReason::Cap => "evicted_cap",
            DropReason::DiskRatio => "evicted_disk_ratio",
            DropReason::Corrupt => "corrupt",
        }
    }
}

/// One segment file as the queue knows it.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Sequence number of the first record (the file name).
    pub first: u64,
    pub path: PathBuf,
    /// Durable bytes in the file (what counts against the cap).
    pub bytes: u64,
    /// Readers stop at this byte offset...
    pub readable_len: u64,
    /// ...and at this record; records after it up to `last_seq` are known lost (corrupt).
    pub readable_last: u64,
    /// Last sequence number the segment covers (`first - 1` when empty).
    pub last_seq: u64,
    /// Points of each record whose header is known, indexed by `seq - first`.
    pub points: Vec<u32>,
    /// Append time of the first record (unix ms; 0 when empty).
    pub first_ms: u64,
}

impl Segment {
    pub(crate) fn empty(first: u64, path: PathBuf) -> Self {
        Segment {
            first,
            path,
            bytes: 0,
            readable_len: 0,
            readable_last: first - 1,
            last_seq: first - 1,
            points: Vec::new(),
            first_ms: 0,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.last_seq < self.first
    }

    /// Points of records `from..=to` whose headers are known.
    pub(crate) fn points_between(&self, from: u64, to: u64) -> u64 {
        if to < from || to < self.first {
            return 0;
        }
        let a = usize::try_from(from.saturating_sub(self.first)).unwrap_or(usize::MAX);
        let b = usize::try_from(to - self.first)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        let b = b.min(self.points.len());
        if a >= b {
            return 0;
        }
        self.points[a..b].iter().map(|&p| u64::from(p)).sum()
    }
}

/// A named consumer and its position.
pub(crate) struct Consumer {
    pub name: String,
    pub pos_path: PathBuf,
    /// Every record up to and including this one is done (committed, evicted or skipped).
    pub committed: u64,
    /// The position last written to the position file.
    pub persisted: u64,
    pub dropped: Dropped,
    /// The consumer's open segment file, used only for records no longer in memory.
    pub reader: Arc<Mutex<Option<SegReader>>>,
}

/// A recent record kept in memory.
pub(crate) struct Cached {
    pub seq: u64,
    pub points: u32,
    pub time_ms: u64,
    pub payload: Bytes,
}

/// Everything readers, committers and the writer share (behind one mutex).
pub(crate) struct State {
    pub segments: BTreeMap<u64, Segment>,
    /// First sequence number of the segment being written (never deleted).
    pub active: u64,
    /// Sequence number of the next record; everything below is durable.
    pub next_seq: u64,
    pub disk_bytes: u64,
    pub consumers: Vec<Consumer>,
    pub cache: VecDeque<Cached>,
    pub cache_bytes: usize,
    pub cache_cap: usize,
    pub closed: bool,
    /// Records dropped, each counted once for the queue.
    pub dropped: Dropped,
    pub fsyncs: u64,
    pub appended_records: u64,
    pub appended_points: u64,
    pub corrupt_segments: u64,
    /// A reader found corruption in the segment being written: start a new one.
    pub rotate_asap: bool,
}

impl State {
    pub(crate) fn consumer_index(&self, name: &str) -> Option<usize> {
        self.consumers.iter().position(|c| c.name == name)
    }

    fn min_committed(&self) -> Option<u64> {
        self.consumers.iter().map(|c| c.committed).min()
    }

    /// Adds a published record to the memory cache, dropping the oldest beyond the cap.
    pub(crate) fn cache_push(&mut self, rec: Cached) {
        if self.cache_cap == 0 {
            return;
        }
        self.cache_bytes += rec.payload.len();
        self.cache.push_back(rec);
        while self.cache_bytes > self.cache_cap {
            match self.cache.pop_front() {
                Some(c) => self.cache_bytes -= c.payload.len(),
                None => break,
            }
        }
    }

    fn cache_drop_through(&mut self, seq: u64) {
        while self.cache.front().is_some_and(|c| c.seq <= seq) {
            if let Some(c) = self.cache.pop_front() {
                self.cache_bytes -= c.payload.len();
            }
        }
    }

    /// Drops the cached records every consumer has committed: no reader asks for them again,
    /// so the cache holds only what is still pending (at most its cap).
    pub(crate) fn cache_release_committed(&mut self) {
        if let Some(min) = self.min_committed() {
            self.cache_drop_through(min);
        }
    }

    /// First sequence number served from memory, if any.
    pub(crate) fn cache_first(&self) -> Option<u64> {
        self.cache.front().map(|c| c.seq)
    }

    /// Closes the consumers' open files on a segment that is going away (when not busy).
    fn forget_readers(&self, first: u64) {
        for c in &self.consumers {
            if let Ok(mut slot) = c.reader.try_lock()
                && slot.as_ref().is_some_and(|r| r.segment() == first)
            {
                *slot = None;
            }
        }
    }

    /// Removes the oldest segment unless it is the one being written, counting what each
    /// consumer had not yet done as dropped for `reason`; returns its path and size.
    pub(crate) fn evict_oldest(&mut self, reason: DropReason) -> Option<(PathBuf, u64, Counts)> {
        let first = *self.segments.keys().next()?;
        if first == self.active {
            return None;
        }
        let seg = self.segments.remove(&first)?;
        self.disk_bytes = self.disk_bytes.saturating_sub(seg.bytes);
        let mut lost = Counts::default();
        if !seg.is_empty() {
            // Once for the queue: records beyond the slowest consumer (all when none).
            let from = seg.first.max(self.min_committed().map_or(0, |m| m + 1));
            if from <= seg.readable_last {
                lost.records = seg.readable_last - from + 1;
                lost.points = seg.points_between(from, seg.readable_last);
                self.dropped.add(reason, lost.records, lost.points);
            }
            for c in &mut self.consumers {
                let from = seg.first.max(c.committed + 1);
                if from > seg.last_seq {
                    continue;
                }
                if from <= seg.readable_last {
                    let n = seg.readable_last - from + 1;
                    c.dropped
                        .add(reason, n, seg.points_between(from, seg.readable_last));
                }
                let from_lost = from.max(seg.readable_last + 1);
                if from_lost <= seg.last_seq {
                    let n = seg.last_seq - from_lost + 1;
                    c.dropped.add(
                        DropReason::Corrupt,
                        n,
                        seg.points_between(from_lost, seg.last_seq),
                    );
                }
                c.committed = seg.last_seq;
            }
        }
        self.cache_drop_through(seg.last_seq);
        self.forget_readers(first);
        Some((seg.path, seg.bytes, lost))
    }

    /// True when the oldest segment is done for every consumer (by their in-memory positions).
    pub(crate) fn has_consumed_segment(&self) -> bool {
        let Some(min) = self.min_committed() else {
            return false;
        };
        self.segments
            .values()
            .next()
            .is_some_and(|s| s.first != self.active && (s.last_seq <= min || s.is_empty()))
    }

    /// Removes the segments every consumer is done with by its *persisted* position (so a
    /// crash can never leave a position pointing before a deleted segment); returns their paths.
    pub(crate) fn take_consumed_segments(&mut self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let Some(min) = self.consumers.iter().map(|c| c.persisted).min() else {
            return out;
        };
        while let Some(s) = self.segments.values().next() {
            if s.first == self.active || !(s.last_seq <= min || s.is_empty()) {
                break;
            }
            let first = s.first;
            if let Some(seg) = self.segments.remove(&first) {
                self.disk_bytes = self.disk_bytes.saturating_sub(seg.bytes);
                self.forget_readers(first);
                out.push(seg.path);
            }
        }
        out
    }

    /// Records and points a consumer still has to do, and the append time of the oldest.
    fn pending(&self, committed: u64) -> (u64, u64, Option<u64>) {
        let (mut records, mut points, mut oldest) = (0, 0, None);
        for s in self.segments.values() {
            if s.is_empty() || s.last_seq <= committed {
                continue;
            }
            let from = s.first.max(committed + 1);
            records += s.last_seq - from + 1;
            points += s.points_between(from, s.last_seq);
            if oldest.is_none() {
                let cached = self.cache_first().and_then(|f| {
                    let i = usize::try_from(from.checked_sub(f)?).ok()?;
                    self.cache.get(i).map(|c| c.time_ms)
                });
                oldest = Some(cached.unwrap_or(s.first_ms));
            }
        }
        (records, points, oldest)
    }

    pub(crate) fn stats(&self) -> QueueStats {
        let now = now_ms();
        let consumers = self
            .consumers
            .iter()
            .map(|c| {
                let (pending_records, pending_points, oldest) = self.pending(c.committed);
                ConsumerStats {
                    name: c.name.clone(),
                    committed: c.committed,
                    pending_records,
                    pending_points,
                    oldest_pending_age: oldest
                        .map(|t| Duration::from_millis(now.saturating_sub(t))),
                    dropped: c.dropped,
                }
            })
            .collect();
        QueueStats {
            disk_bytes: self.disk_bytes,
            segments: self.segments.len() as u64,
            mem_cache_bytes: self.cache_bytes as u64,
            mem_cache_records: self.cache.len() as u64,
            last_seq: self.next_seq - 1,
            appended_records: self.appended_records,
            appended_points: self.appended_points,
            fsyncs: self.fsyncs,
            corrupt_segments: self.corrupt_segments,
            dropped: self.dropped,
            consumers,
        }
    }
}

/// A point-in-time view of a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStats {
    /// Bytes of all segment files.
    pub disk_bytes: u64,
    /// Segment files, the one being written included.
    pub segments: u64,
    /// Bytes and records of the in-memory cache of recent records.
    pub mem_cache_bytes: u64,
    pub mem_cache_records: u64,
    /// Sequence number of the last durable record (0 if none yet).
    pub last_seq: u64,
    /// Records and points appended since the queue was opened.
    pub appended_records: u64,
    pub appended_points: u64,
    /// fsync/fdatasync calls since open (group commit makes this far smaller than appends).
    pub fsyncs: u64,
    /// Segments found corrupt (at open or while reading).
    pub corrupt_segments: u64,
    /// Records and points dropped, each counted once for the queue.
    pub dropped: Dropped,
    /// Per consumer, in the order they were opened.
    pub consumers: Vec<ConsumerStats>,
}

/// A consumer's view of the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerStats {
    pub name: String,
    /// Everything up to and including this sequence number is done.
    pub committed: u64,
    /// Records and points after `committed`.
    pub pending_records: u64,
    pub pending_points: u64,
    /// Age of the oldest pending record (exact while it is in memory, else the age of the
    /// first record of its segment).
    pub oldest_pending_age: Option<Duration>,
    /// What this consumer lost, by reason.
    pub dropped: Dropped,
}

impl QueueStats {
    /// The named consumer's statistics.
    pub fn consumer(&self, name: &str) -> Option<&ConsumerStats> {
        self.consumers.iter().find(|c| c.name == name)
    }

    /// Points pending for a consumer (0 for an unknown one).
    pub fn pending_points(&self, consumer: &str) -> u64 {
        self.consumer(consumer).map_or(0, |c| c.pending_points)
    }

    /// Records pending for a consumer (0 for an unknown one).
    pub fn pending_records(&self, consumer: &str) -> u64 {
        self.consumer(consumer).map_or(0, |c| c.pending_records)
    }

    /// Whole seconds since the oldest pending record of a consumer was appended (0 if none).
    pub fn oldest_pending_secs(&self, consumer: &str) -> i64 {
        self.consumer(consumer)
            .and_then(|c| c.oldest_pending_age)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }

    /// Points dropped for the queue by reason label (`evicted_cap`, `evicted_disk_ratio`, `corrupt`).
    pub fn dropped_points_by_reason(&self) -> Vec<(String, u64)> {
        [
            (DropReason::Cap, self.dropped.evicted_cap),
            (DropReason::DiskRatio, self.dropped.evicted_disk_ratio),
            (DropReason::Corrupt, self.dropped.corrupt),
        ]
        .into_iter()
        .map(|(r, c)| (r.as_str().to_string(), c.points))
        .collect()
    }

    /// Records dropped for the queue by reason label.
    pub fn dropped_records_by_reason(&self) -> Vec<(String, u64)> {
        [
            (DropReason::Cap, self.dropped.evicted_cap),
            (DropReason::DiskRatio, self.dropped.evicted_disk_ratio),
            (DropReason::Corrupt, self.dropped.corrupt),
        ]
        .into_iter()
        .map(|(r, c)| (r.as_str().to_string(), c.records))
        .collect()
    }
}

/// What the queue handle, the writer thread and readers share.
pub(crate) struct Shared {
    pub cfg: QueueConfig,
    pub state: Mutex<State>,
    pub notify: tokio::sync::Notify,
    /// Serialises position writes and segment deletions.
    pub maint: Mutex<()>,
    pub closed: AtomicBool,
    /// A consumer position changed since it was last written.
    pub dirty: AtomicBool,
    /// Holds the directory lock for the life of the queue.
    pub _lock: File,
}

impl Shared {
    fn persist_locked(&self) -> Result<(), QueueError> {
        self.dirty.store(false, Ordering::SeqCst);
        let todo: Vec<(usize, PathBuf, u64)> = {
            let st = lock(&self.state);
            st.consumers
                .iter()
                .enumerate()
                .filter(|(_, c)| c.committed != c.persisted)
                .map(|(i, c)| (i, c.pos_path.clone(), c.committed))
                .collect()
        };
        if todo.is_empty() {
            return Ok(());
        }
        for (_, path, seq) in &todo {
            if let Err(e) = position::store(path, *seq) {
                self.dirty.store(true, Ordering::SeqCst);
                return Err(QueueError::io(path.clone(), "write the position file", e));
            }
        }
        if let Err(e) = position::sync_dir(&self.cfg.dir) {
            self.dirty.store(true, Ordering::SeqCst);
            return Err(QueueError::io(
                self.cfg.dir.clone(),
                "fsync the directory",
                e,
            ));
        }
        let mut st = lock(&self.state);
        for (i, _, seq) in todo {
            if let Some(c) = st.consumers.get_mut(i) {
                c.persisted = c.persisted.max(seq);
            }
        }
        Ok(())
    }

    /// Persists positions, then deletes the segments every consumer is done with.
    pub(crate) fn delete_consumed(&self) -> Result<(), QueueError> {
        let _m = lock(&self.maint);
        self.persist_locked()?;
        let paths = lock(&self.state).take_consumed_segments();
        for p in paths {
            if let Err(e) = std::fs::remove_file(&p)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %p.display(), error = %e, "Cannot delete a consumed queue segment; it stays on disk until the next start.");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_between_sums_known_records_only() {
        let mut s = Segment::empty(10, PathBuf::from("x"));
        s.points = vec![1, 2, 3];
        s.readable_last = 12;
        s.last_seq = 14;
        assert_eq!(s.points_between(10, 12), 6);
        assert_eq!(s.points_between(11, 14), 5);
        assert_eq!(s.points_between(13, 14), 0);
        assert_eq!(s.points_between(12, 11), 0);
        assert!(!s.is_empty());
        assert!(Segment::empty(5, PathBuf::from("y")).is_empty());
    }
}
