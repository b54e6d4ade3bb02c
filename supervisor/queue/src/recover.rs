//! Recovery on open: scan the segments, cut a torn tail, skip corrupt parts, restore positions.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use crate::config::QueueConfig;
use crate::error::QueueError;
use crate::segment::{self, ScanEnd};
use crate::state::Segment;
use crate::{Recovery, position};

/// The queue as found on disk, ready to run.
pub(crate) struct Recovered {
    pub segments: BTreeMap<u64, Segment>,
    pub active: u64,
    pub active_file: File,
    pub active_len: u64,
    pub next_seq: u64,
    pub disk_bytes: u64,
    /// Per consumer (in the given order): position file and restored position.
    pub positions: Vec<(PathBuf, u64)>,
    pub recovery: Recovery,
}

fn io_err<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> QueueError + 'a {
    move |e| QueueError::io(path.to_path_buf(), action, e)
}

/// Scans `cfg.dir` (which exists and is locked) and prepares the write segment.
pub(crate) fn recover(cfg: &QueueConfig, consumers: &[&str]) -> Result<Recovered, QueueError> {
    let dir = &cfg.dir;
    let mut recovery = Recovery::default();

    // Segment files and leftovers of interrupted position writes.
    let mut found: Vec<(u64, PathBuf)> = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir, "list the queue directory"))? {
        let entry = entry.map_err(io_err(dir, "list the queue directory"))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if let Some(first) = segment::parse_file_name(name) {
            if first > 0 {
                found.push((first, entry.path()));
            }
        } else if name.ends_with(".pos.tmp") {
            let _ = fs::remove_file(entry.path());
        }
    }
    found.sort_unstable_by_key(|(first, _)| *first);

    let mut positions = Vec::with_capacity(consumers.len());
    for name in consumers {
        let path = position::path(dir, name);
        let seq = match position::load(&path) {
            Ok(seq) => seq.unwrap_or(0),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                tracing::warn!(path = %path.display(), "Damaged queue position file; the consumer starts from the oldest queued data (duplicates possible).");
                0
            }
            Err(e) => return Err(QueueError::io(path, "read the position file", e)),
        };
        positions.push((path, seq));
    }
    let max_committed = positions.iter().map(|(_, s)| *s).max().unwrap_or(0);
    let min_committed = positions.iter().map(|(_, s)| *s).min();

    let mut segments = BTreeMap::new();
    let mut seq_floor = 1u64;
    let n = found.len();
    for (i, (first, path)) in found.iter().enumerate() {
        let first = *first;
        let is_last = i + 1 == n;
        let next_first = found.get(i + 1).map(|(f, _)| *f);
        let file = File::open(path).map_err(io_err(path, "open the segment"))?;
        let file_len = file
            .metadata()
            .map_err(io_err(path, "stat the segment"))?
            .len();
        let scan = segment::scan(&file, first, file_len, is_last)
            .map_err(io_err(path, "scan the segment"))?;
        drop(file);
        let mut seg = Segment::empty(first, path.clone());
        seg.bytes = file_len;
        seg.readable_len = scan.valid_len;
        seg.points = scan.points;
        seg.first_ms = scan.first_ms;
        seg.readable_last = first - 1 + seg.points.len() as u64;
        seg.last_seq = seg.readable_last;
        if is_last {
            if scan.end != ScanEnd::Clean {
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(io_err(path, "open the segment"))?;
                f.set_len(scan.valid_len)
                    .and_then(|()| f.sync_all())
                    .map_err(io_err(path, "truncate the torn tail of"))?;
                recovery.truncated_bytes += file_len - scan.valid_len;
                seg.bytes = scan.valid_len;
                if scan.end == ScanEnd::Corrupt {
                    recovery.corrupt_segments += 1;
                    recovery.skipped_records += scan.walked;
                    if let Some(m) = scan.max_seq_after {
                        seq_floor = seq_floor.max(m.saturating_add(1));
                    }
                    tracing::warn!(path = %path.display(), offset = scan.valid_len, records = scan.walked, "Corrupt record in the last queue segment; the rest of it was cut off.");
                } else {
                    tracing::info!(path = %path.display(), bytes = file_len - scan.valid_len, "Cut a torn write (never acknowledged) off the last queue segment.");
                }
            }
        } else if scan.end != ScanEnd::Clean {
            recovery.corrupt_segments += 1;
            let lost = next_first.map_or(0, |nf| nf.saturating_sub(seg.readable_last + 1));
            recovery.skipped_records += lost;
            if lost > 0 {
                seg.last_seq = seg.readable_last + lost;
            }
            tracing::warn!(path = %path.display(), offset = scan.valid_len, records = lost, "Corrupt queue segment; the rest of it is skipped.");
        }
        if let Some(nf) = next_first
            && seg.last_seq >= nf
        {
            tracing::warn!(path = %path.display(), "Queue segment overlaps the next one; the overlap is ignored.");
            seg.last_seq = nf - 1;
            seg.readable_last = seg.readable_last.min(nf - 1);
            let keep = usize::try_from(seg.readable_last + 1 - first).unwrap_or(usize::MAX);
            seg.points.truncate(keep);
        }
        recovery.records += seg.readable_last + 1 - first;
        segments.insert(first, seg);
    }

    // The next sequence number never reuses one a consumer may have committed.
    let mut next_seq = seq_floor.max(max_committed + 1);
    let last = segments
        .values()
        .next_back()
        .map(|s| (s.first, s.last_seq, s.bytes, s.path.clone()));
    if let Some((_, last_seq, _, _)) = &last {
        next_seq = next_seq.max(last_seq + 1);
    }
    let (active, active_file, active_len) = match last {
        Some((first, last_seq, bytes, path)) if last_seq + 1 == next_seq => {
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io_err(&path, "open the segment"))?;
            (first, f, bytes)
        }
        _ => {
            let path = dir.join(segment::file_name(next_seq));
            let f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .map_err(io_err(&path, "create the segment"))?;
            position::sync_dir(dir).map_err(io_err(dir, "fsync the directory"))?;
            segments.insert(next_seq, Segment::empty(next_seq, path));
            (next_seq, f, 0)
        }
    };

    // Segments every consumer was done with (a crash between position write and delete), and
    // empty ones that are not written any more.
    let done: Vec<u64> = segments
        .values()
        .filter(|s| {
            s.first != active && (s.is_empty() || min_committed.is_some_and(|m| s.last_seq <= m))
        })
        .map(|s| s.first)
        .collect();
    for first in done {
        if let Some(s) = segments.remove(&first) {
            recovery.records -= s.readable_last + 1 - s.first;
            if let Err(e) = fs::remove_file(&s.path) {
                tracing::warn!(path = %s.path.display(), error = %e, "Cannot delete a consumed queue segment.");
            }
        }
    }
    let disk_bytes = segments.values().map(|s| s.bytes).sum();
    Ok(Recovered {
        segments,
        active,
        active_file,
        active_len,
        next_seq,
        disk_bytes,
        positions,
        recovery,
    })
}
