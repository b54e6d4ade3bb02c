//! Line protocol decoding never panics; what decodes re-encodes stably and normalises
//! idempotently.
#![no_main]

use dk_proto::Category;
use dk_proto::lineproto::{self, DecodeOptions, Precision};
use dk_proto::normalize::{self, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let auto = DecodeOptions::new(Precision::Auto, 1_700_000_000_000_000_000);
    let _ = lineproto::decode(data, &auto);
    let ns = DecodeOptions::new(Precision::Ns, 1_700_000_000_000_000_000);
    match lineproto::decode(data, &ns) {
        Ok(points) => {
            let once = lineproto::encode(&points);
            let again = lineproto::decode(&once, &ns).expect("re-encoded points decode");
            assert_eq!(lineproto::encode(&again), once, "re-encoding is stable");
            for mut p in points {
                let cat = [Category::Metric, Category::Logging, Category::Object][p.fields.len() % 3];
                if normalize::normalize(&mut p, cat, &Limits::default()).is_ok() {
                    let mut q = p.clone();
                    let warns = normalize::normalize(&mut q, cat, &Limits::default());
                    assert_eq!(warns, Ok(vec![]), "normalisation is idempotent");
                }
            }
        }
        Err(e) => {
            assert!(e.line >= 1 && e.column >= 1, "{e}");
            assert!(e.line <= data.iter().filter(|&&b| b == b'\n').count() + 1, "{e}");
        }
    }
});
