//! Property-style round trips of the codecs and normalisation over seeded random points.

use dk_proto::lineproto::{self, DecodeOptions, Precision};
use dk_proto::normalize::{self, Limits};
use dk_proto::{Category, Point, Value, json, pb};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CASES: usize = 2_000;

/// Characters that exercise every escape rule.
const KEY_CHARS: &[char] = &[
    'a', 'b', 'z', 'Q', '0', '9', '_', '-', '.', ' ', ',', '=', '"', '\\', '#', 'é', '中', '\t',
];
const TEXT_CHARS: &[char] = &[
    'a', 'b', ' ', ',', '=', '"', '\\', '\n', '\r', '\t', '[', ']', 'é', '😀', '<', '&', '\u{2028}',
];

fn text(rng: &mut StdRng, chars: &[char], min: usize, max: usize) -> String {
    let n = rng.random_range(min..=max);
    (0..n)
        .map(|_| chars[rng.random_range(0..chars.len())])
        .collect()
}

/// A non-empty key line protocol can carry exactly: no backslash before `,`, `=`, space, `"`
/// or at the end (Datakit's syntax cannot express those either), no leading `#` or blank.
fn key(rng: &mut StdRng) -> String {
    let mut s: Vec<char> = text(rng, KEY_CHARS, 1, 8).chars().collect();
    for i in 0..s.len() {
        let next = s.get(i + 1).copied();
        if s[i] == '\\' && matches!(next, None | Some(',' | '=' | ' ' | '"')) {
            s[i] = 'x';
        }
    }
    if matches!(s[0], '#' | '\t' | ' ') {
        s[0] = 'k';
    }
    s.into_iter().collect()
}

fn float(rng: &mut StdRng) -> f64 {
    match rng.random_range(0..4) {
        0 => f64::from(rng.random_range(-1000..1000)),
        1 => rng.random_range(-1e6..1e6),
        2 => {
            let f = f64::from_bits(rng.random());
            if f.is_finite() { f } else { 0.5 }
        }
        _ => [0.0, -0.0, 1e21, 1e-7, f64::MAX, f64::MIN_POSITIVE][rng.random_range(0..6)],
    }
}

fn basic(rng: &mut StdRng, kind: u32) -> Value {
    match kind {
        0 => Value::I(rng.random()),
        1 => Value::U(rng.random()),
        2 => Value::F(float(rng)),
        3 => Value::B(rng.random()),
        4 => Value::S(text(rng, TEXT_CHARS, 0, 12)),
        _ => Value::D((0..rng.random_range(0..12)).map(|_| rng.random()).collect()),
    }
}

fn value(rng: &mut StdRng) -> Value {
    let kind = rng.random_range(0..7);
    if kind == 6 {
        let item_kind = rng.random_range(0..6);
        Value::A(
            (0..rng.random_range(0..4))
                .map(|_| basic(rng, item_kind))
                .collect(),
        )
    } else {
        basic(rng, kind)
    }
}

/// A point every codec can carry: unique keys, non-empty tag values, a non-zero time.
fn point(rng: &mut StdRng) -> Point {
    let mut p = Point::new(key(rng), 0);
    let mut used: Vec<String> = Vec::new();
    for _ in 0..rng.random_range(0..4) {
        let k = key(rng);
        if !used.contains(&k) {
            used.push(k.clone());
            let v = key(rng);
            p.tags.push((k, v));
        }
    }
    for _ in 0..rng.random_range(1..6) {
        let k = key(rng);
        if !used.contains(&k) {
            used.push(k.clone());
            p.fields.push((k, value(rng)));
        }
    }
    if p.fields.is_empty() {
        p.fields.push(("__f".into(), Value::I(1)));
    }
    p.time = match rng.random_range(1..i64::MAX) {
        t if rng.random_bool(0.1) => -t,
        t => t,
    };
    p
}

#[test]
fn line_protocol_round_trips_random_points() {
    let mut rng = StdRng::seed_from_u64(0x0011_e907);
    let opts = DecodeOptions::new(Precision::Ns, 1);
    for case in 0..CASES {
        let points: Vec<Point> = (0..rng.random_range(1..4))
            .map(|_| point(&mut rng))
            .collect();
        let body = lineproto::encode(&points);
        let back = lineproto::decode(&body, &opts)
            .unwrap_or_else(|e| panic!("case {case}: {e}\n{}", String::from_utf8_lossy(&body)));
        assert_eq!(
            back,
            points,
            "case {case}:\n{}",
            String::from_utf8_lossy(&body)
        );
    }
}

#[test]
fn protobuf_round_trips_random_points() {
    let mut rng = StdRng::seed_from_u64(0x9b);
    for case in 0..CASES {
        let points: Vec<Point> = (0..rng.random_range(0..4))
            .map(|_| point(&mut rng))
            .collect();
        let back = pb::decode(&pb::encode(&points)).expect("decodes");
        assert_eq!(back, points, "case {case}");
    }
}

#[test]
fn pbjson_round_trips_random_points() {
    let mut rng = StdRng::seed_from_u64(0x75);
    for case in 0..CASES {
        let points: Vec<Point> = (0..rng.random_range(0..4))
            .map(|_| point(&mut rng))
            .collect();
        let body = json::encode_pbjson(&points, &[]);
        let back = json::decode_pbjson(&body).expect("decodes");
        assert_eq!(
            back,
            points,
            "case {case}: {}",
            String::from_utf8_lossy(&body)
        );
        // The mixed decoder takes PB-JSON too.
        assert_eq!(
            json::decode(&body, 1).expect("decodes"),
            points,
            "case {case}"
        );
    }
}

#[test]
fn echo_json_is_valid_json_with_the_same_keys() {
    let mut rng = StdRng::seed_from_u64(0xec40);
    for _ in 0..500 {
        let points: Vec<Point> = (0..rng.random_range(0..4))
            .map(|_| point(&mut rng))
            .collect();
        let body = json::encode(&points);
        let parsed: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
        let arr = parsed.as_array().expect("array");
        assert_eq!(arr.len(), points.len());
        for (j, p) in arr.iter().zip(&points) {
            assert_eq!(j["measurement"].as_str(), Some(p.name.as_str()));
            let fields = j["fields"].as_object().expect("fields object");
            assert_eq!(fields.len(), p.fields.len());
            for (k, _) in &p.fields {
                assert!(fields.contains_key(k), "missing {k:?}");
            }
        }
    }
}

/// A messy point: duplicates, dots, newlines, backslashes, long keys, infinities.
fn messy(rng: &mut StdRng) -> Point {
    const CHARS: &[char] = &['a', 'b', '.', '\\', '\n', 'é', ' '];
    let mut p = Point::new(text(rng, CHARS, 0, 12), rng.random());
    for _ in 0..rng.random_range(0..8) {
        p.tags
            .push((text(rng, CHARS, 0, 10), text(rng, CHARS, 0, 14)));
    }
    for _ in 0..rng.random_range(0..10) {
        let v = match rng.random_range(0..4) {
            0 => {
                Value::F([f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 1.0][rng.random_range(0..4)])
            }
            1 => Value::S(text(rng, CHARS, 0, 14)),
            2 => Value::D(vec![0; rng.random_range(0..14)]),
            _ => value(rng),
        };
        p.fields.push((text(rng, CHARS, 0, 10), v));
    }
    for k in ["status", "name", "source", "class", "date"] {
        if rng.random_bool(0.1) {
            p.fields.push((k.into(), Value::S("x".into())));
        }
    }
    p
}

#[test]
fn normalisation_is_idempotent_on_messy_points() {
    let mut rng = StdRng::seed_from_u64(0x1de);
    let limits = Limits {
        max_measurement_len: 8,
        max_tags: 5,
        max_fields: 6,
        max_key_len: 6,
        max_tag_value_len: 9,
        max_tags_total: 30,
        max_field_value_len: 10,
    };
    let categories = [
        Category::Metric,
        Category::Logging,
        Category::Object,
        Category::CustomObject,
        Category::Tracing,
    ];
    let mut kept = 0;
    for case in 0..CASES * 2 {
        let mut p = messy(&mut rng);
        let cat = categories[case % categories.len()];
        let Ok(_) = normalize::normalize(&mut p, cat, &limits) else {
            continue;
        };
        kept += 1;
        let mut again = p.clone();
        let warns = normalize::normalize(&mut again, cat, &limits).expect("still kept");
        assert_eq!(
            warns,
            vec![],
            "case {case} ({cat}): second pass warned on {p:?}"
        );
        assert_eq!(again, p, "case {case} ({cat})");
        // Normalised points satisfy the limits and have unique, valid keys.
        assert!(!p.name.is_empty() && p.name.len() <= limits.max_measurement_len);
        assert!(p.tags.len() <= limits.max_tags && p.fields.len() <= limits.max_fields);
        let mut keys: Vec<&str> = p
            .tags
            .iter()
            .map(|(k, _)| k.as_str())
            .chain(p.fields.iter().map(|(k, _)| k.as_str()))
            .collect();
        for k in &keys {
            assert!(!k.is_empty() && k.len() <= limits.max_key_len && !k.ends_with('\\'));
            assert!(!k.contains('\n'));
        }
        let n = keys.len();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), n, "case {case}: duplicate keys in {p:?}");
    }
    assert!(
        kept > CASES / 2,
        "the generator should produce mostly keepable points"
    );
}
