//! Decoding the frames of a WebSocket client stream and mapping its messages never panics,
//! stays within the caps and does not depend on read boundaries.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../check.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::check_stream(data);
});
