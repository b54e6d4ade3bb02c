//! Segment files: their names (`<20-digit first seq>.seg`) and the recovery scan of one file.

use std::io::{self, BufReader, Read, Seek, SeekFrom};

use crate::frame::{self, HEADER_LEN};

/// File name of the segment whose first record has sequence number `first`.
pub(crate) fn file_name(first: u64) -> String {
    format!("{first:020}.seg")
}

/// The first sequence number named by a segment file name, if it is one.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// How the scan of a segment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScanEnd {
    /// Every byte belongs to a complete record.
    Clean,
    /// The file ends inside a record, or its final record fails its checksum.
    Torn,
    /// A bad record (checksum, sequence or framing) is followed by more bytes.
    Corrupt,
}

/// What a scan found in one segment file.
#[derive(Debug, Clone)]
pub(crate) struct Scan {
    /// Bytes from the start of the file up to the end of the last good record.
    pub valid_len: u64,
    /// Points of each good record, in order (the record count is its length).
    pub points: Vec<u32>,
    /// Append time of the first and last good record (0 if none).
    pub first_ms: u64,
    pub last_ms: u64,
    pub end: ScanEnd,
    /// For [`ScanEnd::Corrupt`] with checksums verified: frames that could still be walked
    /// from the bad record on (at least 1), and the highest sequence number among those of
    /// them whose checksum is good.
    pub walked: u64,
    pub max_seq_after: Option<u64>,
}

/// Scans a segment whose first record must be `first` and whose length is `file_len`.
///
/// With `verify` every payload is read and checked against its CRC (used for the segment
/// that was being written at the crash); without it only the headers are walked (sequence
/// continuity and framing), and readers check the CRCs when they read the records.
pub(crate) fn scan<R: Read + Seek>(
    file: R,
    first: u64,
    file_len: u64,
    verify: bool,
) -> io::Result<Scan> {
    let mut r = BufReader::with_capacity(256 << 10, file);
    r.seek(SeekFrom::Start(0))?;
    let mut out = Scan {
        valid_len: 0,
        points: Vec::new(),
        first_ms: 0,
        last_ms: 0,
        end: ScanEnd::Clean,
        walked: 0,
        max_seq_after: None,
    };
    let mut payload = Vec::new();
    let mut offset = 0u64;
    let mut expected = first;
    let mut hb = [0u8; HEADER_LEN];
    loop {
        let remaining = file_len - offset;
        if remaining == 0 {
            break;
        }
        if remaining < HEADER_LEN as u64 {
            out.end = ScanEnd::Torn;
            break;
        }
        if let Err(e) = r.read_exact(&mut hb) {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                out.end = ScanEnd::Torn;
                break;
            }
            return Err(e);
        }
        let h = frame::parse_header(&hb);
        if h.frame_len() > remaining {
            out.end = ScanEnd::Torn;
            break;
        }
        if h.seq != expected {
            out.end = ScanEnd::Corrupt;
            break;
        }
        if verify {
            payload.resize(h.len as usize, 0);
            r.read_exact(&mut payload)?;
            if frame::checksum(&hb, &payload) != h.crc {
                out.end = if offset + h.frame_len() == file_len {
                    ScanEnd::Torn
                } else {
                    ScanEnd::Corrupt
                };
                break;
            }
        } else {
            r.seek_relative(i64::from(h.len))?;
        }
        if out.points.is_empty() {
            out.first_ms = h.time_ms;
        }
        out.last_ms = h.time_ms;
        out.points.push(h.points);
        offset += h.frame_len();
        expected += 1;
    }
    out.valid_len = offset;
    if out.end == ScanEnd::Corrupt && verify {
        walk(&mut r, offset, file_len, &mut out)?;
    }
    Ok(out)
}

/// Walks frames by their length fields from a bad record to the end of the file.
fn walk<R: Read + Seek>(
    r: &mut BufReader<R>,
    from: u64,
    file_len: u64,
    out: &mut Scan,
) -> io::Result<()> {
    r.seek(SeekFrom::Start(from))?;
    let mut offset = from;
    let mut hb = [0u8; HEADER_LEN];
    let mut payload = Vec::new();
    while file_len - offset >= HEADER_LEN as u64 {
        r.read_exact(&mut hb)?;
        let h = frame::parse_header(&hb);
        if h.frame_len() > file_len - offset {
            break;
        }
        payload.resize(h.len as usize, 0);
        r.read_exact(&mut payload)?;
        out.walked += 1;
        if frame::checksum(&hb, &payload) == h.crc {
            out.max_seq_after = Some(out.max_seq_after.map_or(h.seq, |m| m.max(h.seq)));
        }
        offset += h.frame_len();
    }
    out.walked = out.walked.max(1);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn frames(first: u64, payloads: &[&[u8]]) -> Vec<u8> {
        let mut buf = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            frame::encode(&mut buf, first + i as u64, i as u32 + 1, 1000 + i as u64, p);
        }
        buf
    }

    #[test]
    fn segment_names_are_twenty_digits_and_parse_back() {
        assert_eq!(file_name(42), "00000000000000000042.seg");
        assert_eq!(parse_file_name(&file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_file_name("0042.seg"), None);
        assert_eq!(parse_file_name("0000000000000000004x.seg"), None);
        assert_eq!(parse_file_name("00000000000000000042.pos"), None);
    }

    #[test]
    fn clean_segment_scan_counts_every_record() {
        let buf = frames(10, &[b"a", b"bb", b""]);
        let s = scan(Cursor::new(&buf), 10, buf.len() as u64, true).unwrap();
        assert_eq!(s.end, ScanEnd::Clean);
        assert_eq!(s.points, vec![1, 2, 3]);
        assert_eq!(s.valid_len, buf.len() as u64);
        assert_eq!((s.first_ms, s.last_ms), (1000, 1002));
    }

    #[test]
    fn short_tail_and_bad_final_checksum_are_torn() {
        let buf = frames(1, &[b"aaaa", b"bbbb"]);
        let first_len = (HEADER_LEN + 4) as u64;
        let s = scan(
            Cursor::new(&buf[..buf.len() - 1]),
            1,
            buf.len() as u64 - 1,
            true,
        )
        .unwrap();
        assert_eq!(
            (s.end, s.valid_len, s.points.len()),
            (ScanEnd::Torn, first_len, 1)
        );
        let mut bad = buf;
        *bad.last_mut().unwrap() ^= 0xff;
        let s = scan(Cursor::new(&bad), 1, bad.len() as u64, true).unwrap();
        assert_eq!((s.end, s.valid_len), (ScanEnd::Torn, first_len));
    }

    #[test]
    fn bad_record_followed_by_more_is_corrupt_and_walked() {
        let mut buf = frames(1, &[b"aaaa", b"bbbb", b"cccc"]);
        buf[HEADER_LEN + 4 + HEADER_LEN] ^= 0xff; // payload of record 2
        let s = scan(Cursor::new(&buf), 1, buf.len() as u64, true).unwrap();
        assert_eq!(s.end, ScanEnd::Corrupt);
        assert_eq!(s.points.len(), 1);
        assert_eq!(s.walked, 2);
        assert_eq!(s.max_seq_after, Some(3));
        // Without verification the payload flip goes unnoticed: readers catch it.
        let s = scan(Cursor::new(&buf), 1, buf.len() as u64, false).unwrap();
        assert_eq!((s.end, s.points.len()), (ScanEnd::Clean, 3));
    }

    #[test]
    fn out_of_sequence_record_is_corrupt() {
        let mut buf = frames(1, &[b"a"]);
        buf.extend(frames(5, &[b"b"]));
        let s = scan(Cursor::new(&buf), 1, buf.len() as u64, false).unwrap();
        assert_eq!((s.end, s.points.len()), (ScanEnd::Corrupt, 1));
    }
}
