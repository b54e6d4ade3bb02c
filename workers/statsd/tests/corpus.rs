//! The fuzz seeds of `fuzz/seeds/` and seeded random mutations of them, parsed and aggregated
//! on stable Rust: nothing panics, items borrow sensible text, and flushed points are whole.

use std::path::{Path, PathBuf};

use dk_input_statsd::aggregate::{Aggregator, AggregatorConfig};
use dk_input_statsd::parser::{Item, ParseOptions, SampleValue, parse_datagram};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const MUTATIONS: usize = 5_000;
const NOW: i64 = 1_700_000_000_000_000_000;

fn seeds() -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/statsd_datagram");
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("dir entry").path();
            let data = std::fs::read(&path).expect("seed readable");
            (path, data)
        })
        .collect();
    out.sort();
    assert!(
        out.len() >= 12,
        "expected a dozen seeds, found {}",
        out.len()
    );
    out
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

fn mutate(rng: &mut StdRng, data: &[u8], other: &[u8]) -> Vec<u8> {
    let mut d = data.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let len = d.len();
        match rng.random_range(0..7) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                d[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                d[i] = INTERESTING[rng.random_range(0..INTERESTING.len())];
            }
            2 => {
                let i = rng.random_range(0..=len);
                d.insert(i, INTERESTING[rng.random_range(0..INTERESTING.len())]);
            }
            3 if len > 0 => d.truncate(rng.random_range(0..len)),
            4 if len > 1 => {
                let a = rng.random_range(0..len);
                let b = rng.random_range(a..len.min(a + 16) + 1);
                d.drain(a..b.min(len));
            }
            5 if len > 0 => {
                let a = rng.random_range(0..len);
                let b = rng.random_range(a..=len.min(a + 32));
                let chunk = d[a..b].to_vec();
                let at = rng.random_range(0..=len);
                d.splice(at..at, chunk);
            }
            _ if !other.is_empty() => {
                let a = rng.random_range(0..other.len());
                let b = rng.random_range(a..=other.len().min(a + 64));
                let at = rng.random_range(0..=d.len());
                d.splice(at..at, other[a..b].iter().copied());
            }
            _ => {}
        }
    }
    d
}

#[test]
fn seeds_and_mutations_never_panic() {
    let corpus = seeds();
    for (_, data) in &corpus {
        check(data);
    }
    let mut rng = StdRng::seed_from_u64(8125);
    for _ in 0..MUTATIONS {
        let (_, data) = &corpus[rng.random_range(0..corpus.len())];
        let (_, other) = &corpus[rng.random_range(0..corpus.len())];
        check(&mutate(&mut rng, data, other));
    }
}

#[test]
fn valid_seeds_parse_without_errors_and_error_seeds_report_every_line() {
    for (path, data) in seeds() {
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
