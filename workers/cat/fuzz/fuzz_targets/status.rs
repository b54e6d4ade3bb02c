//! Reading a heartbeat `<status>` document and mapping it never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../check.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::check_status(data);
});
