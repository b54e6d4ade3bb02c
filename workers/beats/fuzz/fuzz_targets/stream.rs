//! Decoding a lumberjack v2 stream never panics, stays within its caps and does not depend
//! on read boundaries; mapping its events never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../check.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::check_stream(data);
});
