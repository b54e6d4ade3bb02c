//! NT1, the native binary encoding of the CAT Java client (`NativeMessageCodec`), as Datakit
//! reads it: pure functions over bytes, no sockets.
//!
//! A TCP stream is a sequence of packets, each a `u32` big-endian length (at most
//! [`MAX_FRAME`]) and a body. [`Framer`] cuts a stream into bodies whatever the read
//! boundaries; [`decode`] reads one body:
//!
//! - 3 bytes of version (`NT1`, not checked, as Datakit);
//! - 10 strings: domain, host name, ip address, thread group, thread id, thread name, message
//!   id, parent message id, root message id, session token;
//! - records until the end, each an id byte: `t` (timestamp, type, name: a transaction
//!   starts), `T` (status, data, duration in µs: the innermost open transaction ends), `E`
//!   `M` `L` `H` (timestamp, type, name, status, data). Other ids are skipped one byte at a
//!   time.
//!
//! A string is a LEB128 varint length and its bytes; numbers are LEB128 varints.
//!
//! Only what the mapping uses is kept: the last transaction closed (the root, when the tree
//! is well formed) and the data of the heartbeats (`H`). A `T` with no open transaction is
//! counted in [`Message::stray_ends`] and skipped (Datakit's goroutine panics there).

/// Largest packet body accepted (Datakit's 200 KiB); a larger length closes the connection.
pub const MAX_FRAME: usize = 200 * 1024;

/// Why a stream or a body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Nt1Error {
    /// A packet announced more than [`MAX_FRAME`] bytes.
    #[error("a packet of {0} bytes is over the {MAX_FRAME}-byte cap (is this a CAT NT1 client?)")]
    TooLarge(usize),
    /// The body ended inside a header string or a record.
    #[error("the packet ends inside {0}")]
    Truncated(&'static str),
    /// A varint longer than 64 bits.
    #[error("a number in {0} is longer than 64 bits")]
    VarintOverflow(&'static str),
}

/// Cuts a TCP stream into packet bodies.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out.
    start: usize,
}

impl Framer {
    /// An empty framer.
    pub fn new() -> Framer {
        Framer::default()
    }

    /// Appends the bytes of one read.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete body, `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    /// [`Nt1Error::TooLarge`]: the stream cannot be read on (close the connection).
    pub fn next_body(&mut self) -> Result<Option<&[u8]>, Nt1Error> {
        let rest = &self.buf[self.start..];
        let Some(head) = rest.get(..4) else {
            self.compact();
            return Ok(None);
        };
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if len > MAX_FRAME {
            return Err(Nt1Error::TooLarge(len));
        }
        if rest.len() < 4 + len {
            self.compact();
            return Ok(None);
        }
        let from = self.start + 4;
        self.start = from + len;
        Ok(Some(&self.buf[from..from + len]))
    }

    /// Bytes held for an incomplete packet.
    pub fn held(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Moves the unread bytes to the front, and frees a large buffer once it is empty.
    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.is_empty() && self.buf.capacity() > 64 * 1024 {
            self.buf = Vec::new();
        }
    }
}

/// The 10 header strings of a message tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header<'a> {
    /// The application (CAT's domain): the `service`.
    pub domain: &'a [u8],
    /// The client's host name.
    pub hostname: &'a [u8],
    /// The client's ip address.
    pub ip: &'a [u8],
    /// Thread group name.
    pub thread_group: &'a [u8],
    /// Thread id.
    pub thread_id: &'a [u8],
    /// Thread name.
    pub thread_name: &'a [u8],
    /// This tree's message id.
    pub message_id: &'a [u8],
    /// The parent tree's message id (empty for an entry).
    pub parent_id: &'a [u8],
    /// The root tree's message id.
    pub root_id: &'a [u8],
    /// Session token.
    pub session_token: &'a [u8],
}

/// A closed transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transaction<'a> {
    /// Its type (`URL`, `SQL`, `System`...).
    pub kind: &'a [u8],
    /// Its name (`System` + `UploadMetric…` is normalised to `UploadMetric` by the mapping).
    pub name: &'a [u8],
    /// Start, Unix milliseconds.
    pub start_ms: u64,
    /// Status (`"0"` is success).
    pub status: &'a [u8],
    /// Duration in microseconds.
    pub duration_us: u64,
}

/// What one body holds that the mapping uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message<'a> {
    /// The header.
    pub header: Header<'a>,
    /// The last transaction closed: the root of a well-formed tree.
    pub root: Option<Transaction<'a>>,
    /// The data of every heartbeat (`H`) record (a `<status>` XML document).
    pub heartbeats: Vec<&'a [u8]>,
    /// `T` records with no open transaction (skipped).
    pub stray_ends: u32,
    /// Bytes skipped as unknown record ids.
    pub unknown_ids: u32,
}

/// Reads LEB128 varints and length-prefixed strings off a body.
struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.data.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn varint(&mut self, what: &'static str) -> Result<u64, Nt1Error> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte().ok_or(Nt1Error::Truncated(what))?;
            let part = u64::from(b & 0x7f);
            if shift == 63 && part > 1 {
                return Err(Nt1Error::VarintOverflow(what));
            }
            value |= part << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Nt1Error::VarintOverflow(what))
    }

    fn string(&mut self, what: &'static str) -> Result<&'a [u8], Nt1Error> {
        let len = self.varint(what)?;
        let len = usize::try_from(len).map_err(|_| Nt1Error::Truncated(what))?;
        let end = self
            .at
            .checked_add(len)
            .filter(|&e| e <= self.data.len())
            .ok_or(Nt1Error::Truncated(what))?;
        let s = &self.data[self.at..end];
        self.at = end;
        Ok(s)
    }
}

/// An open transaction.
struct Open<'a> {
    kind: &'a [u8],
    name: &'a [u8],
    start_ms: u64,
}

/// Reads one packet body.
///
/// # Errors
/// The body ends inside the header or a record, or holds a varint over 64 bits.
pub fn decode(body: &[u8]) -> Result<Message<'_>, Nt1Error> {
    let mut r = Reader { data: body, at: 0 };
    // The version ("NT1"), read and not checked, as Datakit.
    r.at = body.len().min(3);
    if body.len() < 3 {
        return Err(Nt1Error::Truncated("the version"));
    }
    let header = Header {
        domain: r.string("the domain")?,
        hostname: r.string("the host name")?,
        ip: r.string("the ip address")?,
        thread_group: r.string("the thread group")?,
        thread_id: r.string("the thread id")?,
        thread_name: r.string("the thread name")?,
        message_id: r.string("the message id")?,
        parent_id: r.string("the parent message id")?,
        root_id: r.string("the root message id")?,
        session_token: r.string("the session token")?,
    };
    let mut msg = Message {
        header,
        ..Message::default()
    };
    let mut open: Vec<Open<'_>> = Vec::new();
    while let Some(id) = r.byte() {
        match id {
            b't' => {
                let start_ms = r.varint("a transaction start")?;
                let kind = r.string("a transaction start")?;
                let name = r.string("a transaction start")?;
                open.push(Open {
                    kind,
                    name,
                    start_ms,
                });
            }
            b'T' => {
                let status = r.string("a transaction end")?;
                let _data = r.string("a transaction end")?;
                let duration_us = r.varint("a transaction end")?;
                match open.pop() {
                    Some(o) => {
                        msg.root = Some(Transaction {
                            kind: o.kind,
                            name: o.name,
                            start_ms: o.start_ms,
                            status,
                            duration_us,
                        });
                    }
                    None => msg.stray_ends += 1,
                }
            }
            b'E' | b'M' | b'L' | b'H' => {
                let what = match id {
                    b'E' => "an event",
                    b'M' => "a metric",
                    b'L' => "a trace log",
                    _ => "a heartbeat",
                };
                let _ts = r.varint(what)?;
                let _kind = r.string(what)?;
                let _name = r.string(what)?;
                let _status = r.string(what)?;
                let data = r.string(what)?;
                if id == b'H' {
                    msg.heartbeats.push(data);
                }
            }
            _ => msg.unknown_ids += 1,
        }
    }
    Ok(msg)
}

/// An NT1 encoder, for tests, benches and the fuzz seeds (the CAT client's side).
pub mod encode {
    /// Appends `v` as a LEB128 varint.
    pub fn varint(out: &mut Vec<u8>, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    /// Appends a length-prefixed string.
    pub fn string(out: &mut Vec<u8>, s: &[u8]) {
        varint(out, s.len() as u64);
        out.extend_from_slice(s);
    }

    /// A body's version and header (domain, host, ip, thread group/id/name, message id,
    /// parent id, root id, session token).
    pub fn header(fields: [&str; 10]) -> Vec<u8> {
        let mut out = b"NT1".to_vec();
        for f in fields {
            string(&mut out, f.as_bytes());
        }
        out
    }

    /// A `t` record.
    pub fn start(out: &mut Vec<u8>, ts_ms: u64, kind: &str, name: &str) {
        out.push(b't');
        varint(out, ts_ms);
        string(out, kind.as_bytes());
        string(out, name.as_bytes());
    }

    /// A `T` record.
    pub fn end(out: &mut Vec<u8>, status: &str, data: &str, duration_us: u64) {
        out.push(b'T');
        string(out, status.as_bytes());
        string(out, data.as_bytes());
        varint(out, duration_us);
    }

    /// An `E`, `M`, `L` or `H` record.
    pub fn record(out: &mut Vec<u8>, id: u8, ts_ms: u64, kind: &str, name: &str, data: &[u8]) {
        out.push(id);
        varint(out, ts_ms);
        string(out, kind.as_bytes());
        string(out, name.as_bytes());
        string(out, b"0");
        string(out, data);
    }

    /// `body` with its big-endian length in front.
    pub fn packet(body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    /// A packet of one transaction tree: a root `URL` transaction with a nested `SQL` one,
    /// an event and a metric.
    pub fn transaction_tree(message_id: &str, parent: &str, root: &str) -> Vec<u8> {
        let mut b = header([
            "shop",
            "web-1",
            "10.0.0.7",
            "main",
            "42",
            "http-nio-1",
            message_id,
            parent,
            root,
            "",
        ]);
        start(&mut b, 1_700_000_000_000, "URL", "/api/order");
        start(&mut b, 1_700_000_000_010, "SQL", "select order");
        record(
            &mut b,
            b'E',
            1_700_000_000_011,
            "SQL.Database",
            "jdbc:x",
            b"",
        );
        end(&mut b, "0", "select * from t", 2_500);
        record(&mut b, b'M', 1_700_000_000_020, "", "order.count", b"C1");
        end(&mut b, "0", "", 35_000);
        packet(&b)
    }

    /// A packet of a `Status` heartbeat carrying `xml`.
    pub fn heartbeat(xml: &[u8]) -> Vec<u8> {
        let mut b = header([
            "shop",
            "web-1",
            "10.0.0.7",
            "cat",
            "7",
            "cat-StatusUpdateTask",
            "shop-0a00-1",
            "",
            "",
            "",
        ]);
        start(&mut b, 1_700_000_000_000, "System", "Status");
        record(
            &mut b,
            b'H',
            1_700_000_000_000,
            "Heartbeat",
            "10.0.0.7",
            xml,
        );
        end(&mut b, "0", "", 1_000);
        packet(&b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_header_and_keeps_the_root_transaction_of_a_tree() {
        let wire = encode::transaction_tree("shop-0a000007-1", "", "");
        let mut f = Framer::new();
        f.push(&wire);
        let body = f.next_body().unwrap().unwrap().to_vec();
        let m = decode(&body).unwrap();
        assert_eq!(m.header.domain, b"shop");
        assert_eq!(m.header.hostname, b"web-1");
        assert_eq!(m.header.ip, b"10.0.0.7");
        assert_eq!(m.header.thread_name, b"http-nio-1");
        assert_eq!(m.header.message_id, b"shop-0a000007-1");
        let root = m.root.unwrap();
        assert_eq!(root.kind, b"URL");
        assert_eq!(root.name, b"/api/order");
        assert_eq!(root.start_ms, 1_700_000_000_000);
        assert_eq!(root.duration_us, 35_000);
        assert_eq!(root.status, b"0");
        assert_eq!((m.stray_ends, m.unknown_ids), (0, 0));
        assert!(f.next_body().unwrap().is_none());
    }

    #[test]
    fn reads_leb128_varints_of_every_width_and_refuses_more_than_64_bits() {
        for v in [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut b = Vec::new();
            encode::varint(&mut b, v);
            let mut r = Reader { data: &b, at: 0 };
            assert_eq!(r.varint("x"), Ok(v));
            assert_eq!(r.at, b.len());
        }
        // 300 as CAT writes it.
        let mut r = Reader {
            data: &[0xac, 0x02],
            at: 0,
        };
        assert_eq!(r.varint("x"), Ok(300));
        let long = [0xffu8; 11];
        let mut r = Reader { data: &long, at: 0 };
        assert_eq!(r.varint("x"), Err(Nt1Error::VarintOverflow("x")));
        let mut r = Reader {
            data: &[0x80],
            at: 0,
        };
        assert_eq!(r.varint("x"), Err(Nt1Error::Truncated("x")));
    }

    #[test]
    fn a_stray_end_is_counted_and_skipped_not_a_panic() {
        let mut b = encode::header(["d", "h", "", "", "", "", "id", "", "", ""]);
        encode::end(&mut b, "0", "", 5);
        encode::start(&mut b, 1_000, "URL", "/x");
        encode::end(&mut b, "500", "", 7);
        encode::end(&mut b, "0", "", 9);
        let m = decode(&b).unwrap();
        assert_eq!(m.stray_ends, 2);
        let root = m.root.unwrap();
        assert_eq!(
            (root.name, root.status, root.duration_us),
            (&b"/x"[..], &b"500"[..], 7)
        );
    }

    #[test]
    fn unknown_ids_are_skipped_one_byte_at_a_time_and_heartbeats_are_kept() {
        let mut b = encode::header(["d", "h", "", "", "", "", "id", "", "", ""]);
        b.extend_from_slice(b"zz");
        encode::start(&mut b, 1, "System", "Status");
        encode::record(&mut b, b'H', 1, "Heartbeat", "ip", b"<status/>");
        encode::record(&mut b, b'L', 1, "t", "n", b"log");
        encode::end(&mut b, "0", "", 1);
        let m = decode(&b).unwrap();
        assert_eq!(m.unknown_ids, 2);
        assert_eq!(m.heartbeats, vec![&b"<status/>"[..]]);
        assert_eq!(m.root.unwrap().name, b"Status");
    }

    #[test]
    fn a_truncated_body_is_an_error_naming_where_it_ended() {
        let wire = encode::transaction_tree("id", "", "");
        let body = &wire[4..];
        assert_eq!(decode(&body[..2]), Err(Nt1Error::Truncated("the version")));
        assert_eq!(decode(&body[..5]), Err(Nt1Error::Truncated("the domain")));
        let e = decode(&body[..body.len() - 1]).unwrap_err();
        assert_eq!(e, Nt1Error::Truncated("a transaction end"));
        // A string longer than what is left.
        let mut b = b"NT1".to_vec();
        encode::varint(&mut b, 1 << 40);
        assert_eq!(decode(&b), Err(Nt1Error::Truncated("the domain")));
    }

    #[test]
    fn the_framer_cuts_packets_across_reads_and_refuses_an_oversized_length() {
        let one = encode::transaction_tree("a", "", "");
        let two = encode::heartbeat(b"<status/>");
        let wire = [one.clone(), two.clone()].concat();
        let mut f = Framer::new();
        let mut bodies = Vec::new();
        for chunk in wire.chunks(3) {
            f.push(chunk);
            while let Some(b) = f.next_body().unwrap() {
                bodies.push(b.to_vec());
            }
        }
        assert_eq!(bodies, vec![one[4..].to_vec(), two[4..].to_vec()]);
        assert_eq!(f.held(), 0);
        let mut f = Framer::new();
        f.push(&((MAX_FRAME + 1) as u32).to_be_bytes());
        assert_eq!(f.next_body(), Err(Nt1Error::TooLarge(MAX_FRAME + 1)));
        let mut f = Framer::new();
        f.push(&(MAX_FRAME as u32).to_be_bytes());
        assert_eq!(f.next_body(), Ok(None), "exactly the cap is accepted");
    }
}
