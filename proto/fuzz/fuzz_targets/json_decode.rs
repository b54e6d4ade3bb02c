//! JSON decoding (mixed and PB-JSON) never panics; what decodes re-encodes stably.
#![no_main]

use dk_proto::json;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = json::decode(data, 1);
    if let Ok(points) = json::decode_pbjson(data) {
        let once = json::encode_pbjson(&points, &[]);
        let again = json::decode_pbjson(&once).expect("re-encoded points decode");
        assert_eq!(json::encode_pbjson(&again, &[]), once, "re-encoding is stable");
        let _ = json::encode(&points);
    }
});
