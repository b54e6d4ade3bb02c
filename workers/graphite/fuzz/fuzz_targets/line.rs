//! Framing and parsing Graphite lines never panics and does not depend on read boundaries.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../check.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::check_lines(data);
});
