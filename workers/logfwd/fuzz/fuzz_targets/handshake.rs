//! Reading an upgrade request never panics; an accepted one consumes exactly its head.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../check.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::check_handshake(data);
});
