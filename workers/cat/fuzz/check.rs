//! Checks shared by the fuzz targets and the stable corpus test (`tests/corpus.rs`).
#![allow(dead_code)]

use dk_input_cat::mapping::{self, Output};
use dk_input_cat::nt1::{self, Framer, MAX_FRAME, Nt1Error};
use dk_input_cat::status;
use dk_proto::Value;

/// What a stream gives: one entry per packet (its output or its decode error), then the
/// framing error if any.
type Outcome = (Vec<Result<Output, Nt1Error>>, Option<Nt1Error>);

fn run(data: &[u8], sizes: &[usize]) -> Outcome {
    let mut f = Framer::new();
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        let (chunk, after) = rest.split_at(n);
        f.push(chunk);
        loop {
            match f.next_body() {
                Ok(Some(body)) => {
                    assert!(body.len() <= MAX_FRAME);
                    out.push(nt1::decode(body).map(|m| mapping::output(&m, &[], 7, |_| 3600)));
                }
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
        // At most one incomplete packet (and its length) is held.
        assert!(f.held() < MAX_FRAME + 4, "held {}", f.held());
        rest = after;
        i += 1;
    }
    (out, None)
}

/// The same packets and error whatever the read sizes; spans carry Datakit's fields.
pub fn check_stream(data: &[u8]) {
    let whole = run(data, &[usize::MAX]);
    let sizes: Vec<usize> = data
        .iter()
        .take(8)
        .map(|b| usize::from(*b % 23) + 1)
        .collect();
    let chunked = run(data, if sizes.is_empty() { &[1] } else { &sizes });
    assert_eq!(whole, chunked, "decoding depends on read boundaries");
    for o in whole.0.into_iter().flatten() {
        if let Output::Span(p) = o {
            assert_eq!(p.name, "cat");
            assert!(matches!(p.get_field("duration"), Some(Value::I(d)) if *d >= 0));
            assert!(p.get_tag("span_type").is_some());
        }
    }
}

/// The bytes as a heartbeat document, directly and inside a `Status` packet.
pub fn check_status(data: &[u8]) {
    if let Ok(s) = status::parse(data)
        && let Ok(points) = status::points(&s, "d", "h", 1, |_| 0)
    {
        assert!(points.iter().all(|p| p.get_tag("domain") == Some("d")));
    }
    check_stream(&nt1::encode::heartbeat(data));
}
