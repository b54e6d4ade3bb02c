//! Lumberjack v2 framing (the protocol of Beats' `output.logstash`): a pure, incremental
//! decoder from the bytes of one connection to complete windows of events, and the ack
//! encoder.
//!
//! All integers are big-endian `u32`; every frame starts with the version byte `'2'`:
//!
//! | frame | bytes |
//! |---|---|
//! | window | `'2' 'W' count` — a batch of `count` events follows |
//! | JSON event | `'2' 'J' seq len <len bytes of JSON>` |
//! | compressed | `'2' 'C' len <len bytes of zlib>` — holds more `'J'`/`'C'` frames of the same window |
//! | ack (to the client) | `'2' 'A' seq` — every event up to `seq` is safe |
//!
//! # Bounds
//! What one connection can make the decoder hold is capped by [`Limits`]: one frame's length
//! (a longer frame is refused before any of it is buffered), the events of a window, the
//! bytes a window decompresses to (zlib output is cut at the cap, so a zip bomb costs at most
//! the cap), and the nesting of compressed frames. An event over [`Limits::max_event`] is
//! skipped and counted (the client could never get it through; refusing it would make the
//! client resend the same window forever). Any other violation is a [`FrameError`]: the
//! connection is closed and the client resends the window that was not acknowledged.

use std::io::Read;

/// The version byte of every lumberjack v2 frame.
pub const VERSION: u8 = b'2';
/// Bytes of a window frame and of an ack frame.
pub const SHORT_FRAME: usize = 6;

/// Caps of one connection's decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest frame payload (a `'J'` event or a `'C'` compressed block) in bytes.
    pub max_frame: usize,
    /// Most events one window may announce.
    pub max_window: u32,
    /// Most bytes the compressed frames of one window may decompress to.
    pub max_decompressed: usize,
    /// Longest event JSON kept; longer ones are skipped and counted (Datakit's
    /// `maximum_length`).
    pub max_event: usize,
}

/// Beats' largest `bulk_max_size` in common use is 2,048; Logstash sets no limit.
pub const DEFAULT_MAX_WINDOW: u32 = 65_536;
/// One frame: enough for a compressed window of several thousand events.
pub const DEFAULT_MAX_FRAME: usize = 32 * 1024 * 1024;
/// What one window may decompress to.
pub const DEFAULT_MAX_DECOMPRESSED: usize = 64 * 1024 * 1024;
/// Datakit's `maximum_length`.
pub const DEFAULT_MAX_EVENT: usize = 262_144;
/// Compressed frames inside compressed frames.
const MAX_NESTING: usize = 2;

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_frame: DEFAULT_MAX_FRAME,
            max_window: DEFAULT_MAX_WINDOW,
            max_decompressed: DEFAULT_MAX_DECOMPRESSED,
            max_event: DEFAULT_MAX_EVENT,
        }
    }
}

/// Why a connection's stream cannot be decoded; the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The version byte is not `'2'`.
    #[error(
        "frame version {0:#04x} is not lumberjack v2 ('2'); configure the client for the v2 protocol (Beats' output.logstash)"
    )]
    Version(u8),
    /// A frame type the server does not take.
    #[error("unknown lumberjack frame type {0:#04x}; expected 'W', 'J' or 'C'")]
    Type(u8),
    /// A frame longer than [`Limits::max_frame`].
    #[error(
        "a frame of {len} bytes is over the {max}-byte cap; send smaller batches (bulk_max_size)"
    )]
    FrameTooLarge {
        /// Announced length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// A window over [`Limits::max_window`] events.
    #[error("a window of {count} events is over the cap of {max}; lower bulk_max_size")]
    WindowTooLarge {
        /// Announced events.
        count: u32,
        /// The cap.
        max: u32,
    },
    /// A window decompressing to more than [`Limits::max_decompressed`] bytes.
    #[error("a window decompresses to more than {0} bytes; send smaller batches")]
    DecompressedTooLarge(usize),
    /// The zlib stream of a compressed frame is broken.
    #[error("a compressed frame is not a valid zlib stream: {0}")]
    Zlib(String),
    /// An event frame before any window frame, or more events than the window announced.
    #[error("an event arrived outside a window (no window frame, or more events than announced)")]
    OutsideWindow,
    /// Compressed frames nested too deep.
    #[error("compressed frames are nested more than {MAX_NESTING} deep")]
    Nesting,
    /// A compressed frame ended inside a frame.
    #[error("a compressed frame ends in the middle of a frame")]
    Truncated,
}

/// One event: its sequence number and its JSON text (not yet parsed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The client's sequence number.
    pub seq: u32,
    /// The event's JSON bytes.
    pub json: Vec<u8>,
}

/// A complete window: every event the window frame announced (less the skipped ones).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Window {
    /// The events kept, in order.
    pub events: Vec<Event>,
    /// Events skipped as longer than [`Limits::max_event`].
    pub skipped: u32,
    /// The sequence number to acknowledge: that of the window's last event.
    pub ack: u32,
}

/// The window being read.
#[derive(Debug, Default)]
struct Open {
    expected: u32,
    received: u32,
    decompressed: usize,
    window: Window,
}

/// The decoder of one connection: feed it bytes, take complete windows.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    /// Bytes of a frame not yet complete (at most one frame).
    pending: Vec<u8>,
    open: Option<Open>,
    ready: Vec<Window>,
}

/// The keepalive go-lumber sends every 3 s while a window waits for its ack: an ack of 0.
pub const KEEPALIVE: [u8; SHORT_FRAME] = [VERSION, b'A', 0, 0, 0, 0];

/// Go-lumber's keepalive interval.
pub const KEEPALIVE_EVERY: std::time::Duration = std::time::Duration::from_secs(3);

/// The ack frame for `seq`.
pub fn ack(seq: u32) -> [u8; SHORT_FRAME] {
    let s = seq.to_be_bytes();
    [VERSION, b'A', s[0], s[1], s[2], s[3]]
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl Decoder {
    /// A decoder with these caps.
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            limits,
            pending: Vec::new(),
            open: None,
            ready: Vec::new(),
        }
    }

    /// Decodes what `bytes` completes; complete windows wait in [`Decoder::take`].
    ///
    /// # Errors
    /// A [`FrameError`]: the stream cannot go on (close the connection).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), FrameError> {
        if self.pending.is_empty() {
            let used = self.frames(bytes, 0)?;
            self.pending.extend_from_slice(&bytes[used..]);
        } else {
            self.pending.extend_from_slice(bytes);
            let pending = std::mem::take(&mut self.pending);
            let used = self.frames(&pending, 0)?;
            self.pending = pending;
            self.pending.drain(..used);
            if self.pending.capacity() > 4 * self.pending.len().max(64 * 1024) {
                self.pending.shrink_to_fit();
            }
        }
        Ok(())
    }

    /// The windows completed so far.
    pub fn take(&mut self) -> Vec<Window> {
        std::mem::take(&mut self.ready)
    }

    /// Whether a window is complete and waits to be taken.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Bytes held for an incomplete frame plus the events of the open window.
    pub fn held_bytes(&self) -> usize {
        self.pending.len()
            + self.open.as_ref().map_or(0, |o| {
                o.window.events.iter().map(|e| e.json.len()).sum::<usize>()
            })
    }

    /// Decodes the whole frames at the start of `b`; returns the bytes used. At `depth` > 0
    /// (inside a compressed frame) every byte must belong to a whole frame.
    fn frames(&mut self, b: &[u8], depth: usize) -> Result<usize, FrameError> {
        let mut at = 0;
        loop {
            let rest = &b[at..];
            if rest.len() < 2 {
                break;
            }
            if rest[0] != VERSION {
                return Err(FrameError::Version(rest[0]));
            }
            let used = match rest[1] {
                b'W' => {
                    if rest.len() < SHORT_FRAME {
                        break;
                    }
                    self.window(be32(&rest[2..]))?;
                    SHORT_FRAME
                }
                b'J' => {
                    if rest.len() < 10 {
                        break;
                    }
                    let len = self.frame_len(be32(&rest[6..]))?;
                    if rest.len() < 10 + len {
                        break;
                    }
                    self.event(be32(&rest[2..]), &rest[10..10 + len])?;
                    10 + len
                }
                b'C' => {
                    if rest.len() < 6 {
                        break;
                    }
                    let len = self.frame_len(be32(&rest[2..]))?;
                    if rest.len() < 6 + len {
                        break;
                    }
                    self.compressed(&rest[6..6 + len], depth)?;
                    6 + len
                }
                t => return Err(FrameError::Type(t)),
            };
            at += used;
        }
        if depth > 0 && at != b.len() {
            return Err(FrameError::Truncated);
        }
        Ok(at)
    }

    fn frame_len(&self, len: u32) -> Result<usize, FrameError> {
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > self.limits.max_frame {
            return Err(FrameError::FrameTooLarge {
                len,
                max: self.limits.max_frame,
            });
        }
        Ok(len)
    }

    fn window(&mut self, count: u32) -> Result<(), FrameError> {
        if count > self.limits.max_window {
            return Err(FrameError::WindowTooLarge {
                count,
                max: self.limits.max_window,
            });
        }
        if self.open.is_some() {
            // A new window before the last one was complete.
            return Err(FrameError::OutsideWindow);
        }
        // An empty window is ignored, as in go-lumber.
        if count > 0 {
            self.open = Some(Open {
                expected: count,
                ..Open::default()
            });
        }
        Ok(())
    }

    fn event(&mut self, seq: u32, json: &[u8]) -> Result<(), FrameError> {
        let Some(open) = self.open.as_mut() else {
            return Err(FrameError::OutsideWindow);
        };
        open.received += 1;
        open.window.ack = seq;
        if json.len() > self.limits.max_event {
            open.window.skipped += 1;
        } else {
            open.window.events.push(Event {
                seq,
                json: json.to_vec(),
            });
        }
        if open.received == open.expected
            && let Some(done) = self.open.take()
        {
            self.ready.push(done.window);
        }
        Ok(())
    }

    fn compressed(&mut self, z: &[u8], depth: usize) -> Result<(), FrameError> {
        if depth >= MAX_NESTING {
            return Err(FrameError::Nesting);
        }
        let Some(open) = self.open.as_ref() else {
            return Err(FrameError::OutsideWindow);
        };
        let room = self
            .limits
            .max_decompressed
            .saturating_sub(open.decompressed);
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(z)
            .take(room as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| FrameError::Zlib(e.to_string()))?;
        if out.len() > room {
            return Err(FrameError::DecompressedTooLarge(
                self.limits.max_decompressed,
            ));
        }
        if let Some(open) = self.open.as_mut() {
            open.decompressed += out.len();
        }
        let used = self.frames(&out, depth + 1)?;
        debug_assert_eq!(used, out.len());
        Ok(())
    }
}

/// Test and bench support: the frames a Beats client sends.
pub mod encode {
    use std::io::Write;

    /// A window frame.
    pub fn window(count: u32) -> Vec<u8> {
        let mut v = vec![super::VERSION, b'W'];
        v.extend_from_slice(&count.to_be_bytes());
        v
    }

    /// A JSON event frame.
    pub fn json(seq: u32, json: &[u8]) -> Vec<u8> {
        let mut v = vec![super::VERSION, b'J'];
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(&(json.len() as u32).to_be_bytes());
        v.extend_from_slice(json);
        v
    }

    /// A compressed frame holding `inner` (whole frames).
    pub fn compressed(inner: &[u8]) -> Vec<u8> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        let _ = z.write_all(inner);
        let z = z.finish().unwrap_or_default();
        let mut v = vec![super::VERSION, b'C'];
        v.extend_from_slice(&(z.len() as u32).to_be_bytes());
        v.extend_from_slice(&z);
        v
    }

    /// A whole compressed window as Beats sends it: events numbered from `first_seq`.
    pub fn batch(first_seq: u32, events: &[&[u8]]) -> Vec<u8> {
        let mut inner = Vec::new();
        for (i, e) in events.iter().enumerate() {
            inner.extend_from_slice(&json(first_seq + i as u32, e));
        }
        let mut v = window(events.len() as u32);
        v.extend_from_slice(&compressed(&inner));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What pylogbeat 2.1 sent for two batches (2 events, then 1) on one connection,
    /// captured from the wire.
    const PYLOGBEAT: &[u8] = include_bytes!("../fixtures/pylogbeat-two-batches.bin");

    fn decode_in_chunks(bytes: &[u8], chunk: usize) -> Result<Vec<Window>, FrameError> {
        let mut d = Decoder::new(Limits::default());
        let mut out = Vec::new();
        for c in bytes.chunks(chunk) {
            d.feed(c)?;
            out.extend(d.take());
        }
        assert_eq!(d.held_bytes(), 0, "nothing left over");
        Ok(out)
    }

    #[test]
    fn decodes_pylogbeats_two_compressed_windows_whatever_the_read_sizes() {
        for chunk in [1, 3, 7, 64, 4096] {
            let windows = decode_in_chunks(PYLOGBEAT, chunk).unwrap();
            assert_eq!(windows.len(), 2, "chunk {chunk}");
            assert_eq!(windows[0].events.len(), 2);
            assert_eq!(windows[0].ack, 2);
            assert!(
                windows[0].events[0]
                    .json
                    .starts_with(br#"{"message": "hello from pylogbeat""#)
            );
            assert_eq!(windows[0].events[1].json, b"plain string event");
            // pylogbeat numbers on across windows: the ack is the last sequence number.
            assert_eq!(windows[1].ack, 3);
            assert_eq!(windows[1].events[0].seq, 3);
        }
    }

    #[test]
    fn decodes_plain_json_frames_and_ignores_empty_windows() {
        let mut wire = encode::window(0);
        wire.extend(encode::window(2));
        wire.extend(encode::json(7, br#"{"message":"a"}"#));
        wire.extend(encode::json(8, br#"{"message":"b"}"#));
        let windows = decode_in_chunks(&wire, 5).unwrap();
        assert_eq!(windows.len(), 1);
        assert_eq!(windows[0].ack, 8);
        assert_eq!(windows[0].events[1].seq, 8);
    }

    #[test]
    fn the_ack_frame_is_2a_and_the_big_endian_sequence() {
        assert_eq!(ack(0x0102_0304), *b"2A\x01\x02\x03\x04");
    }

    #[test]
    fn refuses_bad_versions_types_and_events_outside_a_window() {
        let mut d = Decoder::new(Limits::default());
        assert_eq!(d.feed(b"1W\0\0\0\x01"), Err(FrameError::Version(b'1')));
        // go-lumber only refused a header when both bytes were wrong.
        let mut d = Decoder::new(Limits::default());
        assert_eq!(d.feed(b"2X\0\0\0\x01"), Err(FrameError::Type(b'X')));
        let mut d = Decoder::new(Limits::default());
        assert_eq!(
            d.feed(&encode::json(1, b"{}")),
            Err(FrameError::OutsideWindow)
        );
        // One event more than the window announced.
        let mut wire = encode::window(1);
        wire.extend(encode::compressed(
            &[encode::json(1, b"{}"), encode::json(2, b"{}")].concat(),
        ));
        let mut d = Decoder::new(Limits::default());
        assert_eq!(d.feed(&wire), Err(FrameError::OutsideWindow));
    }

    #[test]
    fn caps_frames_windows_and_decompressed_size_before_buffering() {
        let limits = Limits {
            max_frame: 16384,
            max_window: 10,
            max_decompressed: 4096,
            max_event: 100,
        };
        let mut d = Decoder::new(limits);
        // Only the header of a huge frame is needed to refuse it.
        assert_eq!(
            d.feed(b"2W\0\0\0\x01\x32J\0\0\0\x01\x7f\xff\xff\xff"),
            Err(FrameError::FrameTooLarge {
                len: 0x7fff_ffff,
                max: 16384
            })
        );
        let mut d = Decoder::new(limits);
        assert_eq!(
            d.feed(&encode::window(11)),
            Err(FrameError::WindowTooLarge { count: 11, max: 10 })
        );
        // A zip bomb: 1 MiB of zeros compresses to 5-10 KiB (by the deflate backend).
        let bomb = encode::compressed(&vec![0u8; 1 << 20]);
        assert!(bomb.len() <= 16384 + 6, "{}", bomb.len());
        let mut d = Decoder::new(limits);
        let mut wire = encode::window(1);
        wire.extend(bomb);
        assert_eq!(d.feed(&wire), Err(FrameError::DecompressedTooLarge(4096)));
        // An event over max_event is skipped, counted and still acknowledged.
        let mut d = Decoder::new(limits);
        let mut wire = encode::window(2);
        wire.extend(encode::json(1, &[b'x'; 101]));
        wire.extend(encode::json(2, b"{}"));
        d.feed(&wire).unwrap();
        let w = d.take();
        assert_eq!((w[0].events.len(), w[0].skipped, w[0].ack), (1, 1, 2));
    }

    #[test]
    fn a_broken_or_truncated_compressed_frame_is_an_error() {
        let mut wire = encode::window(1);
        wire.extend(b"2C\0\0\0\x04abcd");
        let mut d = Decoder::new(Limits::default());
        assert!(matches!(d.feed(&wire), Err(FrameError::Zlib(_))));
        let mut wire = encode::window(1);
        let whole = encode::json(1, b"{}");
        wire.extend(encode::compressed(&whole[..whole.len() - 1]));
        let mut d = Decoder::new(Limits::default());
        assert_eq!(d.feed(&wire), Err(FrameError::Truncated));
    }
}
