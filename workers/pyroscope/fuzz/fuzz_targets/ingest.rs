//! One upload (query line, Content-Type line, body) is accepted or refused, never a panic;
//! what is accepted is a well-formed profiling point; multipart bodies round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../check.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::check_upload(data);
});
