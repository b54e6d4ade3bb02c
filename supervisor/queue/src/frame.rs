//! On-disk record framing: a 28-byte little-endian header (CRC32, length, seq, points, time) then the payload.
//!
//! ```text
//! offset  size  field
//! 0       4     crc32 (crc32fast) over bytes 4..28 of the header followed by the payload
//! 4       4     payload length in bytes
//! 8       8     sequence number
//! 16      4     points in the payload
//! 20      8     append time, unix milliseconds
//! 28      len   payload
//! ```

/// Bytes of a record header.
pub const HEADER_LEN: usize = 28;

/// A decoded record header (not yet checked against its payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub crc: u32,
    pub len: u32,
    pub seq: u64,
    pub points: u32,
    pub time_ms: u64,
}

impl Header {
    /// Bytes of the whole frame (header and payload).
    pub(crate) fn frame_len(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.len)
    }
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Decodes a header from its 28 bytes.
pub(crate) fn parse_header(b: &[u8; HEADER_LEN]) -> Header {
    Header {
        crc: le_u32(&b[0..4]),
        len: le_u32(&b[4..8]),
        seq: le_u64(&b[8..16]),
        points: le_u32(&b[16..20]),
        time_ms: le_u64(&b[20..28]),
    }
}

/// The CRC a frame must carry: over the header after its CRC field, then the payload.
pub(crate) fn checksum(header: &[u8; HEADER_LEN], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&header[4..]);
    h.update(payload);
    h.finalize()
}

/// Appends one encoded frame to `buf`. The caller guarantees `payload.len() <= u32::MAX`.
pub(crate) fn encode(buf: &mut Vec<u8>, seq: u64, points: u32, time_ms: u64, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut header = [0u8; HEADER_LEN];
    header[4..8].copy_from_slice(&len.to_le_bytes());
    header[8..16].copy_from_slice(&seq.to_le_bytes());
    header[16..20].copy_from_slice(&points.to_le_bytes());
    header[20..28].copy_from_slice(&time_ms.to_le_bytes());
    let crc = checksum(&header, payload);
    header[0..4].copy_from_slice(&crc.to_le_bytes());
    buf.extend_from_slice(&header);
    buf.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_frame_round_trips_and_its_crc_covers_header_and_payload() {
        let mut buf = Vec::new();
        encode(&mut buf, 42, 7, 1_700_000_000_123, b"hello");
        assert_eq!(buf.len(), HEADER_LEN + 5);
        let mut hb = [0u8; HEADER_LEN];
        hb.copy_from_slice(&buf[..HEADER_LEN]);
        let h = parse_header(&hb);
        assert_eq!(
            (h.len, h.seq, h.points, h.time_ms),
            (5, 42, 7, 1_700_000_000_123)
        );
        assert_eq!(h.crc, checksum(&hb, &buf[HEADER_LEN..]));
        assert_eq!(h.frame_len(), 33);
        // A flipped bit in the seq field or in the payload changes the checksum.
        let mut bad = hb;
        bad[9] ^= 1;
        assert_ne!(h.crc, checksum(&bad, &buf[HEADER_LEN..]));
        assert_ne!(h.crc, checksum(&hb, b"hellp"));
    }

    #[test]
    fn all_zero_header_never_passes_the_checksum() {
        let hb = [0u8; HEADER_LEN];
        assert_ne!(parse_header(&hb).crc, checksum(&hb, &[]));
    }
}
