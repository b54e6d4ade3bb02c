//! The fuzz seeds of `fuzz/seeds/` and seeded random mutations of them, run on stable Rust
//! through the same checks as the fuzz targets: nothing panics, framing does not depend on
//! read boundaries, and what parses is well-formed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[path = "../fuzz/check.rs"]
mod check;

const MUTATIONS_PER_TARGET: usize = 3_000;

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
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
        "{target}: expected a dozen seeds, found {}",
        out.len()
    );
    out
}

const INTERESTING: &[u8] = b" \t\r\n;=.*$-+eEnN0123456789\x00\xff\x80";

/// One to four random edits: bit flips, special bytes, truncations, deletions, duplications
/// and splices with another seed.
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

fn run_target(target: &str, seed: u64, check: fn(&[u8])) {
    let corpus = seeds(target);
    for (_, data) in &corpus {
        check(data);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    for _ in 0..MUTATIONS_PER_TARGET {
        let (_, data) = &corpus[rng.random_range(0..corpus.len())];
        let (_, other) = &corpus[rng.random_range(0..corpus.len())];
        let body = mutate(&mut rng, data, other);
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
