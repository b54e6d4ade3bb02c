//! The checks shared by the `assemble` fuzz target and the stable corpus test: one input is
//! an option byte, a chunk-size byte and the stream bytes.

use dk_input_logging::charset::Charset;
use dk_input_logging::multiline::{AUTO_PATTERNS, StartPatterns};
use dk_input_logging::record::{self, Counts, Shaping, StreamAssembler};

/// The shaping of every option byte, compiled once.
fn shapings() -> &'static [Shaping] {
    static ALL: std::sync::OnceLock<Vec<Shaping>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| (0..=u8::MAX).map(shaping).collect())
}

/// The shaping an option byte selects (small bounds, so cuts happen often).
fn shaping(opt: u8) -> Shaping {
    let charset = match opt & 0b111 {
        0..=3 => Charset::None,
        4 => Charset::Utf16Le,
        5 => Charset::Utf16Be,
        6 => Charset::Gbk,
        _ => Charset::Gb18030,
    };
    let patterns: Vec<String> = match (opt >> 3) & 0b11 {
        0 => Vec::new(),
        1 => vec![r"^\d{4}-".to_string()],
        2 => AUTO_PATTERNS.iter().map(|s| s.to_string()).collect(),
        _ => vec![r"^(?i)start|^$".to_string()],
    };
    Shaping {
        max_line: 4 + usize::from(opt >> 5) * 9,
        charset,
        strip_ansi: opt & 0b1000_0000 != 0 && opt & 0b1 == 0,
        patterns: StartPatterns::new(&patterns).expect("fixed patterns compile"),
        max_record_bytes: 1 + usize::from(opt) * 3,
        max_record_lines: 1 + usize::from(opt % 17),
    }
}

fn assemble(shaping: &Shaping, data: &[u8], chunk: usize) -> (Vec<String>, Counts) {
    let mut a = StreamAssembler::new(shaping);
    let mut out = Vec::new();
    for c in data.chunks(chunk.max(1)) {
        a.push(c, &mut out);
    }
    a.finish(&mut out);
    (out, a.take_counts())
}

fn non_space(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Runs one input through the TCP and UDP paths and checks the invariants.
pub fn check(input: &[u8]) {
    let (opt, chunk, data) = match input {
        [o, c, rest @ ..] => (*o, usize::from(*c), rest),
        _ => return,
    };
    let shaping = &shapings()[usize::from(opt)];
    let (whole, counts) = assemble(shaping, data, data.len());
    let (chunked, _) = assemble(shaping, data, chunk);
    // Reads never change the messages: cuts depend on the bytes only.
    assert_eq!(whole, chunked, "chunk size {chunk} changed the messages");
    // A line is at most `max_line` bytes, 3 times that once malformed bytes become U+FFFD; a
    // record is cut after the line that takes it over its byte bound.
    let line_max = 3 * shaping.max_line;
    let bound = shaping.max_record_bytes.max(line_max) + 1 + line_max;
    for m in &whole {
        assert!(!m.is_empty(), "an empty message was fed");
        assert_eq!(m.trim_end().len(), m.len(), "trailing space in {m:?}");
        assert!(
            m.len() <= bound.max(shaping.max_line * 4),
            "{} > {bound}",
            m.len()
        );
    }
    assert!(counts.truncated <= data.len() as u64 + 1);

    let mut udp = Vec::new();
    let mut udp_counts = Counts::default();
    record::datagram(shaping, data, &mut udp, &mut udp_counts);
    assert!(udp.iter().all(|m| !m.is_empty()));

    // Plain UTF-8 text: every non-space character arrives, in order, on both paths.
    if shaping.charset == Charset::None
        && !shaping.strip_ansi
        && let Ok(text) = std::str::from_utf8(data)
    {
        let want = non_space(text);
        assert_eq!(
            non_space(&whole.concat()),
            want,
            "TCP lost or reordered text"
        );
        assert_eq!(non_space(&udp.concat()), want, "UDP lost or reordered text");
    }
}
