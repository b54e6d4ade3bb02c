//! The durable per-category queue: append with group-commit fsync, named consumers, bounded disk,
//! crash recovery.
//!
//! **Acknowledged means on disk**: [`Queue::append`] resolves only once the record is written and
//! fdatasync'ed. Nothing acknowledged is lost except by counted cap eviction (oldest segment
//! first) or by corruption of the disk itself (counted, skipped, never a crash).
//!
//! Layout of a queue directory:
//! - `<20-digit first seq>.seg`: segments of framed records (see the `frame` module), rotated at
//!   `segment_bytes`; a segment is deleted once every consumer has committed past it.
//! - `<consumer>.pos`: each consumer's committed sequence number, written atomically and lazily
//!   (at most every 100 ms, before any segment deletion, and at close). A lost position only
//!   means records are read again: delivery is at-least-once.
//! - `queue.lock`: held (flock) while the queue is open.
//!
//! One writer thread owns the write segment; appenders hand it records over a channel and it
//! writes everything pending with one `write` and one `fdatasync` (group commit).

mod config;
mod error;
mod frame;
mod fsstat;
mod position;
mod reader;
mod recover;
mod segment;
mod state;
mod writer;

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Sender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;
use tokio::sync::oneshot;

pub use config::QueueConfig;
pub use error::QueueError;
pub use frame::HEADER_LEN;
pub use fsstat::{FsUsage, usage as fs_usage};
pub use state::{ConsumerStats, Counts, Dropped, QueueStats};

use reader::PlanSeg;
use state::{Consumer, DropReason, Shared, State, lock};
use writer::{AppendReq, Msg, Writer};

/// One queued record: an opaque payload (encoded points) and how many points it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub points: u32,
    pub payload: Bytes,
}

/// What [`Queue::open`] found on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Readable records left in the queue.
    pub records: u64,
    /// Bytes of a torn (never acknowledged) write cut off the last segment.
    pub truncated_bytes: u64,
    /// Segments with a bad record followed by more data.
    pub corrupt_segments: u64,
    /// Records lost behind those bad records.
    pub skipped_records: u64,
}

/// A durable queue of records with named consumers. Cheap to clone; all clones share it.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    sh: Arc<Shared>,
    tx: Sender<Msg>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Inner {
    /// Asks the writer to finish what it was given, persist positions and exit; waits for it.
    fn stop_writer(&self) {
        let (ack_tx, ack_rx) = sync_channel(1);
        if self.tx.send(Msg::Shutdown(ack_tx)).is_ok() {
            let _ = ack_rx.recv();
        }
        if let Some(h) = lock(&self.thread).take() {
            let _ = h.join();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop_writer();
    }
}

impl Queue {
    /// Opens (creating) the queue and its named consumers; recovers after any crash.
    ///
    /// A consumer without a position file starts at the oldest queued record. Position files
    /// of consumers not named here are left alone and do not hold segments back.
    pub fn open(cfg: QueueConfig, consumers: &[&str]) -> Result<(Queue, Recovery), QueueError> {
        cfg.validate()?;
        for (i, c) in consumers.iter().enumerate() {
            if c.is_empty() {
                return Err(QueueError::Config("a consumer name is empty".into()));
            }
            if consumers[..i].contains(c) {
                return Err(QueueError::Config(format!(
                    "consumer {c:?} is listed twice"
                )));
            }
        }
        let dir = cfg.dir.clone();
        std::fs::create_dir_all(&dir)
            .map_err(|e| QueueError::io(dir.clone(), "create the queue directory", e))?;
        let lock_path = dir.join("queue.lock");
        let lock_file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| QueueError::io(lock_path.clone(), "open", e))?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(QueueError::Config(format!(
                    "queue directory {} is in use by another queue or process; stop it or use another directory",
                    dir.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(QueueError::io(lock_path, "lock", e));
            }
        }

        let rec = recover::recover(&cfg, consumers)?;
        let corrupt_lost = rec.recovery.skipped_records;
        let state = State {
            segments: rec.segments,
            active: rec.active,
            next_seq: rec.next_seq,
            disk_bytes: rec.disk_bytes,
            consumers: consumers
                .iter()
                .zip(rec.positions)
                .map(|(name, (pos_path, seq))| Consumer {
                    name: (*name).to_string(),
                    pos_path,
                    committed: seq,
                    persisted: seq,
                    dropped: Dropped::default(),
                    reader: Arc::new(Mutex::new(None)),
                })
                .collect(),
            cache: VecDeque::new(),
            cache_bytes: 0,
            cache_cap: cfg.mem_cache_bytes,
            closed: false,
            dropped: {
                let mut d = Dropped::default();
                d.add(DropReason::Corrupt, corrupt_lost, 0);
                d
            },
            fsyncs: 0,
            appended_records: 0,
            appended_points: 0,
            corrupt_segments: rec.recovery.corrupt_segments,
            rotate_asap: false,
        };
        let sh = Arc::new(Shared {
            cfg,
            state: Mutex::new(state),
            notify: tokio::sync::Notify::new(),
            maint: Mutex::new(()),
            closed: AtomicBool::new(false),
            dirty: AtomicBool::new(false),
            _lock: lock_file,
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let writer = Writer::new(
            sh.clone(),
            rx,
            rec.active_file,
            rec.active,
            rec.active_len,
            rec.next_seq,
        );
        let name = format!(
            "dk-queue-{}",
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || writer.run())
            .map_err(|e| QueueError::io(dir, "start the writer thread for", e))?;
        let queue = Queue {
            inner: Arc::new(Inner {
                sh,
                tx,
                thread: Mutex::new(Some(thread)),
            }),
        };
        Ok((queue, rec.recovery))
    }

    /// Appends a record; resolves only after it is written AND fsynced (group commit: many
    /// concurrent appenders share one fdatasync). Returns the record's sequence number.
    ///
    /// Errors: [`QueueError::Full`] (no_drop and a cap reached, or the filesystem too full
    /// to write anything), [`QueueError::Io`] (e.g. ENOSPC; nothing acknowledged),
    /// [`QueueError::RecordTooLarge`], [`QueueError::Closed`]. If the future is dropped
    /// before it resolves the record may still be written (a duplicate if the caller retries).
    pub async fn append(&self, record: Record) -> Result<u64, QueueError> {
        let sh = &self.inner.sh;
        let bytes = HEADER_LEN as u64 + record.payload.len() as u64;
        if bytes > sh.cfg.max_disk_bytes || u32::try_from(record.payload.len()).is_err() {
            return Err(QueueError::RecordTooLarge {
                bytes,
                cap: sh.cfg.max_disk_bytes.min(u64::from(u32::MAX)),
            });
        }
        if sh.closed.load(Ordering::SeqCst) {
            return Err(QueueError::Closed);
        }
        let (reply, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Msg::Append(AppendReq { record, reply }))
            .map_err(|_| QueueError::Closed)?;
        rx.await.map_err(|_| QueueError::Closed)?
    }

    /// Up to `max` records after the consumer's committed position; waits until at least one
    /// is available or [`close`](Self::close) is called (then returns an empty Vec).
    ///
    /// Reading does not move the position: until [`commit`](Self::commit), the same records
    /// are returned again. Records the queue lost meanwhile (evicted, corrupt) are skipped and
    /// counted in the consumer's [`Dropped`].
    pub async fn read(&self, consumer: &str, max: usize) -> Result<Vec<(u64, Record)>, QueueError> {
        self.read_within(consumer, max, usize::MAX).await
    }

    /// Like [`read`](Self::read) but stops after the record that brings the payload bytes
    /// returned to `max_bytes` (at least one record is returned): what a reader holds at once
    /// stays near `max_bytes` however large the records are.
    pub async fn read_within(
        &self,
        consumer: &str,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Record)>, QueueError> {
        loop {
            let notified = self.inner.sh.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if let Some(records) = self.read_now(consumer, max, max_bytes).await? {
                return Ok(records);
            }
            notified.await;
        }
    }

    /// Like [`read`](Self::read) but never waits for data: returns an empty Vec when the
    /// consumer has nothing pending.
    pub async fn try_read(
        &self,
        consumer: &str,
        max: usize,
    ) -> Result<Vec<(u64, Record)>, QueueError> {
        self.try_read_within(consumer, max, usize::MAX).await
    }

    /// Like [`try_read`](Self::try_read), within `max_bytes` as [`read_within`](Self::read_within).
    pub async fn try_read_within(
        &self,
        consumer: &str,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Record)>, QueueError> {
        Ok(self
            .read_now(consumer, max, max_bytes)
            .await?
            .unwrap_or_default())
    }

    /// `None` when nothing is pending for the consumer.
    async fn read_now(
        &self,
        consumer: &str,
        max: usize,
        max_bytes: usize,
    ) -> Result<Option<Vec<(u64, Record)>>, QueueError> {
        let sh = &self.inner.sh;
        loop {
            let (start, plan, upper, slot) = {
                let st = lock(&sh.state);
                if st.closed {
                    return Ok(Some(Vec::new()));
                }
                let i = st
                    .consumer_index(consumer)
                    .ok_or_else(|| QueueError::UnknownConsumer(consumer.to_string()))?;
                if max == 0 {
                    return Ok(Some(Vec::new()));
                }
                let start = st.consumers[i].committed + 1;
                if start >= st.next_seq {
                    return Ok(None);
                }
                if let Some(first) = st.cache_first()
                    && first <= start
                {
                    let skip = usize::try_from(start - first).unwrap_or(usize::MAX);
                    // At least one record, then while under max_bytes.
                    let mut bytes = None::<usize>;
                    let out = st
                        .cache
                        .iter()
                        .skip(skip)
                        .take(max)
                        .take_while(|c| {
                            let more = bytes.is_none_or(|b| b < max_bytes);
                            bytes = Some(bytes.unwrap_or(0).saturating_add(c.payload.len()));
                            more
                        })
                        .map(|c| {
                            (
                                c.seq,
                                Record {
                                    points: c.points,
                                    payload: c.payload.clone(),
                                },
                            )
                        })
                        .collect();
                    return Ok(Some(out));
                }
                // A plan over the segments holding about `max` records from `start` on.
                let mut plan = Vec::new();
                let mut estimate = 0u64;
                let mut upper = st.next_seq - 1;
                for s in st.segments.values() {
                    if s.is_empty() || s.last_seq < start {
                        continue;
                    }
                    plan.push(PlanSeg {
                        first: s.first,
                        path: s.path.clone(),
                        readable_len: s.readable_len,
                        readable_last: s.readable_last,
                        last_seq: s.last_seq,
                    });
                    estimate += s.last_seq - s.first.max(start) + 1;
                    if estimate >= max as u64 {
                        upper = s.last_seq;
                        break;
                    }
                }
                (start, plan, upper, st.consumers[i].reader.clone())
            };
            let read = tokio::task::spawn_blocking(move || {
                let mut slot = lock(&slot);
                reader::read(&mut slot, &plan, start, max, max_bytes, upper)
            })
            .await
            .map_err(|e| {
                QueueError::io(
                    sh.cfg.dir.clone(),
                    "read",
                    std::io::Error::other(e.to_string()),
                )
            })?;

            let mut st = lock(&sh.state);
            for &(seg_first, offset, seq) in &read.corrupt {
                let active = st.active;
                let Some(seg) = st.segments.get_mut(&seg_first) else {
                    continue;
                };
                if seq > seg.readable_last {
                    continue;
                }
                let lost = seg.readable_last - seq + 1;
                let points = seg.points_between(seq, seg.readable_last);
                let known_corrupt = seg.readable_last < seg.last_seq;
                seg.readable_last = seq - 1;
                seg.readable_len = offset;
                let path = seg.path.clone();
                if !known_corrupt {
                    st.corrupt_segments += 1;
                }
                st.dropped.add(DropReason::Corrupt, lost, points);
                if seg_first == active {
                    st.rotate_asap = true;
                }
                tracing::warn!(path = %path.display(), offset, seq, "Corrupt record in a queue segment; the rest of the segment is skipped.");
            }
            let i = st
                .consumer_index(consumer)
                .ok_or_else(|| QueueError::UnknownConsumer(consumer.to_string()))?;
            let before = st.consumers[i].committed;
            let cache_first = st.cache_first();
            for &(seg_first, from, to) in &read.skips {
                // What is still in memory is not lost.
                let to = cache_first.map_or(to, |f| to.min(f.saturating_sub(1)));
                let c = &st.consumers[i];
                let from = from.max(c.committed + 1);
                if from > to {
                    continue;
                }
                let points = st
                    .segments
                    .get(&seg_first)
                    .map_or(0, |s| s.points_between(from, to));
                let c = &mut st.consumers[i];
                c.dropped.add(DropReason::Corrupt, to - from + 1, points);
                c.committed = to;
            }
            let committed = st.consumers[i].committed;
            let mut records = read.records;
            records.retain(|(seq, _)| *seq > committed);
            if records.is_empty() {
                if let Some(e) = read.error {
                    return Err(e);
                }
                // Nothing readable up to `through`: gaps, skipped or evicted records.
                let through = read.through.min(st.next_seq - 1);
                let c = &mut st.consumers[i];
                c.committed = c.committed.max(through);
                if c.committed == before {
                    return Ok(None);
                }
                continue;
            }
            return Ok(Some(records));
        }
    }

    /// Marks every record up to and including `seq` as done for `consumer`. The position is
    /// persisted lazily (within 100 ms, and always before a segment it covers is deleted).
    /// When a segment is done for every consumer this resolves once the positions are saved
    /// and the segment deleted by the queue's own thread: no file I/O runs on the caller's
    /// (async) thread. `seq` beyond the last record is clamped; a `seq` at or below the current
    /// position changes nothing.
    pub async fn commit(&self, consumer: &str, seq: u64) -> Result<(), QueueError> {
        let sh = &self.inner.sh;
        let consumed = {
            let mut st = lock(&sh.state);
            let i = st
                .consumer_index(consumer)
                .ok_or_else(|| QueueError::UnknownConsumer(consumer.to_string()))?;
            let seq = seq.min(st.next_seq - 1);
            if seq <= st.consumers[i].committed {
                return Ok(());
            }
            st.consumers[i].committed = seq;
            st.cache_release_committed();
            st.has_consumed_segment()
        };
        let was_dirty = sh.dirty.swap(true, Ordering::SeqCst);
        if consumed {
            let (reply, rx) = oneshot::channel();
            self.inner
                .tx
                .send(Msg::Maintain(reply))
                .map_err(|_| QueueError::Closed)?;
            return rx.await.map_err(|_| QueueError::Closed)?;
        }
        if !was_dirty {
            let _ = self.inner.tx.send(Msg::Wake);
        }
        Ok(())
    }

    /// Bytes on disk, records and points pending per consumer, oldest pending record age,
    /// dropped records/points by reason, segments, fsyncs.
    pub fn stats(&self) -> QueueStats {
        lock(&self.inner.sh.state).stats()
    }

    /// Wakes readers (they return an empty Vec), finishes appends already handed to the writer,
    /// persists consumer positions and stops the writer; further appends fail with
    /// [`QueueError::Closed`]. Blocks briefly (one fsync) while the writer finishes.
    pub fn close(&self) {
        let sh = &self.inner.sh;
        sh.closed.store(true, Ordering::SeqCst);
        lock(&sh.state).closed = true;
        sh.notify.notify_waiters();
        self.inner.stop_writer();
    }

    /// Writes changed consumer positions now (otherwise done within 100 ms and at close), on
    /// the queue's own thread.
    pub async fn flush_positions(&self) -> Result<(), QueueError> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Msg::Maintain(reply))
            .map_err(|_| QueueError::Closed)?;
        rx.await.map_err(|_| QueueError::Closed)?
    }

    /// The queue directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.inner.sh.cfg.dir
    }
}
