//! The fuzz seeds of `proto/fuzz/seeds/` and seeded random mutations of them, run through
//! every decoder on stable Rust: nothing panics, what decodes re-encodes stably, and line
//! protocol errors point at a real line and column.

use std::path::Path;

use dk_proto::lineproto::{self, DecodeOptions, LpError, Precision};
use dk_proto::normalize::{self, Limits};
use dk_proto::testing::{Corpus, Mutator};
use dk_proto::{Category, json, pb};

const MUTATIONS_PER_TARGET: usize = 3_000;
const NOW: i64 = 1_700_000_000_000_000_000;

fn seeds(target: &str) -> Corpus {
    Corpus::load(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/seeds")
            .join(target),
    )
}

/// The error points inside the body: an existing line, a column at most one past its end.
fn assert_position(body: &[u8], e: &LpError) {
    assert!(e.line >= 1 && e.column >= 1, "{e}");
    let lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
    assert!(
        e.line <= lines.len(),
        "line {} of {}: {e}",
        e.line,
        lines.len()
    );
    let len = lines[e.line - 1].len();
    assert!(
        e.column <= len + 1,
        "column {} past line length {len}: {e}",
        e.column
    );
    assert!(!e.message.is_empty());
}

fn check_lineproto(body: &[u8]) {
    let _ = lineproto::decode(body, &DecodeOptions::new(Precision::Auto, NOW));
    let ns = DecodeOptions::new(Precision::Ns, NOW);
    match lineproto::decode(body, &ns) {
        Ok(points) => {
            let once = lineproto::encode(&points);
            let again = lineproto::decode(&once, &ns).unwrap_or_else(|e| {
                panic!(
                    "re-encoded body does not decode: {e}\n{}\nfrom {:?}",
                    String::from_utf8_lossy(&once),
                    String::from_utf8_lossy(body)
                )
            });
            assert_eq!(
                lineproto::encode(&again),
                once,
                "re-encoding is not stable for {:?}",
                String::from_utf8_lossy(body)
            );
            for (i, mut p) in points.into_iter().enumerate() {
                let cat = [Category::Metric, Category::Logging, Category::Object][i % 3];
                if normalize::normalize(&mut p, cat, &Limits::default()).is_ok() {
                    let mut q = p.clone();
                    assert_eq!(
                        normalize::normalize(&mut q, cat, &Limits::default()),
                        Ok(vec![]),
                        "normalisation is not idempotent on {p:?}"
                    );
                }
            }
        }
        Err(e) => assert_position(body, &e),
    }
}

fn check_pb(body: &[u8]) {
    match pb::decode(body) {
        Ok(points) => {
            let once = pb::encode(&points);
            let again = pb::decode(&once).expect("re-encoded points decode");
            assert_eq!(pb::encode(&again), once, "re-encoding is not stable");
        }
        Err(e) => assert!(e.0.starts_with("point #"), "{e}"),
    }
}

fn check_json(body: &[u8]) {
    if let Err(e) = json::decode(body, NOW) {
        assert!(!e.0.is_empty());
    }
    if let Ok(points) = json::decode_pbjson(body) {
        let once = json::encode_pbjson(&points, &[]);
        let again = json::decode_pbjson(&once).expect("re-encoded points decode");
        assert_eq!(
            json::encode_pbjson(&again, &[]),
            once,
            "re-encoding is not stable"
        );
        let echo = json::encode(&points);
        serde_json::from_slice::<serde_json::Value>(&echo).expect("echo=json is valid JSON");
    }
}

fn check_all(body: &[u8]) {
    check_lineproto(body);
    check_pb(body);
    check_json(body);
}

const INTERESTING: &[u8] = b"\\\",= \n\r\t[]{}:#0-.9eiutfb\x00\xff\x80\x0a\x12\x08";

fn run_target(target: &str, seed: u64, check: fn(&[u8])) {
    let corpus = seeds(target);
    for (_, data) in &corpus.seeds {
        // Every decoder sees every seed, whatever its format.
        check_all(data);
    }
    for body in corpus.mutations(Mutator::new(INTERESTING), seed, MUTATIONS_PER_TARGET) {
        check(&body);
    }
}

#[test]
fn lineproto_seeds_and_mutations_never_panic() {
    run_target("lineproto_decode", 1, check_lineproto);
}

#[test]
fn pb_seeds_and_mutations_never_panic() {
    run_target("pb_decode", 2, check_pb);
}

#[test]
fn json_seeds_and_mutations_never_panic() {
    run_target("json_decode", 3, check_json);
}

/// The `/metrics` parser: no panic; families are named and hold only samples that extend
/// their name; errors name a line of the text.
fn check_promtext(body: &[u8]) {
    let Ok(text) = std::str::from_utf8(body) else {
        return;
    };
    match dk_proto::promtext::parse(text) {
        Ok(families) => {
            for f in &families {
                assert!(!f.name.is_empty());
                for s in &f.samples {
                    assert!(s.name.starts_with(&f.name), "{} in {}", s.name, f.name);
                }
            }
        }
        Err(e) => assert!(
            e.line >= 1 && e.line <= text.lines().count().max(1) && !e.message.is_empty(),
            "{e}"
        ),
    }
}

#[test]
fn promtext_seeds_and_mutations_never_panic() {
    let corpus = seeds("promtext_parse");
    assert!(corpus.seeds.len() >= 12);
    for (_, data) in &corpus.seeds {
        check_promtext(data);
    }
    run_target("promtext_parse", 4, check_promtext);
    let page = &corpus
        .seeds
        .iter()
        .find(|(name, _)| name.to_string_lossy().contains("agent_page"))
        .expect("the agent page seed")
        .1;
    let families = dk_proto::promtext::parse(std::str::from_utf8(page).unwrap()).unwrap();
    assert!(families.iter().any(|f| f.name == "datakit_process_pid"));
}

#[test]
fn valid_seeds_decode_to_the_expected_points() {
    let lp = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/lineproto_decode/01_metric.lp"),
    )
    .expect("seed");
    let pts = lineproto::decode(&lp, &DecodeOptions::new(Precision::Auto, NOW)).expect("valid");
    assert_eq!(pts.len(), 1);
    assert_eq!(pts[0].get_tag("host"), Some("web-01"));

    let body = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/pb_decode/01_valid.pb"),
    )
    .expect("seed");
    let pts = pb::decode(&body).expect("valid");
    assert_eq!(pts.len(), 2);
    assert_eq!(pts[0].name, "cpu");
    assert_eq!(pts[0].get_field("n"), Some(&dk_proto::Value::I(-3)));
    assert_eq!(pts[1].get_field("used"), Some(&dk_proto::Value::I(7)));

    let body = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/json_decode/03_mixed.json"),
    )
    .expect("seed");
    let pts = json::decode(&body, NOW).expect("valid");
    let names: Vec<&str> = pts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec!["a", "b", "c"]);
}

#[test]
fn error_seeds_report_each_line() {
    let body = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/lineproto_decode/16_errors.lp"),
    )
    .expect("seed");
    // Decoding line by line: every line of this seed is an error at a known place.
    let expected = [
        (1, 4),
        (1, 11),
        (1, 1),
        (1, 3),
        (1, 5),
        (1, 5),
        (1, 3),
        (1, 7),
    ];
    for (line, want) in body
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .zip(expected)
    {
        let e = lineproto::decode(line, &DecodeOptions::new(Precision::Ns, NOW))
            .expect_err("error line");
        assert_eq!(
            (e.line, e.column),
            want,
            "{:?}: {e}",
            String::from_utf8_lossy(line)
        );
    }
}
