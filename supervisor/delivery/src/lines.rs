//! Line protocol written straight from queued protobuf records, without decoding them into
//! owned points first (the local-files sink's input), cut into chunks per sink write.
//!
//! Each line is `dk_proto::lineproto::encode_point_ref` of a point borrowed with
//! `dk_proto::pb::decode_each`: the bytes `encode_point` writes for the decoded point.

use dk_proto::lineproto::encode_point_ref;

/// Line protocol of queued records, cut into chunks of at most `max_points` points and
/// about `max_bytes` bytes (a chunk closes at the first line that reaches it).
#[derive(Default)]
pub(crate) struct Lines {
    /// One line per point, each ending in `\n` (a point with nothing to write is an empty
    /// line, as the local sink writes it).
    pub(crate) buf: Vec<u8>,
    /// `(end offset in buf, points)` of each chunk, in order.
    pub(crate) chunks: Vec<(usize, usize)>,
    /// Points in the chunk being filled.
    open_points: usize,
}

/// Where the chunk being filled starts.
fn open_start(chunks: &[(usize, usize)]) -> usize {
    chunks.last().map_or(0, |c| c.0)
}

impl Lines {
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.chunks.clear();
        self.open_points = 0;
    }

    /// Appends the points of one `PBPoints` record, closing a chunk when it holds
    /// `max_points` points or `max_bytes` bytes. On error nothing of the record is kept and
    /// the error is returned.
    pub(crate) fn push_record(
        &mut self,
        payload: &[u8],
        max_points: usize,
        max_bytes: usize,
    ) -> Result<(), dk_proto::pb::PbError> {
        let mark = (self.buf.len(), self.chunks.len(), self.open_points);
        let Lines {
            buf,
            chunks,
            open_points,
        } = self;
        let mut start = open_start(chunks);
        let result = dk_proto::pb::decode_each(payload, |p| {
            encode_point_ref(p, buf);
            buf.push(b'\n');
            *open_points += 1;
            if *open_points >= max_points || buf.len() - start >= max_bytes {
                start = buf.len();
                chunks.push((buf.len(), *open_points));
                *open_points = 0;
            }
        });
        if let Err(e) = result {
            self.buf.truncate(mark.0);
            self.chunks.truncate(mark.1);
            self.open_points = mark.2;
            return Err(e);
        }
        Ok(())
    }

    /// Closes the last chunk.
    pub(crate) fn finish(&mut self) {
        if self.open_points > 0 {
            self.chunks.push((self.buf.len(), self.open_points));
            self.open_points = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use dk_proto::{Point, Value};

    #[test]
    fn chunks_close_every_max_points_across_records() {
        let record = |n: usize| {
            let points: Vec<Point> = (0..n)
                .map(|i| Point::new("m", i as i64).field("f", Value::I(1)))
                .collect();
            dk_proto::pb::encode(&points)
        };
        let mut lines = Lines::default();
        lines.push_record(&record(3), 2, usize::MAX).unwrap();
        lines.push_record(&record(2), 2, usize::MAX).unwrap();
        lines.finish();
        let counts: Vec<usize> = lines.chunks.iter().map(|c| c.1).collect();
        assert_eq!(counts, vec![2, 2, 1]);
        assert_eq!(lines.chunks.last().unwrap().0, lines.buf.len());
        let text = String::from_utf8(lines.buf[..lines.chunks[0].0].to_vec()).unwrap();
        assert_eq!(text, "m f=1i 0\nm f=1i 1\n");
    }

    #[test]
    fn chunks_close_at_the_line_that_reaches_max_bytes() {
        let points: Vec<Point> = (0..5)
            .map(|i| Point::new("m", i).field("f", Value::I(1)))
            .collect();
        let mut lines = Lines::default();
        // Each line is 9 bytes ("m f=1i 0\n"): 10 bytes close a chunk every second line.
        lines
            .push_record(&dk_proto::pb::encode(&points), 1000, 10)
            .unwrap();
        lines
            .push_record(&dk_proto::pb::encode(&points[..1]), 1000, 10)
            .unwrap();
        lines.finish();
        assert_eq!(lines.chunks, vec![(18, 2), (36, 2), (54, 2)]);
    }

    #[test]
    fn a_corrupt_record_leaves_nothing_behind() {
        let good = dk_proto::pb::encode(&[
            Point::new("m", 1).field("f", Value::I(1)),
            Point::new("m", 2).field("f", Value::I(2)),
        ]);
        let mut lines = Lines::default();
        lines.push_record(&good, 3, usize::MAX).unwrap();
        let before = (lines.buf.clone(), lines.chunks.clone());
        // Two good points then garbage: the chunk closed at the third point is undone too.
        let mut bad = good.clone();
        bad.extend_from_slice(b"\x0a\x05abc");
        assert!(lines.push_record(&bad, 3, usize::MAX).is_err());
        assert_eq!((lines.buf.clone(), lines.chunks.clone()), before);
        lines.push_record(&good, 3, usize::MAX).unwrap();
        lines.finish();
        let counts: Vec<usize> = lines.chunks.iter().map(|c| c.1).collect();
        assert_eq!(counts, vec![3, 1]);
    }
}
