//! Reading records of lagging consumers from segment files, never past the durable end.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use bytes::Bytes;

use crate::Record;
use crate::error::QueueError;
use crate::frame::{self, HEADER_LEN};

/// Bytes read from a segment file at a time.
const CHUNK: usize = 256 << 10;

/// A consumer's open segment file with a small buffer. Reads are positional (`pread`) and
/// bounded by the segment's durable length, so the buffer never holds bytes being written.
pub(crate) struct SegReader {
    first: u64,
    file: File,
    buf: Vec<u8>,
    /// Next unread byte in `buf`.
    pos: usize,
    /// File offset of `buf[pos]` (the next frame).
    offset: u64,
    next_seq: u64,
}

impl SegReader {
    fn open(first: u64, file: File) -> Self {
        SegReader {
            first,
            file,
            buf: Vec::new(),
            pos: 0,
            offset: 0,
            next_seq: first,
        }
    }

    /// First sequence number of the segment this reader is on.
    pub(crate) fn segment(&self) -> u64 {
        self.first
    }

    fn available(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Makes `n` bytes available at the cursor without reading at or past `limit`.
    fn ensure(&mut self, n: usize, limit: u64) -> io::Result<()> {
        if self.available() >= n {
            return Ok(());
        }
        if self.offset + n as u64 > limit {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.drain(..self.pos);
        self.pos = 0;
        if self.buf.is_empty() && self.buf.capacity() > 4 * CHUNK && n <= CHUNK {
            self.buf.shrink_to(CHUNK);
        }
        let have = self.buf.len();
        let file_pos = self.offset + have as u64;
        let want = (n - have).max(CHUNK) as u64;
        let want = usize::try_from(want.min(limit - file_pos)).unwrap_or(usize::MAX);
        self.buf.resize(have + want, 0);
        if let Err(e) = self.file.read_exact_at(&mut self.buf[have..], file_pos) {
            self.buf.truncate(have);
            return Err(e);
        }
        Ok(())
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        self.offset += n as u64;
    }

    /// Reads and checks the header of the next frame.
    fn header(&mut self, limit: u64) -> Result<frame::Header, Bad> {
        self.ensure(HEADER_LEN, limit)?;
        let mut hb = [0u8; HEADER_LEN];
        hb.copy_from_slice(&self.buf[self.pos..self.pos + HEADER_LEN]);
        let h = frame::parse_header(&hb);
        if h.seq != self.next_seq || self.offset + h.frame_len() > limit {
            return Err(Bad::Corrupt);
        }
        Ok(h)
    }

    /// Skips the next frame (header checked, payload not read when not buffered).
    fn skip(&mut self, limit: u64) -> Result<(), Bad> {
        let h = self.header(limit)?;
        let n = h.frame_len();
        if self.available() as u64 >= n {
            self.consume(n as usize);
        } else {
            self.buf.clear();
            self.pos = 0;
            self.offset += n;
        }
        self.next_seq += 1;
        Ok(())
    }

    /// Reads the next record, checking its CRC.
    fn next(&mut self, limit: u64) -> Result<(u64, Record), Bad> {
        let h = self.header(limit)?;
        let n = usize::try_from(h.frame_len()).map_err(|_| Bad::Corrupt)?;
        self.ensure(n, limit)?;
        let mut hb = [0u8; HEADER_LEN];
        hb.copy_from_slice(&self.buf[self.pos..self.pos + HEADER_LEN]);
        let payload = &self.buf[self.pos + HEADER_LEN..self.pos + n];
        if frame::checksum(&hb, payload) != h.crc {
            return Err(Bad::Corrupt);
        }
        let rec = Record {
            points: h.points,
            payload: Bytes::copy_from_slice(payload),
        };
        self.consume(n);
        let seq = self.next_seq;
        self.next_seq += 1;
        Ok((seq, rec))
    }
}

/// Why reading a frame failed.
enum Bad {
    /// Framing, sequence or checksum is wrong, or the file ends early.
    Corrupt,
    /// The file could not be read.
    Io(io::Error),
}

impl From<io::Error> for Bad {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            Bad::Corrupt
        } else {
            Bad::Io(e)
        }
    }
}

/// A segment as a reader sees it (a snapshot taken under the state lock).
#[derive(Debug, Clone)]
pub(crate) struct PlanSeg {
    pub first: u64,
    pub path: PathBuf,
    pub readable_len: u64,
    pub readable_last: u64,
    pub last_seq: u64,
}

/// What one disk read produced.
#[derive(Default)]
pub(crate) struct DiskRead {
    pub records: Vec<(u64, Record)>,
    /// `(segment, from, to)`: records that cannot be read (corrupt or missing file).
    pub skips: Vec<(u64, u64, u64)>,
    /// `(segment, byte offset, seq)`: corruption found now, at this record.
    pub corrupt: Vec<(u64, u64, u64)>,
    /// Every sequence number up to here was examined (records, skips or gaps).
    pub through: u64,
    pub error: Option<QueueError>,
}

/// Reads up to `max` records from `start` on through the planned segments, reusing the
/// consumer's open file when it is already positioned at or before `start`; stops after the
/// record that brings the payload bytes read to `max_bytes` (so at least one record).
///
/// Unreadable records are reported as skips only when no record precedes them in this read,
/// so applying the skips never moves a position past a record the consumer has not committed.
pub(crate) fn read(
    slot: &mut Option<SegReader>,
    plan: &[PlanSeg],
    start: u64,
    max: usize,
    max_bytes: usize,
    upper: u64,
) -> DiskRead {
    let mut out = DiskRead {
        through: start - 1,
        ..DiskRead::default()
    };
    let mut start = start;
    let mut budget = Budget {
        records: max,
        bytes: max_bytes,
        read: 0,
    };
    for seg in plan {
        let want = start.max(seg.first);
        if want > seg.last_seq {
            continue;
        }
        if want > seg.readable_last {
            if out.skip(seg.first, want, seg.last_seq) {
                return out;
            }
            start = seg.last_seq + 1;
            continue;
        }
        let reuse = slot
            .as_ref()
            .is_some_and(|r| r.first == seg.first && r.next_seq <= want);
        if !reuse {
            *slot = None;
            match File::open(&seg.path) {
                Ok(f) => *slot = Some(SegReader::open(seg.first, f)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // Deleted meanwhile (evicted or consumed); counted by whoever deleted it.
                    if out.skip(seg.first, want, seg.last_seq) {
                        return out;
                    }
                    start = seg.last_seq + 1;
                    continue;
                }
                Err(e) => {
                    out.error = Some(QueueError::io(seg.path.clone(), "open the segment", e));
                    return out;
                }
            }
        }
        let Some(r) = slot.as_mut() else {
            return out;
        };
        match read_segment(r, seg, want, &mut budget, &mut out.records) {
            Ok(true) => {
                out.stop();
                return out;
            }
            Ok(false) => {
                if seg.readable_last < seg.last_seq
                    && out.skip(seg.first, seg.readable_last + 1, seg.last_seq)
                {
                    return out;
                }
            }
            Err(Bad::Corrupt) => {
                out.corrupt.push((seg.first, r.offset, r.next_seq));
                let from = r.next_seq;
                *slot = None;
                if out.skip(seg.first, from, seg.last_seq) {
                    return out;
                }
            }
            Err(Bad::Io(e)) => {
                *slot = None;
                out.stop();
                out.error = Some(QueueError::io(seg.path.clone(), "read the segment", e));
                return out;
            }
        }
        start = seg.last_seq + 1;
    }
    out.through = upper.max(out.through);
    out
}

impl DiskRead {
    /// Ends the read at the last record collected.
    fn stop(&mut self) {
        self.through = self.records.last().map_or(self.through, |(s, _)| *s);
    }

    /// Notes unreadable records `from..=to`; true when the read must end before them
    /// because records were already collected.
    fn skip(&mut self, segment: u64, from: u64, to: u64) -> bool {
        if !self.records.is_empty() {
            self.stop();
            return true;
        }
        self.skips.push((segment, from, to));
        false
    }
}

/// Reads one segment's records from `want` on; `Ok(true)` when `max` records are collected.
/// How much one [`read`] may still collect.
struct Budget {
    records: usize,
    bytes: usize,
    /// Payload bytes collected so far.
    read: usize,
}

impl Budget {
    fn spent(&self, records: usize) -> bool {
        records >= self.records || (records > 0 && self.read >= self.bytes)
    }
}

fn read_segment(
    r: &mut SegReader,
    seg: &PlanSeg,
    want: u64,
    budget: &mut Budget,
    out: &mut Vec<(u64, Record)>,
) -> Result<bool, Bad> {
    let limit = seg.readable_len;
    while r.next_seq < want {
        r.skip(limit)?;
    }
    while r.next_seq <= seg.readable_last {
        if budget.spent(out.len()) {
            return Ok(true);
        }
        let rec = r.next(limit)?;
        budget.read = budget.read.saturating_add(rec.1.payload.len());
        out.push(rec);
    }
    Ok(budget.spent(out.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment_file(dir: &std::path::Path, first: u64, n: u64) -> (PlanSeg, Vec<u8>) {
        let mut buf = Vec::new();
        for i in 0..n {
            let p = vec![i as u8; 10 + i as usize];
            frame::encode(&mut buf, first + i, 1, 0, &p);
        }
        let path = dir.join(crate::segment::file_name(first));
        std::fs::write(&path, &buf).unwrap();
        let plan = PlanSeg {
            first,
            path,
            readable_len: buf.len() as u64,
            readable_last: first + n - 1,
            last_seq: first + n - 1,
        };
        (plan, buf)
    }

    #[test]
    fn a_read_stops_after_the_record_that_reaches_the_byte_budget_and_takes_at_least_one() {
        let dir = tempfile::tempdir().unwrap();
        // Payloads of 10, 11, 12, 13, 14, 15 bytes (seq 5..=10).
        let (plan, _) = segment_file(dir.path(), 5, 6);
        let mut slot = None;
        let seqs = |r: &DiskRead| r.records.iter().map(|(s, _)| *s).collect::<Vec<_>>();
        let r = read(&mut slot, std::slice::from_ref(&plan), 5, 64, 21, 10);
        assert_eq!(seqs(&r), vec![5, 6]);
        assert_eq!(r.through, 6);
        let r = read(&mut slot, std::slice::from_ref(&plan), 7, 64, 13, 10);
        assert_eq!(seqs(&r), vec![7, 8]);
        assert_eq!(r.through, 8);
        let r = read(&mut slot, std::slice::from_ref(&plan), 9, 64, 0, 10);
        assert_eq!(seqs(&r), vec![9]);
        assert_eq!(r.through, 9);
        let r = read(&mut slot, std::slice::from_ref(&plan), 10, 64, 0, 10);
        assert_eq!(seqs(&r), vec![10]);
        assert_eq!(r.through, 10);
    }

    #[test]
    fn reads_continue_from_the_open_file_and_stop_at_max() {
        let dir = tempfile::tempdir().unwrap();
        let (plan, _) = segment_file(dir.path(), 5, 6);
        let mut slot = None;
        let r = read(&mut slot, std::slice::from_ref(&plan), 5, 4, usize::MAX, 10);
        assert_eq!(
            r.records.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            vec![5, 6, 7, 8]
        );
        assert_eq!(r.through, 8);
        assert_eq!(r.records[2].1.payload.len(), 12);
        let r = read(&mut slot, std::slice::from_ref(&plan), 9, 4, usize::MAX, 10);
        assert_eq!(
            r.records.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            vec![9, 10]
        );
        assert_eq!(r.through, 10);
        assert!(r.skips.is_empty() && r.corrupt.is_empty() && r.error.is_none());
    }

    #[test]
    fn never_reads_past_the_durable_length() {
        let dir = tempfile::tempdir().unwrap();
        let (mut plan, buf) = segment_file(dir.path(), 1, 3);
        // Only the first two records are durable; the third is "being written".
        plan.readable_last = 2;
        plan.last_seq = 2;
        plan.readable_len = (2 * HEADER_LEN + 10 + 11) as u64;
        let mut slot = None;
        let r = read(&mut slot, std::slice::from_ref(&plan), 1, 10, usize::MAX, 2);
        assert_eq!(r.records.len(), 2);
        assert_eq!(slot.as_ref().unwrap().buf.len() as u64, plan.readable_len);
        plan.readable_last = 3;
        plan.last_seq = 3;
        plan.readable_len = buf.len() as u64;
        let r = read(&mut slot, std::slice::from_ref(&plan), 3, 10, usize::MAX, 3);
        assert_eq!(r.records.len(), 1);
        assert_eq!(r.records[0].1.payload.as_ref(), &[2u8; 12][..]);
    }

    #[test]
    fn corrupt_record_skips_the_rest_of_its_segment_and_reads_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let (a, mut buf) = segment_file(dir.path(), 1, 3);
        buf[HEADER_LEN + 10 + HEADER_LEN + 1] ^= 0xff; // payload of seq 2
        std::fs::write(&a.path, &buf).unwrap();
        let (b, _) = segment_file(dir.path(), 4, 2);
        let mut slot = None;
        let plan = [a, b];
        // Record 1 comes first: the read ends there, before the lost records.
        let r = read(&mut slot, &plan, 1, 10, usize::MAX, 5);
        assert_eq!(
            r.records.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            vec![1]
        );
        assert_eq!(r.corrupt, vec![(1, (HEADER_LEN + 10) as u64, 2)]);
        assert!(r.skips.is_empty());
        assert_eq!(r.through, 1);
        // Once 1 is done, the next read reports the skip and goes on to the next segment.
        let r = read(&mut slot, &plan, 2, 10, usize::MAX, 5);
        assert_eq!(
            r.records.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            vec![4, 5]
        );
        assert_eq!(r.skips, vec![(1, 2, 3)]);
        assert_eq!(r.through, 5);
    }
}
