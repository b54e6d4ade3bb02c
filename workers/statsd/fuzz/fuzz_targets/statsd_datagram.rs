//! Parsing any datagram and aggregating what it yields never panics, and every item borrows
//! from the datagram.
#![no_main]

use dk_input_statsd::aggregate::{Aggregator, AggregatorConfig};
use dk_input_statsd::parser::{Item, ParseOptions, parse_datagram};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for extensions in [true, false] {
        let mut agg = Aggregator::new(AggregatorConfig {
            percentiles: vec![50.0, 99.9, 100.0],
            percentile_limit: 8,
            ..AggregatorConfig::default()
        });
        parse_datagram(
            data,
            ParseOptions { datadog_extensions: extensions },
            &mut |item| {
                if let Item::Sample(s) = item {
                    assert!(!s.name.is_empty());
                }
                agg.ingest(&item, 1_700_000_000_000_000_000);
            },
        );
        let out = agg.flush(1_700_000_010_000_000_000);
        for p in out.metrics.iter().chain(&out.events) {
            assert!(!p.name.is_empty());
            assert!(!p.fields.is_empty());
        }
    }
});
