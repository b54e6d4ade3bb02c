//! The fuzz seeds of `fuzz/seeds/` and seeded random mutations of them, run on stable Rust
//! through the same checks as the fuzz targets: nothing panics, framing does not depend on
//! read boundaries, and what parses is well-formed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use dk_worker::testing::{Corpus, Mutator};

#[path = "../fuzz/check.rs"]
mod check;

const MUTATIONS_PER_TARGET: usize = 3_000;

fn seeds(target: &str) -> Corpus {
    Corpus::load(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/seeds")
            .join(target),
    )
}

const INTERESTING: &[u8] = b" \t\r\n;=.*$-+eEnN0123456789\x00\xff\x80";

fn run_target(target: &str, seed: u64, check: fn(&[u8])) {
    let corpus = seeds(target);
    for (_, data) in &corpus.seeds {
        check(data);
    }
    for body in corpus.mutations(Mutator::new(INTERESTING), seed, MUTATIONS_PER_TARGET) {
        check(&body);
    }
}

#[test]
fn line_seeds_and_mutations_never_panic() {
    run_target("line", 1, check::check_lines);
}

#[test]
fn seeds_hold_the_expected_samples() {
    use dk_input_graphite::line::{parse_line, split_lines};
    let seed =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/line/05_errors.txt"))
            .unwrap();
    let errors = split_lines(&seed)
        .filter(|l| parse_line(l).is_err())
        .count();
    assert_eq!(errors, 7, "every line of 05_errors.txt is malformed");
    let seed =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/line/03_tags.txt"))
            .unwrap();
    let first = split_lines(&seed).next().unwrap();
    let s = parse_line(first).unwrap().unwrap();
    assert_eq!(s.name, b"disk.used");
    assert_eq!(s.tags().count(), 3);
}

#[test]
fn process_seeds_and_mutations_never_panic() {
    run_target("line", 2, check::check_process);
}
