//! Decoding any datagram as NetFlow v5, v9 or IPFIX never panics nor grows the template
//! cache past its bounds, and what decodes aggregates into valid points.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../check.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::check_decode(data);
});
