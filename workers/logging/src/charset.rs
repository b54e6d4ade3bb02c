//! `character_encoding`: which charsets are accepted and how a byte stream in one of them is
//! turned into UTF-8 before it is cut into lines.
//!
//! UTF-8 (and "none") streams are not transcoded: lines are checked one by one and invalid
//! bytes become U+FFFD. UTF-16 and GBK/GB18030 streams are decoded as a stream, so a character
//! split across reads is decoded whole, and UTF-16's two-byte newline is found correctly.

use encoding_rs::{Decoder, Encoding, GB18030, GBK, UTF_16BE, UTF_16LE};

/// A charset `character_encoding` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Charset {
    /// No key, `""` or `"none"`: bytes are taken as UTF-8.
    #[default]
    None,
    /// `"utf-8"`.
    Utf8,
    /// `"utf-16le"`.
    Utf16Le,
    /// `"utf-16be"`.
    Utf16Be,
    /// `"gbk"`.
    Gbk,
    /// `"gb18030"`.
    Gb18030,
}

/// A `character_encoding` value that names no supported charset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown character encoding {0:?}; use one of utf-8, utf-16le, utf-16be, gbk, gb18030 or \"\""
)]
pub struct UnknownCharset(pub String);

impl Charset {
    /// The charset of a `character_encoding` value (case-insensitive; `utf8` is accepted as
    /// `utf-8`).
    ///
    /// # Errors
    /// [`UnknownCharset`] for any other name.
    pub fn parse(name: &str) -> Result<Charset, UnknownCharset> {
        match name.trim().to_ascii_lowercase().as_str() {
            "" | "none" => Ok(Charset::None),
            "utf-8" | "utf8" => Ok(Charset::Utf8),
            "utf-16le" => Ok(Charset::Utf16Le),
            "utf-16be" => Ok(Charset::Utf16Be),
            "gbk" => Ok(Charset::Gbk),
            "gb18030" => Ok(Charset::Gb18030),
            _ => Err(UnknownCharset(name.to_string())),
        }
    }

    fn encoding(self) -> Option<&'static Encoding> {
        match self {
            Charset::None | Charset::Utf8 => None,
            Charset::Utf16Le => Some(UTF_16LE),
            Charset::Utf16Be => Some(UTF_16BE),
            Charset::Gbk => Some(GBK),
            Charset::Gb18030 => Some(GB18030),
        }
    }

    /// Whether a stream in this charset must be transcoded before it is split into lines.
    pub fn needs_decoding(self) -> bool {
        self.encoding().is_some()
    }
}

/// Transcodes one stream (a TCP connection, or one datagram) to UTF-8.
pub struct StreamDecoder {
    decoder: Decoder,
}

impl std::fmt::Debug for StreamDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamDecoder")
            .field("encoding", &self.decoder.encoding().name())
            .finish()
    }
}

impl StreamDecoder {
    /// A decoder for `charset`, or `None` when the bytes are taken as UTF-8. A byte order mark
    /// at the start of the stream is removed.
    pub fn new(charset: Charset) -> Option<StreamDecoder> {
        charset.encoding().map(|e| StreamDecoder {
            decoder: e.new_decoder_with_bom_removal(),
        })
    }

    /// Appends the UTF-8 text of `input` to `out` (bytes of a character split at the end of
    /// `input` wait for the next call unless `last`). Returns whether malformed input was
    /// replaced with U+FFFD. After a call with `last`, the decoder must not be used again.
    pub fn decode(&mut self, input: &[u8], last: bool, out: &mut String) -> bool {
        let mut replaced = false;
        let mut rest = input;
        loop {
            let need = self
                .decoder
                .max_utf8_buffer_length(rest.len())
                .unwrap_or(rest.len().saturating_mul(3).saturating_add(16));
            out.reserve(need);
            let (result, read, had_errors) = self.decoder.decode_to_string(rest, out, last);
            replaced |= had_errors;
            rest = &rest[read..];
            match result {
                encoding_rs::CoderResult::InputEmpty => return replaced,
                encoding_rs::CoderResult::OutputFull => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_names_datakit_accepts() {
        assert_eq!(Charset::parse(""), Ok(Charset::None));
        assert_eq!(Charset::parse("none"), Ok(Charset::None));
        assert_eq!(Charset::parse("utf-8"), Ok(Charset::Utf8));
        assert_eq!(Charset::parse("UTF-8"), Ok(Charset::Utf8));
        assert_eq!(Charset::parse("utf-16le"), Ok(Charset::Utf16Le));
        assert_eq!(Charset::parse("utf-16be"), Ok(Charset::Utf16Be));
        assert_eq!(Charset::parse("gbk"), Ok(Charset::Gbk));
        assert_eq!(Charset::parse("gb18030"), Ok(Charset::Gb18030));
        let e = Charset::parse("latin1").unwrap_err();
        assert!(e.to_string().contains("\"latin1\""));
        assert!(e.to_string().contains("gb18030"));
    }

    #[test]
    fn utf8_needs_no_transcoding() {
        assert!(StreamDecoder::new(Charset::Utf8).is_none());
        assert!(StreamDecoder::new(Charset::None).is_none());
    }

    #[test]
    fn decodes_utf16le_split_inside_a_character() {
        let bytes: Vec<u8> = "héllo\n世界\n"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let mut d = StreamDecoder::new(Charset::Utf16Le).unwrap();
        let mut out = String::new();
        for b in &bytes {
            assert!(!d.decode(std::slice::from_ref(b), false, &mut out));
        }
        assert!(!d.decode(&[], true, &mut out));
        assert_eq!(out, "héllo\n世界\n");
    }

    #[test]
    fn decodes_gbk_and_flags_malformed_bytes() {
        // "中文" in GBK.
        let mut d = StreamDecoder::new(Charset::Gbk).unwrap();
        let mut out = String::new();
        assert!(!d.decode(&[0xd6, 0xd0, 0xce], false, &mut out));
        assert!(!d.decode(&[0xc4, b'\n'], false, &mut out));
        assert_eq!(out, "中文\n");
        let mut d = StreamDecoder::new(Charset::Gb18030).unwrap();
        let mut out = String::new();
        assert!(d.decode(&[0xd6], true, &mut out));
        assert_eq!(out, "\u{fffd}");
    }

    #[test]
    fn removes_a_byte_order_mark() {
        let mut d = StreamDecoder::new(Charset::Utf16Be).unwrap();
        let mut out = String::new();
        d.decode(&[0xfe, 0xff, 0x00, b'a'], true, &mut out);
        assert_eq!(out, "a");
    }
}
