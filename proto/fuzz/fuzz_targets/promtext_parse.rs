//! The `/metrics` text parser never panics; what parses keeps every family named and every
//! sample inside a family whose name it extends.
#![no_main]

use dk_proto::promtext;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match promtext::parse(text) {
        Ok(families) => {
            for f in &families {
                assert!(!f.name.is_empty());
                for s in &f.samples {
                    assert!(s.name.starts_with(&f.name), "{} in {}", s.name, f.name);
                }
            }
        }
        Err(e) => assert!(e.line >= 1 && e.line <= text.lines().count().max(1), "{e}"),
    }
});
