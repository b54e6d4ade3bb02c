//! Every per-process parser of host_processes on any bytes: nothing panics, and what they
//! return stays within the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dk_input_host::parse::pid::check_all(data);
});
