//! The writer thread: owns the write segment, group-commits appends (one write, one fdatasync per
//! batch), rotates segments and enforces the disk caps.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::Record;
use crate::error::{QueueError, copy_io};
use crate::frame::{self, HEADER_LEN};
use crate::fsstat::{self, FsUsage};
use crate::state::{Cached, DropReason, Segment, Shared, lock, now_ms};
use crate::{position, segment};

/// Changed consumer positions are written at most this often (and at close).
const PERSIST_EVERY: Duration = Duration::from_millis(100);
/// A batch stops growing at this many payload bytes.
const MAX_BATCH_BYTES: usize = 8 << 20;

/// Messages to the writer thread.
pub(crate) enum Msg {
    Append(AppendReq),
    /// A consumer position changed: write it within [`PERSIST_EVERY`].
    Wake,
    /// A consumer finished a segment: persist positions, delete the consumed segments now
    /// and answer (so commits never do file I/O on the caller's thread).
    Maintain(oneshot::Sender<Result<(), QueueError>>),
    /// Persist positions, answer, and exit.
    Shutdown(SyncSender<()>),
}

/// One append waiting for its acknowledgement.
pub(crate) struct AppendReq {
    pub record: Record,
    pub reply: oneshot::Sender<Result<u64, QueueError>>,
}

/// A record encoded into the write buffer, not yet durable.
struct Pending {
    reply: oneshot::Sender<Result<u64, QueueError>>,
    seq: u64,
    points: u32,
    payload: Bytes,
}

/// Filesystem usage read once per batch, adjusted by what the batch wrote and freed.
struct FsView {
    usage: FsUsage,
    delta: i128,
}

pub(crate) struct Writer {
    sh: Arc<Shared>,
    rx: Receiver<Msg>,
    file: File,
    active_first: u64,
    /// Durable length of the write segment.
    active_len: u64,
    next_seq: u64,
    /// A failed write may have left bytes past `active_len` that could not be cut yet.
    repair: bool,
    buf: Vec<u8>,
    unit: Vec<Pending>,
    /// How many appends the last batch gathered: wait (up to the commit window) for as many.
    target: usize,
    last_persist: Instant,
    fs: Option<FsView>,
    batch_ms: u64,
    statvfs_warned: bool,
    /// Commits waiting for their positions to be persisted and consumed segments deleted.
    maintain: Vec<oneshot::Sender<Result<(), QueueError>>>,
}

impl Writer {
    pub(crate) fn new(
        sh: Arc<Shared>,
        rx: Receiver<Msg>,
        file: File,
        active_first: u64,
        active_len: u64,
        next_seq: u64,
    ) -> Self {
        Writer {
            sh,
            rx,
            file,
            active_first,
            active_len,
            next_seq,
            repair: false,
            buf: Vec::new(),
            unit: Vec::new(),
            target: 1,
            last_persist: Instant::now(),
            fs: None,
            batch_ms: 0,
            statvfs_warned: false,
            maintain: Vec::new(),
        }
    }

    /// The thread's body: runs until shutdown or until every queue handle is gone.
    pub(crate) fn run(mut self) {
        loop {
            let msg = if self.sh.dirty.load(Ordering::SeqCst) {
                let wait = PERSIST_EVERY.saturating_sub(self.last_persist.elapsed());
                match self.rx.recv_timeout(wait) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match self.rx.recv() {
                    Ok(m) => Some(m),
                    Err(_) => break,
                }
            };
            let mut shutdown = None;
            match msg {
                Some(Msg::Append(req)) => {
                    let mut batch = vec![req];
                    shutdown = self.gather(&mut batch);
                    self.write_batch(batch);
                }
                Some(Msg::Shutdown(ack)) => shutdown = Some(ack),
                Some(Msg::Maintain(reply)) => self.maintain.push(reply),
                Some(Msg::Wake) | None => {}
            }
            if !self.maintain.is_empty() {
                self.maintain_now();
            }
            if shutdown.is_some()
                || (self.sh.dirty.load(Ordering::SeqCst)
                    && self.last_persist.elapsed() >= PERSIST_EVERY)
            {
                self.persist();
            }
            if let Some(ack) = shutdown {
                while let Ok(m) = self.rx.try_recv() {
                    match m {
                        Msg::Append(req) => {
                            let _ = req.reply.send(Err(QueueError::Closed));
                        }
                        Msg::Maintain(reply) => self.maintain.push(reply),
                        Msg::Wake | Msg::Shutdown(_) => {}
                    }
                }
                if !self.maintain.is_empty() {
                    self.maintain_now();
                }
                let _ = ack.send(());
                return;
            }
        }
        self.persist();
    }

    /// Persists positions and deletes consumed segments for the waiting commits; answers them.
    fn maintain_now(&mut self) {
        self.last_persist = Instant::now();
        let result = self.sh.delete_consumed();
        let mut waiting = std::mem::take(&mut self.maintain).into_iter();
        match result {
            Ok(()) => waiting.for_each(|w| {
                let _ = w.send(Ok(()));
            }),
            Err(e) => {
                let path = self.sh.cfg.dir.clone();
                for w in waiting.by_ref() {
                    let copy = match &e {
                        QueueError::Io {
                            path,
                            action,
                            source,
                        } => QueueError::io(path.clone(), action, copy_io(source)),
                        other => QueueError::io(
                            path.clone(),
                            "save positions in",
                            std::io::Error::other(other.to_string()),
                        ),
                    };
                    let _ = w.send(Err(copy));
                }
            }
        }
    }

    fn persist(&mut self) {
        self.last_persist = Instant::now();
        if let Err(e) = self.sh.delete_consumed() {
            tracing::warn!(error = %e, "Cannot save queue consumer positions; records may be sent twice after a restart.");
        }
    }

    /// Adds what is already queued to the batch and, when recent batches were larger, waits
    /// up to the commit window for as many appends; returns a shutdown request seen meanwhile.
    fn gather(&mut self, batch: &mut Vec<AppendReq>) -> Option<SyncSender<()>> {
        let deadline = Instant::now() + self.sh.cfg.commit_window;
        let mut bytes: usize = batch.iter().map(|r| r.record.payload.len()).sum();
        let mut shutdown = None;
        while bytes < MAX_BATCH_BYTES {
            let msg = match self.rx.try_recv() {
                Ok(m) => m,
                Err(TryRecvError::Empty) => {
                    let now = Instant::now();
                    if batch.len() >= self.target || now >= deadline {
                        break;
                    }
                    match self.rx.recv_timeout(deadline - now) {
                        Ok(m) => m,
                        Err(_) => break,
                    }
                }
                Err(TryRecvError::Disconnected) => break,
            };
            match msg {
                Msg::Append(r) => {
                    bytes += r.record.payload.len();
                    batch.push(r);
                }
                Msg::Wake => {}
                Msg::Maintain(reply) => self.maintain.push(reply),
                Msg::Shutdown(ack) => {
                    shutdown = Some(ack);
                    break;
                }
            }
        }
        self.target = batch.len();
        shutdown
    }

    fn write_batch(&mut self, batch: Vec<AppendReq>) {
        self.fs = None;
        self.batch_ms = now_ms();
        let rotate_asap = lock(&self.sh.state).rotate_asap;
        if rotate_asap && self.active_len > 0 {
            self.rotate_or_warn();
        }
        for req in batch {
            let AppendReq { record, reply } = req;
            let frame_len = (HEADER_LEN + record.payload.len()) as u64;
            let used = self.active_len + self.buf.len() as u64;
            if used > 0 && used + frame_len > self.sh.cfg.segment_bytes {
                self.flush();
                self.rotate_or_warn();
            }
            if let Err(e) = self.make_room(frame_len) {
                let _ = reply.send(Err(e));
                continue;
            }
            frame::encode(
                &mut self.buf,
                self.next_seq,
                record.points,
                self.batch_ms,
                &record.payload,
            );
            self.unit.push(Pending {
                reply,
                seq: self.next_seq,
                points: record.points,
                payload: record.payload,
            });
            self.next_seq += 1;
        }
        self.flush();
    }

    /// Rotates for size; a failure only means the current segment grows past its size.
    fn rotate_or_warn(&mut self) {
        if self.active_len == 0 {
            return;
        }
        if let Err(e) = self.rotate() {
            tracing::warn!(error = %e, "Cannot start a new queue segment; the current one keeps growing.");
        }
    }

    /// Evicts (or refuses, with `no_drop`) until a frame of `frame_len` bytes fits both caps.
    fn make_room(&mut self, frame_len: u64) -> Result<(), QueueError> {
        let sh = self.sh.clone();
        let cfg = &sh.cfg;
        loop {
            let disk = lock(&sh.state).disk_bytes + self.buf.len() as u64 + frame_len;
            let over_cap = disk > cfg.max_disk_bytes;
            let over_ratio = !over_cap && self.over_ratio(frame_len);
            if !over_cap && !over_ratio {
                return Ok(());
            }
            let reason = if over_cap {
                DropReason::Cap
            } else {
                DropReason::DiskRatio
            };
            if cfg.no_drop {
                return Err(QueueError::Full(self.full_message(reason)));
            }
            let evicted = lock(&sh.state).evict_oldest(reason);
            if let Some((path, bytes, lost)) = evicted {
                tracing::warn!(
                    path = %path.display(),
                    reason = reason.as_str(),
                    records = lost.records,
                    points = lost.points,
                    "Queue full: dropped its oldest segment."
                );
                if let Err(e) = std::fs::remove_file(&path)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(path = %path.display(), error = %e, "Cannot delete an evicted queue segment.");
                }
                if let Some(fs) = &mut self.fs {
                    fs.delta -= i128::from(bytes);
                }
                continue;
            }
            if self.active_len + self.buf.len() as u64 > 0 {
                self.flush();
                if self.active_len > 0 {
                    self.rotate()?;
                }
                continue;
            }
            return Err(QueueError::Full(self.full_message(reason)));
        }
    }

    fn over_ratio(&mut self, frame_len: u64) -> bool {
        let ratio = self.sh.cfg.max_disk_ratio;
        if ratio >= 1.0 {
            return false;
        }
        if self.fs.is_none() {
            match fsstat::usage(&self.sh.cfg.dir) {
                Ok(usage) => self.fs = Some(FsView { usage, delta: 0 }),
                Err(e) => {
                    if !self.statvfs_warned {
                        self.statvfs_warned = true;
                        tracing::warn!(dir = %self.sh.cfg.dir.display(), error = %e, "Cannot read the filesystem usage; the max_disk_ratio check is off.");
                    }
                    return false;
                }
            }
        }
        let Some(fs) = &self.fs else {
            return false;
        };
        fs.usage
            .ratio_with(fs.delta + self.buf.len() as i128 + i128::from(frame_len))
            > ratio
    }

    fn full_message(&self, reason: DropReason) -> String {
        let cfg = &self.sh.cfg;
        match reason {
            DropReason::DiskRatio => format!(
                "queue {} is full: the filesystem would be more than {:.0}% used (max_disk_ratio); \
                 free disk space or move the data directory",
                cfg.dir.display(),
                cfg.max_disk_ratio * 100.0
            ),
            _ => format!(
                "queue {} is full: {} bytes of max_disk_bytes {} are used ([dataway.wal] max_capacity_gb) \
                 and the category may not drop data (no_drop_categories); wait for the sink to catch up, \
                 raise max_capacity_gb, or allow drops for this category",
                cfg.dir.display(),
                lock(&self.sh.state).disk_bytes,
                cfg.max_disk_bytes
            ),
        }
    }

    /// Writes the buffered records with one write and one fdatasync, then publishes and
    /// acknowledges them; on failure cuts the file back and fails them (nothing acknowledged).
    fn flush(&mut self) {
        if self.unit.is_empty() {
            return;
        }
        let len = self.buf.len() as u64;
        let mut result = Ok(());
        if self.repair {
            result = self
                .file
                .set_len(self.active_len)
                .map(|()| self.repair = false);
        }
        if result.is_ok() {
            result = self.file.write_all_at(&self.buf, self.active_len);
        }
        if result.is_ok() {
            position::debug_fsync_pause();
            result = self.file.sync_data();
        }
        let unit = std::mem::take(&mut self.unit);
        self.buf.clear();
        match result {
            Ok(()) => {
                self.active_len += len;
                if let Some(fs) = &mut self.fs {
                    fs.delta += i128::from(len);
                }
                self.publish(unit, len);
            }
            Err(e) => {
                if self.file.set_len(self.active_len).is_err() {
                    self.repair = true;
                }
                self.next_seq = unit.first().map_or(self.next_seq, |p| p.seq);
                lock(&self.sh.state).fsyncs += 1;
                tracing::warn!(records = unit.len(), error = %e, "Cannot write to the queue; the appends fail and may be retried.");
                let path = self.sh.cfg.dir.join(segment::file_name(self.active_first));
                for p in unit {
                    let _ = p
                        .reply
                        .send(Err(QueueError::io(path.clone(), "write", copy_io(&e))));
                }
            }
        }
    }

    fn publish(&mut self, unit: Vec<Pending>, len: u64) {
        let Some(last) = unit.last().map(|p| p.seq) else {
            return;
        };
        {
            let mut st = lock(&self.sh.state);
            let ms = self.batch_ms;
            if let Some(seg) = st.segments.get_mut(&self.active_first) {
                if seg.is_empty() {
                    seg.first_ms = ms;
                }
                if seg.readable_last == seg.last_seq {
                    seg.readable_last = last;
                    seg.readable_len = self.active_len;
                }
                seg.last_seq = last;
                seg.bytes = self.active_len;
                seg.points.extend(unit.iter().map(|p| p.points));
            }
            st.disk_bytes += len;
            st.next_seq = self.next_seq;
            st.fsyncs += 1;
            st.appended_records += unit.len() as u64;
            st.appended_points += unit.iter().map(|p| u64::from(p.points)).sum::<u64>();
            for p in &unit {
                st.cache_push(Cached {
                    seq: p.seq,
                    points: p.points,
                    time_ms: ms,
                    payload: p.payload.clone(),
                });
            }
        }
        self.sh.notify.notify_waiters();
        for p in unit {
            let _ = p.reply.send(Ok(p.seq));
        }
    }

    /// Starts a new write segment named after the next sequence number (the buffer must be
    /// flushed); the directory is fsynced so the new name survives a crash.
    fn rotate(&mut self) -> Result<(), QueueError> {
        let dir = &self.sh.cfg.dir;
        let old = dir.join(segment::file_name(self.active_first));
        if self.repair {
            self.file
                .set_len(self.active_len)
                .and_then(|()| {
                    position::debug_fsync_pause();
                    self.file.sync_data()
                })
                .map_err(|e| QueueError::io(old, "truncate a failed write in", e))?;
            self.repair = false;
        }
        let first = self.next_seq;
        let path = dir.join(segment::file_name(first));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| QueueError::io(path.clone(), "create the segment", e))?;
        if let Err(e) = position::sync_dir(dir) {
            drop(file);
            let _ = std::fs::remove_file(&path);
            return Err(QueueError::io(dir.clone(), "fsync the directory", e));
        }
        {
            let mut st = lock(&self.sh.state);
            st.fsyncs += 1;
            st.segments.insert(first, Segment::empty(first, path));
            st.active = first;
            st.rotate_asap = false;
        }
        self.file = file;
        self.active_first = first;
        self.active_len = 0;
        Ok(())
    }
}
