//! Protobuf decoding never panics; what decodes re-encodes stably.
#![no_main]

use dk_proto::pb;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(points) = pb::decode(data) {
        let once = pb::encode(&points);
        let again = pb::decode(&once).expect("re-encoded points decode");
        assert_eq!(pb::encode(&again), once, "re-encoding is stable");
    }
});
