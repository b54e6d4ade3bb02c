//! Checks shared by the fuzz targets and the stable corpus test (`tests/corpus.rs`).
#![allow(dead_code)]

use dk_input_logfwd::message;
use dk_input_logfwd::ws::{self, Decoder, Event, Limits, WsError};

/// Small caps, so the fuzzer reaches them.
const LIMITS: Limits = Limits {
    max_frame: 4096,
    max_message: 8192,
};

type Outcome = (Vec<Event>, Option<WsError>);

fn run(data: &[u8], sizes: &[usize]) -> Outcome {
    let mut d = Decoder::new(LIMITS);
    let mut events = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        let (chunk, after) = rest.split_at(n);
        d.push(chunk);
        loop {
            match d.next_event() {
                Ok(Some(e)) => events.push(e),
                Ok(None) => break,
                Err(e) => return (events, Some(e)),
            }
        }
        // One incomplete frame (header included) and one message in progress at most.
        assert!(
            d.held() <= LIMITS.max_frame + 14 + LIMITS.max_message,
            "held {}",
            d.held()
        );
        rest = after;
        i += 1;
    }
    (events, None)
}

/// The same events and error whatever the read sizes; messages within the caps, text
/// messages UTF-8; mapping them never panics and a mapped point is named after its source.
pub fn check_stream(data: &[u8]) {
    let whole = run(data, &[usize::MAX]);
    let sizes: Vec<usize> = data
        .iter()
        .take(8)
        .map(|b| usize::from(*b % 23) + 1)
        .collect();
    let chunked = run(data, if sizes.is_empty() { &[1] } else { &sizes });
    assert_eq!(whole, chunked, "decoding depends on read boundaries");
    for e in &whole.0 {
        match e {
            Event::Text(m) | Event::Binary(m) => {
                assert!(m.len() <= LIMITS.max_message);
                if let Event::Text(t) = e {
                    assert!(std::str::from_utf8(t).is_ok());
                }
                if let Ok(p) = message::map(m, &[], 1) {
                    assert!(!p.point.name.is_empty());
                    assert!(p.point.get_field("status").is_some());
                }
            }
            Event::Ping(p) => assert!(p.len() <= 125),
            _ => {}
        }
    }
}

/// An upgrade request: no panic; an accepted request consumes its head and nothing more,
/// a refusal has a response that says why.
pub fn check_handshake(data: &[u8]) {
    match ws::handshake(data) {
        Ok(Some(up)) => {
            assert!(up.consumed <= data.len());
            assert!(data[..up.consumed].ends_with(b"\r\n\r\n"));
            assert!(up.response.starts_with(b"HTTP/1.1 101 "));
        }
        Ok(None) => assert!(data.len() <= ws::MAX_HEAD),
        Err(r) => assert!(r.response().ends_with(r.reason.as_bytes())),
    }
    // The bytes as the frames after a good upgrade.
    check_stream(data);
}
