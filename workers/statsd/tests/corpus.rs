//! The fuzz seeds of `fuzz/seeds/` and seeded random mutations of them, parsed and aggregated
//! on stable Rust: nothing panics, items borrow sensible text, and flushed points are whole.

use std::path::Path;

use dk_input_statsd::aggregate::{Aggregator, AggregatorConfig};
use dk_input_statsd::parser::{Item, ParseOptions, SampleValue, parse_datagram};
use dk_worker::testing::{Corpus, Mutator};

const MUTATIONS: usize = 5_000;
const NOW: i64 = 1_700_000_000_000_000_000;

fn seeds() -> Corpus {
    Corpus::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/statsd_datagram"))
}

/// Parses and aggregates `data` both with and without extensions; returns (items, errors).
fn check(data: &[u8]) -> (usize, usize) {
    let mut items = 0;
    let mut errors = 0;
    for extensions in [true, false] {
        let mut agg = Aggregator::new(AggregatorConfig {
            percentiles: vec![50.0, 90.0, 99.9, 100.0],
            percentile_limit: 16,
            ..AggregatorConfig::default()
        });
        parse_datagram(
            data,
            ParseOptions {
                datadog_extensions: extensions,
            },
            &mut |item| {
                match item {
                    Item::Sample(s) => {
                        assert!(!s.name.is_empty());
                        assert!(!s.name.contains(char::is_whitespace), "{s:?}");
                        if let SampleValue::Number { value, .. } = s.value {
                            assert!(value.is_finite());
                        }
                        if let Some(r) = s.rate {
                            assert!(r > 0.0 && r.is_finite());
                        }
                        for (k, v) in s.dd_tags.iter() {
                            assert!(!k.is_empty() && !v.is_empty());
                        }
                        items += 1;
                    }
                    Item::Event(e) => {
                        assert!(!e.title.is_empty() && !e.text.is_empty());
                        items += 1;
                    }
                    Item::ServiceCheck(sc) => {
                        assert!(!sc.name.is_empty());
                        items += 1;
                    }
                    Item::Error(e, line) => {
                        assert!(!e.to_string().is_empty());
                        assert!(!line.0.is_empty());
                        errors += 1;
                    }
                }
                agg.ingest(&item, NOW);
            },
        );
        let out = agg.flush(NOW + 10);
        for p in out.metrics.iter().chain(&out.events) {
            assert!(!p.name.is_empty(), "{p:?}");
            assert!(!p.fields.is_empty(), "{p:?}");
            assert!(
                p.tags.windows(2).all(|w| w[0].0 < w[1].0),
                "tags sorted, unique: {p:?}"
            );
        }
    }
    (items, errors)
}

const INTERESTING: &[u8] = b"|:#@,=.\n\r\t _{}TcegsmhdE0-+9\x00\xff\x80";

#[test]
fn seeds_and_mutations_never_panic() {
    let corpus = seeds();
    for (_, data) in &corpus.seeds {
        check(data);
    }
    for body in corpus.mutations(Mutator::new(INTERESTING), 8125, MUTATIONS) {
        check(&body);
    }
}

#[test]
fn valid_seeds_parse_without_errors_and_error_seeds_report_every_line() {
    for (path, data) in seeds().seeds {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let (items, errors) = check(&data);
        match name {
            "10_errors" => assert_eq!(errors, 2 * 9, "{name}"),
            "12_invalid_utf8" | "13_huge_numbers" | "14_bad_options" | "15_odd_names"
            | "16_separators" => {}
            _ => {
                assert!(items > 0, "{name}");
                // Without extensions, DogStatsD-only lines are errors; with them, none is.
                let mut with_ext_errors = 0;
                parse_datagram(&data, ParseOptions::default(), &mut |item| {
                    if let Item::Error(e, line) = item {
                        with_ext_errors += 1;
                        panic!("{name}: {e} in {line}");
                    }
                });
                assert_eq!(with_ext_errors, 0);
            }
        }
    }
}
