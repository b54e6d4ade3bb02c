//! Checks shared by the fuzz targets and the stable corpus test (`tests/corpus.rs`).
#![allow(dead_code)]

use dk_input_beats::frame::{Decoder, FrameError, Limits, Window, encode};
use dk_input_beats::mapping::Mapping;

/// Small caps, so the fuzzer reaches them.
const LIMITS: Limits = Limits {
    max_frame: 64 * 1024,
    max_window: 64,
    max_decompressed: 256 * 1024,
    max_event: 4096,
};

/// Decodes `data` fed in chunks cycling through `sizes`: the windows, then the error if any.
fn decode(data: &[u8], sizes: &[usize]) -> (Vec<Window>, Option<FrameError>) {
    let mut d = Decoder::new(LIMITS);
    let mut windows = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        let (chunk, after) = rest.split_at(n);
        let r = d.feed(chunk);
        windows.extend(d.take());
        // One incomplete frame (header included) and one open window of events at most.
        assert!(
            d.held_bytes() <= LIMITS.max_frame + 10 + LIMITS.max_decompressed,
            "held {} bytes",
            d.held_bytes()
        );
        if let Err(e) = r {
            return (windows, Some(e));
        }
        rest = after;
        i += 1;
    }
    (windows, None)
}

/// The stream layer: the same windows and error whatever the read sizes; windows within the
/// caps; every event maps to a point with a message and `status`, or is skipped, as the
/// reference mapping through a `serde_json::Value` tree does.
pub fn check_stream(data: &[u8]) {
    let whole = decode(data, &[usize::MAX]);
    let sizes: Vec<usize> = data
        .iter()
        .take(8)
        .map(|b| usize::from(*b % 23) + 1)
        .collect();
    let chunked = decode(data, if sizes.is_empty() { &[1] } else { &sizes });
    assert_eq!(whole, chunked, "decoding depends on read boundaries");
    let mapping = Mapping {
        source: "fuzz".into(),
        service: "fuzz".into(),
        tags: vec![("team".into(), "ops".into())],
    };
    for w in &whole.0 {
        let n = w.events.len() + w.skipped as usize;
        assert!(n >= 1 && n <= LIMITS.max_window as usize, "window of {n}");
        for e in &w.events {
            assert!(e.json.len() <= LIMITS.max_event);
            let point = mapping.point(&e.json, 1);
            assert_eq!(
                point,
                mapping.point_via_value(&e.json, 1),
                "the borrowed reading and the value tree disagree"
            );
            if let Ok(p) = point {
                assert_eq!(p.name, "fuzz");
                assert!(p.get_field("message").is_some());
                assert!(p.get_field("status").is_some());
            }
        }
    }
}

/// The bytes as the content of a compressed frame in a window of `data[0] % 8 + 1` events:
/// reaches the inner frames past zlib.
pub fn check_compressed(data: &[u8]) {
    let Some((&n, inner)) = data.split_first() else {
        return;
    };
    let mut wire = encode::window(u32::from(n % 8) + 1);
    wire.extend(encode::compressed(inner));
    check_stream(&wire);
}
