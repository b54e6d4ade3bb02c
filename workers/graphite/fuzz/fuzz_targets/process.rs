//! Framing, parsing, mapping and point building never panic, and every line is accounted for.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../check.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::check_process(data);
});
