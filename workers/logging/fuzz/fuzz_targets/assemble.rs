//! Any bytes, any option byte and read size: the socket-log path never panics, reads do not
//! change the messages, and plain text arrives whole (see `check.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../check.rs"]
mod check;

fuzz_target!(|data: &[u8]| check::check(data));
