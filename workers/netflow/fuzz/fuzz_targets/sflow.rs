//! Decoding any datagram as sFlow v5 never panics nor allocates past the caps, and yields
//! only one-packet sFlow flows that aggregate into valid points.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../check.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::check_sflow(data);
});
