//! The frames inside a compressed frame: the same checks past the zlib layer.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../check.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::check_compressed(data);
});
