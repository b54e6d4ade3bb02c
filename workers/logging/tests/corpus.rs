//! The fuzz seeds of `fuzz/seeds/assemble/` and seeded random mutations of them, run through
//! the fuzz target's checks (`fuzz/check.rs`) on stable Rust: nothing panics, read sizes do
//! not change the messages, and plain text arrives whole.

use std::path::Path;

use dk_worker::testing::{Corpus, Mutator};

#[path = "../fuzz/check.rs"]
mod check;

const MUTATIONS: usize = 4_000;

fn seeds() -> Corpus {
    Corpus::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/assemble"))
}

/// Bytes that matter to the socket-log path.
const SPECIAL: &[u8] = b"\n\r\t \x1b[;m\x07\xc2\x9b\x00\xff\xd8\xdc\xe9\x81\x30-:0123456789T";

#[test]
fn every_seed_passes_the_fuzz_checks() {
    for (_, seed) in seeds().seeds {
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
    let corpus = seeds();
    // The option and chunk-size bytes stay as the seed has them; the stream is mutated.
    let mutator = Mutator::new(SPECIAL).keep(2);
    for input in corpus.mutations(mutator, 0x5eed_1095, MUTATIONS) {
        check::check(&input);
    }
}
