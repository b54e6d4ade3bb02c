//! The checks the `decode` fuzz target and the stable corpus test share.

use std::net::{IpAddr, Ipv4Addr};

use dk_input_netflow::aggregate::Aggregator;
use dk_input_netflow::decode::{Counts, FlowType, MAX_TEMPLATES_PER_DOMAIN, Templates, decode};
use dk_input_netflow::payload::{PointSettings, point};
use dk_input_netflow::sflow::MAX_SAMPLES;

const V9: &[u8] = include_bytes!("seeds/decode/softflowd_v9.bin");
const IPFIX: &[u8] = include_bytes!("seeds/decode/softflowd_ipfix.bin");

/// Decodes `data` on a fresh cache and on caches that already hold softflowd's v9 and IPFIX
/// templates (so mutated data sets meet a template), then twice in a row (templates it
/// carries meet its own data). Nothing panics; every record counted is returned; the cache
/// stays within its bounds; every flow aggregates into a point whose message is JSON.
pub fn check_decode(data: &[u8]) {
    let exporter = IpAddr::V4(Ipv4Addr::LOCALHOST);
    for warm in [None, Some(V9), Some(IPFIX)] {
        let mut t = Templates::new();
        if let Some(w) = warm {
            let mut out = Vec::new();
            decode(&mut t, exporter, w, 1, &mut out, &mut Counts::default()).unwrap();
        }
        let mut out = Vec::new();
        let mut counts = Counts::default();
        for _ in 0..2 {
            let _ = decode(&mut t, exporter, data, 1, &mut out, &mut counts);
        }
        assert_eq!(counts.records, out.len() as u64);
        assert!(t.len() <= 2 * MAX_TEMPLATES_PER_DOMAIN);
        let mut agg = Aggregator::new(1);
        for r in out {
            agg.add(r, 1);
        }
        let settings = PointSettings {
            source: "netflow".into(),
            namespace: "ns".into(),
            host: "h".into(),
            tags: Vec::new(),
        };
        for f in agg.flush(2) {
            let p = point(&f, 2_000_000_000, &settings);
            let Some(dk_proto::Value::S(m)) = p.get_field("message") else {
                panic!("no message in {p:?}");
            };
            let _: serde_json::Value = serde_json::from_str(m).unwrap();
        }
    }
}

/// Decodes `data` as an sFlow datagram (the version is forced to 5 so that mutations reach the
/// samples): nothing panics, no template is learnt, every record is a one-packet sFlow flow
/// received now, at most one per sample, and all of them go through [`check_decode`].
pub fn check_sflow(data: &[u8]) {
    let mut bytes = data.to_vec();
    if bytes.len() >= 4 {
        bytes[..4].copy_from_slice(&5u32.to_be_bytes());
    }
    let mut t = Templates::new();
    let mut out = Vec::new();
    let mut counts = Counts::default();
    let _ = decode(
        &mut t,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        &bytes,
        7,
        &mut out,
        &mut counts,
    );
    assert!(t.is_empty());
    assert_eq!(counts.records, out.len() as u64);
    let samples = counts.records + counts.sflow_counter_samples + counts.sflow_skipped;
    assert!(samples <= u64::from(MAX_SAMPLES));
    for r in &out {
        assert_eq!(r.flow_type, FlowType::Sflow5);
        assert_eq!((r.packets, r.start, r.end), (1, 7, 7));
    }
    check_decode(&bytes);
}
