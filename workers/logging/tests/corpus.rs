//! The fuzz seeds of `fuzz/seeds/assemble/` and seeded random mutations of them, run through
//! the fuzz target's checks (`fuzz/check.rs`) on stable Rust: nothing panics, read sizes do
//! not change the messages, and plain text arrives whole.

use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[path = "../fuzz/check.rs"]
mod check;

const MUTATIONS: usize = 4_000;

fn seeds() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/assemble");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 12,
        "expected a dozen seeds, found {}",
        paths.len()
    );
    paths
        .iter()
        .map(|p| std::fs::read(p).expect("seed readable"))
        .collect()
}

/// Bytes that matter to the socket-log path.
const SPECIAL: &[u8] = b"\n\r\t \x1b[;m\x07\xc2\x9b\x00\xff\xd8\xdc\xe9\x81\x30-:0123456789T";

fn mutate(rng: &mut StdRng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.random_range(0..seeds.len())].clone();
    for _ in 0..rng.random_range(1..6) {
        let len = data.len();
        match rng.random_range(0..7) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                data[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                data[i] = SPECIAL[rng.random_range(0..SPECIAL.len())];
            }
            2 => {
                let i = rng.random_range(0..=len);
                data.insert(i, SPECIAL[rng.random_range(0..SPECIAL.len())]);
            }
            3 if len > 2 => {
                data.truncate(rng.random_range(2..len));
            }
            4 if len > 2 => {
                let i = rng.random_range(2..len);
                let n = rng.random_range(1..=(len - i).min(16));
                data.drain(i..i + n);
            }
            5 if len > 2 => {
                let i = rng.random_range(2..len);
                let n = rng.random_range(1..=(len - i).min(64));
                let piece = data[i..i + n].to_vec();
                let at = rng.random_range(2..=data.len());
                data.splice(
                    at..at,
                    piece
                        .iter()
                        .copied()
                        .cycle()
                        .take(n * rng.random_range(1..8)),
                );
            }
            _ => {
                let other = &seeds[rng.random_range(0..seeds.len())];
                if other.len() > 2 {
                    let from = rng.random_range(2..other.len());
                    data.extend_from_slice(&other[from..]);
                }
            }
        }
    }
    data
}

#[test]
fn every_seed_passes_the_fuzz_checks() {
    for seed in seeds() {
        check::check(&seed);
        // Every option byte and a few read sizes on each seed.
        for opt in 0..=u8::MAX {
            for chunk in [1u8, 3, 64] {
                let mut input = vec![opt, chunk];
                input.extend_from_slice(&seed[2.min(seed.len())..]);
                check::check(&input);
            }
        }
    }
}

#[test]
fn random_mutations_pass_the_fuzz_checks() {
    let seeds = seeds();
    let mut rng = StdRng::seed_from_u64(0x5eed_1095);
    for _ in 0..MUTATIONS {
        let input = mutate(&mut rng, &seeds);
        check::check(&input);
    }
}
