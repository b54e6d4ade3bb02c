//! Sink input made straight from queued protobuf records, without decoding them into owned
//! points: line protocol (the local-files sink, Dataway `v1`) or `PBPoints` messages (Dataway
//! `v2`), cut into chunks, one per sink write.
//!
//! Every point is decoded once, borrowed, with `dk_proto::pb::decode_each_entry`, so a record
//! that does not decode is refused whole, as when it is decoded into owned points. A line is
//! `dk_proto::lineproto::encode_point_ref` of the point (the bytes `encode_point` writes for
//! the decoded point); a protobuf chunk is the points' entries copied as they are.

use dk_proto::lineproto::encode_point_ref;
use dk_proto::pb::PbError;

/// What the chunks hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Form {
    /// One line per point, each ending in `\n` (a point with nothing to write is an empty
    /// line, as the local sink writes it).
    Lines,
    /// Each chunk is a `PBPoints` message: its points' entries, in queue order.
    Protobuf,
}

/// Queued records in one [`Form`], cut into chunks of at most `max_points` points and about
/// `max_bytes` bytes (a chunk closes at the first point that reaches it).
pub(crate) struct Chunks {
    form: Form,
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

impl Chunks {
    pub(crate) fn new(form: Form) -> Self {
        Chunks {
            form,
            buf: Vec::new(),
            chunks: Vec::new(),
            open_points: 0,
        }
    }

    pub(crate) fn form(&self) -> Form {
        self.form
    }

    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.chunks.clear();
        self.open_points = 0;
    }

    /// The chunks in order: the bytes and the points of each.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], usize)> {
        let starts = std::iter::once(0).chain(self.chunks.iter().map(|c| c.0));
        starts
            .zip(&self.chunks)
            .map(|(start, &(end, n))| (&self.buf[start..end], n))
    }

    /// Appends the points of one `PBPoints` record, closing a chunk when it holds
    /// `max_points` points or `max_bytes` bytes. On error nothing of the record is kept and
    /// the error is returned.
    pub(crate) fn push_record(
        &mut self,
        payload: &[u8],
        max_points: usize,
        max_bytes: usize,
    ) -> Result<(), PbError> {
        let mark = (self.buf.len(), self.chunks.len(), self.open_points);
        let Chunks {
            form,
            buf,
            chunks,
            open_points,
        } = self;
        let mut start = open_start(chunks);
        let result = dk_proto::pb::decode_each_entry(payload, |entry, p| {
            match form {
                Form::Lines => {
                    encode_point_ref(p, buf);
                    buf.push(b'\n');
                }
                Form::Protobuf => buf.extend_from_slice(entry),
            }
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
        let mut lines = Chunks::new(Form::Lines);
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
        let mut lines = Chunks::new(Form::Lines);
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
        let mut lines = Chunks::new(Form::Lines);
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

    #[test]
    fn protobuf_chunks_are_the_messages_of_their_points_in_queue_order() {
        let points: Vec<Point> = (0..12)
            .map(|i| {
                Point::new(format!("m{i}"), i)
                    .tag("t", "v")
                    .field("f", Value::S("x".repeat(i as usize)))
            })
            .collect();
        let mut chunks = Chunks::new(Form::Protobuf);
        // Records of 5, 4 and 3 points; chunks of at most 4 points cut the first record.
        for record in [&points[..5], &points[5..9], &points[9..]] {
            chunks
                .push_record(&dk_proto::pb::encode(record), 4, usize::MAX)
                .unwrap();
        }
        chunks.finish();
        let got: Vec<(Vec<u8>, usize)> = chunks.iter().map(|(b, n)| (b.to_vec(), n)).collect();
        let want: Vec<(Vec<u8>, usize)> = points
            .chunks(4)
            .map(|c| (dk_proto::pb::encode(c), c.len()))
            .collect();
        assert_eq!(got, want);
        assert_eq!(dk_proto::pb::decode(&chunks.buf).unwrap(), points);
    }

    #[test]
    fn a_corrupt_record_leaves_no_protobuf_behind() {
        let good = dk_proto::pb::encode(&[Point::new("m", 1).field("f", Value::I(1))]);
        let mut bad = good.clone();
        bad.extend_from_slice(b"\x0a\x05abc");
        let mut chunks = Chunks::new(Form::Protobuf);
        chunks.push_record(&good, 10, usize::MAX).unwrap();
        assert!(chunks.push_record(&bad, 10, usize::MAX).is_err());
        chunks.push_record(&good, 10, usize::MAX).unwrap();
        chunks.finish();
        assert_eq!(
            chunks.iter().collect::<Vec<_>>(),
            vec![(&[good.clone(), good].concat()[..], 2)]
        );
    }
}
