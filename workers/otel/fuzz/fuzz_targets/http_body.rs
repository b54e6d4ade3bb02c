//! Any bytes as an OTLP/HTTP body of any signal, encoding and compression: never a panic,
//! always an answer (200 with points, or 400/413), points well formed.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../check.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::check_body(data);
});
