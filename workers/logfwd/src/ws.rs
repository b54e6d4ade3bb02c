//! The server side of WebSocket (RFC 6455) as logfwdserver needs it, as pure functions over
//! bytes: the HTTP/1.1 upgrade of `GET /logfwd` ([`handshake`]), a streaming frame
//! [`Decoder`] (masked client frames, text/binary messages across continuation frames, ping,
//! pong, close; caps on frame and message size) and the unmasked server frames ([`frame`],
//! [`close`]).

use base64::Engine;

/// The path logfwd connects to.
pub const PATH: &str = "/logfwd";
/// Largest request head read before the upgrade.
pub const MAX_HEAD: usize = 8 * 1024;
/// Largest frame payload accepted by default.
pub const DEFAULT_MAX_FRAME: usize = 1024 * 1024;
/// Largest message (all its frames) accepted by default.
pub const DEFAULT_MAX_MESSAGE: usize = 4 * 1024 * 1024;

/// RFC 6455's GUID appended to the client's key.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Close codes the server sends.
pub mod code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// Protocol error.
    pub const PROTOCOL: u16 = 1002;
    /// Data not consistent with the message type (text that is not UTF-8).
    pub const INVALID_DATA: u16 = 1007;
    /// Message too big.
    pub const TOO_BIG: u16 = 1009;
}

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut input = Vec::with_capacity(key.len() + GUID.len());
    input.extend_from_slice(key.trim().as_bytes());
    input.extend_from_slice(GUID.as_bytes());
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// A refused upgrade: the HTTP answer to send before closing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("HTTP {status}: {reason}")]
pub struct Refusal {
    /// The HTTP status.
    pub status: u16,
    /// Why, sent as the body.
    pub reason: String,
}

impl Refusal {
    fn new(status: u16, reason: impl Into<String>) -> Refusal {
        Refusal {
            status,
            reason: reason.into(),
        }
    }

    /// The HTTP response bytes.
    pub fn response(&self) -> Vec<u8> {
        let text = match self.status {
            404 => "Not Found",
            405 => "Method Not Allowed",
            426 => "Upgrade Required",
            431 => "Request Header Fields Too Large",
            _ => "Bad Request",
        };
        let extra = if self.status == 426 {
            "Sec-WebSocket-Version: 13\r\n"
        } else {
            ""
        };
        format!(
            "HTTP/1.1 {} {text}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{}",
            self.status,
            self.reason.len(),
            self.reason
        )
        .into_bytes()
    }
}

/// An accepted upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// Bytes of the request head (what follows is WebSocket frames).
    pub consumed: usize,
    /// The `101 Switching Protocols` response.
    pub response: Vec<u8>,
}

/// Reads the upgrade request at the start of `buf`: `Ok(None)` until its head is complete.
///
/// # Errors
/// A [`Refusal`] (wrong path or method, not a WebSocket upgrade, head over [`MAX_HEAD`]).
pub fn handshake(buf: &[u8]) -> Result<Option<Upgrade>, Refusal> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            return Err(Refusal::new(431, "the request head is over 8 KiB"));
        }
        return Ok(None);
    };
    if end + 4 > MAX_HEAD {
        return Err(Refusal::new(431, "the request head is over 8 KiB"));
    }
    let head = std::str::from_utf8(&buf[..end])
        .map_err(|_| Refusal::new(400, "the request head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let request = lines.next().unwrap_or_default();
    let mut parts = request.split(' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let (Some(method), Some(target), Some(version)) = (method, target, version) else {
        return Err(Refusal::new(
            400,
            "the request line is not METHOD PATH HTTP/1.1",
        ));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(Refusal::new(400, "only HTTP/1.1 upgrades to WebSocket"));
    }
    let path = target.split('?').next().unwrap_or_default();
    if path != PATH {
        return Err(Refusal::new(404, format!("only {PATH} is served here")));
    }
    if method != "GET" {
        return Err(Refusal::new(405, format!("{PATH} answers GET only")));
    }
    let (mut upgrade, mut connection, mut wsversion, mut key) = (false, false, None, None);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(Refusal::new(400, "a header line has no colon"));
        };
        let value = value.trim();
        let has_token = |t: &str| value.split(',').any(|v| v.trim().eq_ignore_ascii_case(t));
        match name.trim().to_ascii_lowercase().as_str() {
            "upgrade" => upgrade |= has_token("websocket"),
            "connection" => connection |= has_token("upgrade"),
            "sec-websocket-version" => wsversion = Some(value.to_string()),
            "sec-websocket-key" => key = Some(value.to_string()),
            _ => {}
        }
    }
    if !upgrade || !connection {
        return Err(Refusal::new(
            426,
            "this is a WebSocket endpoint: send Upgrade: websocket and Connection: Upgrade",
        ));
    }
    if wsversion.as_deref() != Some("13") {
        return Err(Refusal::new(426, "only WebSocket version 13 is spoken"));
    }
    let key = key.unwrap_or_default();
    let decoded = base64::engine::general_purpose::STANDARD.decode(key.as_bytes());
    if !matches!(decoded, Ok(k) if k.len() == 16) {
        return Err(Refusal::new(
            400,
            "Sec-WebSocket-Key must be 16 bytes in base64",
        ));
    }
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(&key)
    )
    .into_bytes();
    Ok(Some(Upgrade {
        consumed: end + 4,
        response,
    }))
}

/// Frame and message caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame payload.
    pub max_frame: usize,
    /// Largest message, all its frames together.
    pub max_message: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_frame: DEFAULT_MAX_FRAME,
            max_message: DEFAULT_MAX_MESSAGE,
        }
    }
}

/// What the client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete text message (valid UTF-8).
    Text(Vec<u8>),
    /// A complete binary message.
    Binary(Vec<u8>),
    /// A ping: answer with a pong carrying this payload.
    Ping(Vec<u8>),
    /// A pong (ignored).
    Pong,
    /// The client closes, with its code if it gave one.
    Close(Option<u16>),
}

/// Why the stream must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    /// A rule of RFC 6455 broken.
    #[error("WebSocket protocol error: {0}")]
    Protocol(&'static str),
    /// A frame or message over the caps.
    #[error("a WebSocket {what} of {size} bytes is over the {cap}-byte cap")]
    TooBig {
        /// `frame` or `message`.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The cap.
        cap: usize,
    },
    /// A text message that is not UTF-8.
    #[error("a WebSocket text message is not UTF-8")]
    InvalidText,
}

impl WsError {
    /// The close code to send.
    pub fn code(&self) -> u16 {
        match self {
            WsError::Protocol(_) => code::PROTOCOL,
            WsError::TooBig { .. } => code::TOO_BIG,
            WsError::InvalidText => code::INVALID_DATA,
        }
    }
}

/// Decodes the frames of one client stream, whatever the read boundaries.
#[derive(Debug, Default)]
pub struct Decoder {
    limits: Limits,
    buf: Vec<u8>,
    start: usize,
    /// The opcode and frames of a fragmented message in progress.
    message: Option<(u8, Vec<u8>)>,
}

impl Decoder {
    /// A decoder with `limits`.
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            limits,
            ..Decoder::default()
        }
    }

    /// Appends the bytes of one read.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held: an incomplete frame and a message in progress.
    pub fn held(&self) -> usize {
        self.buf.len() - self.start + self.message.as_ref().map_or(0, |(_, m)| m.len())
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.is_empty() && self.buf.capacity() > 64 * 1024 {
            self.buf = Vec::new();
        }
    }

    /// The next event, `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    /// The stream broke a rule or a cap: send [`close`] with [`WsError::code`] and hang up.
    pub fn next_event(&mut self) -> Result<Option<Event>, WsError> {
        loop {
            let rest = &self.buf[self.start..];
            if rest.len() < 2 {
                self.compact();
                return Ok(None);
            }
            let (b0, b1) = (rest[0], rest[1]);
            let fin = b0 & 0x80 != 0;
            let opcode = b0 & 0x0f;
            if b0 & 0x70 != 0 {
                return Err(WsError::Protocol("reserved bits set without an extension"));
            }
            if b1 & 0x80 == 0 {
                return Err(WsError::Protocol("client frames must be masked"));
            }
            let (len, mut at) = match b1 & 0x7f {
                126 => match rest.get(2..4) {
                    Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                    None => {
                        self.compact();
                        return Ok(None);
                    }
                },
                127 => match rest.get(2..10) {
                    Some(b) => {
                        let mut a = [0u8; 8];
                        a.copy_from_slice(b);
                        (u64::from_be_bytes(a), 10)
                    }
                    None => {
                        self.compact();
                        return Ok(None);
                    }
                },
                n => (u64::from(n), 2),
            };
            let control = opcode & 0x08 != 0;
            if control && (len > 125 || !fin) {
                return Err(WsError::Protocol(
                    "control frames carry at most 125 bytes in one frame",
                ));
            }
            if len > self.limits.max_frame as u64 {
                return Err(WsError::TooBig {
                    what: "frame",
                    size: len,
                    cap: self.limits.max_frame,
                });
            }
            if !control {
                let so_far = self.message.as_ref().map_or(0, |(_, m)| m.len()) as u64;
                if so_far + len > self.limits.max_message as u64 {
                    return Err(WsError::TooBig {
                        what: "message",
                        size: so_far + len,
                        cap: self.limits.max_message,
                    });
                }
            }
            let len = len as usize; // At most max_frame.
            if rest.len() < at + 4 + len {
                self.compact();
                return Ok(None);
            }
            let mask = [rest[at], rest[at + 1], rest[at + 2], rest[at + 3]];
            at += 4;
            let payload: Vec<u8> = rest[at..at + len]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            self.start += at + len;
            match opcode {
                0x0 => {
                    let Some((_, m)) = self.message.as_mut() else {
                        return Err(WsError::Protocol("a continuation frame with no message"));
                    };
                    m.extend_from_slice(&payload);
                    if fin && let Some((op, m)) = self.message.take() {
                        return self.complete(op, m).map(Some);
                    }
                }
                0x1 | 0x2 => {
                    if self.message.is_some() {
                        return Err(WsError::Protocol(
                            "a new message began before the last one ended",
                        ));
                    }
                    if fin {
                        return self.complete(opcode, payload).map(Some);
                    }
                    self.message = Some((opcode, payload));
                }
                0x8 => {
                    let code = match payload.len() {
                        0 => None,
                        1 => return Err(WsError::Protocol("a close frame of one byte")),
                        _ => Some(u16::from_be_bytes([payload[0], payload[1]])),
                    };
                    return Ok(Some(Event::Close(code)));
                }
                0x9 => return Ok(Some(Event::Ping(payload))),
                0xA => return Ok(Some(Event::Pong)),
                _ => return Err(WsError::Protocol("an unknown opcode")),
            }
        }
    }

    fn complete(&self, opcode: u8, payload: Vec<u8>) -> Result<Event, WsError> {
        if opcode == 0x1 {
            if std::str::from_utf8(&payload).is_err() {
                return Err(WsError::InvalidText);
            }
            Ok(Event::Text(payload))
        } else {
            Ok(Event::Binary(payload))
        }
    }
}

/// An unmasked server frame (`FIN` set).
pub fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x80 | opcode);
    match payload.len() {
        n @ 0..=125 => out.push(n as u8),
        n @ 126..=0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// A close frame with `code` and a reason (cut to fit a control frame).
pub fn close(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    payload.extend_from_slice(&reason.as_bytes()[..cut]);
    frame(0x8, &payload)
}

/// A masked client frame, for tests, benches and fuzz seeds.
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(if fin { 0x80 } else { 0 } | opcode);
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// An upgrade request as a client sends it (the RFC's sample key).
pub fn client_request(path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:9533\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn events(d: &mut Decoder) -> Result<Vec<Event>, WsError> {
        let mut out = Vec::new();
        while let Some(e) = d.next_event()? {
            out.push(e);
        }
        Ok(out)
    }

    #[test]
    fn the_accept_key_is_the_rfc_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn a_websocket_upgrade_of_logfwd_is_answered_101_after_its_whole_head() {
        let req = client_request("/logfwd?x=1");
        assert_eq!(handshake(&req[..req.len() - 1]), Ok(None));
        let mut with_frame = req.clone();
        with_frame.extend(client_frame(true, 1, b"{}", MASK));
        let up = handshake(&with_frame).unwrap().unwrap();
        assert_eq!(up.consumed, req.len());
        let text = String::from_utf8(up.response).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
            "{text}"
        );
        assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    }

    #[test]
    fn other_paths_methods_and_plain_http_are_refused_with_a_reason() {
        let status = |req: &[u8]| handshake(req).map(|_| 0).unwrap_or_else(|r| r.status);
        assert_eq!(status(&client_request("/other")), 404);
        let post = String::from_utf8(client_request(PATH))
            .unwrap()
            .replacen("GET", "POST", 1);
        assert_eq!(status(post.as_bytes()), 405);
        assert_eq!(status(b"GET /logfwd HTTP/1.1\r\nHost: x\r\n\r\n"), 426);
        let v12 = String::from_utf8(client_request(PATH))
            .unwrap()
            .replace("Version: 13", "Version: 12");
        assert_eq!(status(v12.as_bytes()), 426);
        let badkey = String::from_utf8(client_request(PATH))
            .unwrap()
            .replace("dGhlIHNhbXBsZSBub25jZQ==", "short");
        assert_eq!(status(badkey.as_bytes()), 400);
        assert_eq!(status(&vec![b'a'; MAX_HEAD + 1]), 431);
        let r = handshake(b"GET /x HTTP/1.1\r\n\r\n").unwrap_err();
        let resp = String::from_utf8(r.response()).unwrap();
        assert!(resp.starts_with("HTTP/1.1 404 Not Found\r\n") && resp.ends_with(&r.reason));
    }

    #[test]
    fn masked_text_binary_and_fragmented_messages_are_decoded_across_reads() {
        let big = vec![b'x'; 70_000];
        let mut wire = client_frame(true, 1, b"hello", MASK);
        wire.extend(client_frame(true, 2, &[0, 1, 2], MASK));
        wire.extend(client_frame(false, 1, b"frag", MASK));
        wire.extend(client_frame(true, 9, b"p", MASK)); // a ping between fragments
        wire.extend(client_frame(false, 0, b"men", MASK));
        wire.extend(client_frame(true, 0, b"ted", MASK));
        wire.extend(client_frame(true, 1, &big, MASK));
        wire.extend(client_frame(true, 10, b"", MASK));
        wire.extend(client_frame(true, 8, &1000u16.to_be_bytes(), MASK));
        let mut d = Decoder::new(Limits::default());
        let mut got = Vec::new();
        for chunk in wire.chunks(7) {
            d.push(chunk);
            got.extend(events(&mut d).unwrap());
        }
        assert_eq!(
            got,
            vec![
                Event::Text(b"hello".to_vec()),
                Event::Binary(vec![0, 1, 2]),
                Event::Ping(b"p".to_vec()),
                Event::Text(b"fragmented".to_vec()),
                Event::Text(big),
                Event::Pong,
                Event::Close(Some(1000)),
            ]
        );
        assert_eq!(d.held(), 0);
    }

    #[test]
    fn caps_and_protocol_rules_close_with_the_right_code() {
        let limits = Limits {
            max_frame: 100,
            max_message: 150,
        };
        let err = |wire: Vec<u8>| {
            let mut d = Decoder::new(limits);
            d.push(&wire);
            events(&mut d).unwrap_err()
        };
        // The frame cap is enforced from the header, before the payload arrives.
        let mut d = Decoder::new(limits);
        d.push(&client_frame(true, 1, &[b'a'; 101], MASK)[..8]);
        assert_eq!(d.next_event().unwrap_err().code(), code::TOO_BIG);
        let mut two = client_frame(false, 1, &[b'a'; 100], MASK);
        two.extend(client_frame(true, 0, &[b'a'; 51], MASK));
        assert_eq!(err(two).code(), code::TOO_BIG);
        let mut unmasked = frame(1, b"x");
        assert_eq!(err(unmasked.clone()).code(), code::PROTOCOL);
        unmasked[0] |= 0x40;
        assert_eq!(
            err(unmasked),
            WsError::Protocol("reserved bits set without an extension")
        );
        assert_eq!(
            err(client_frame(true, 1, &[0xff, 0xfe], MASK)),
            WsError::InvalidText
        );
        assert_eq!(
            err(client_frame(true, 0, b"x", MASK)).code(),
            code::PROTOCOL
        );
        assert_eq!(
            err(client_frame(false, 9, b"x", MASK)).code(),
            code::PROTOCOL
        );
        assert_eq!(
            err(client_frame(true, 3, b"x", MASK)).code(),
            code::PROTOCOL
        );
        let mut nested = client_frame(false, 1, b"a", MASK);
        nested.extend(client_frame(true, 1, b"b", MASK));
        assert_eq!(err(nested).code(), code::PROTOCOL);
    }

    #[test]
    fn server_frames_are_unmasked_and_close_carries_the_code() {
        assert_eq!(frame(0xA, b"p"), vec![0x8A, 1, b'p']);
        assert_eq!(frame(2, &[0; 200])[..4], [0x82, 126, 0, 200]);
        let c = close(code::TOO_BIG, &"é".repeat(100));
        assert_eq!(
            &c[..4],
            &[0x88, 124, 0x03, 0xF1],
            "cut at a character boundary"
        );
        assert!(std::str::from_utf8(&c[4..]).is_ok());
    }
}
