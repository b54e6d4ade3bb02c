//! Framing, decoding and mapping an NT1 stream never panics, stays within the frame cap and
//! does not depend on read boundaries.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../check.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::check_stream(data);
});
