//! The fuzz seeds of `fuzz/seeds/` and seeded random mutations of them, run on stable Rust
//! through the same check as the fuzz target.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use dk_worker::testing::{Corpus, Mutator};

#[path = "../fuzz/check.rs"]
mod check;

const MUTATIONS: usize = 3_000;

const INTERESTING: &[u8] = b"\x00\x01\x02\x03\x04\x05\x09\x0a\xff\xfe\x80\x7f";

#[test]
fn decode_seeds_and_mutations_never_panic_nor_overgrow() {
    let corpus = Corpus::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/decode"));
    assert!(corpus.seeds.len() >= 6, "the seeds are there");
    for (_, data) in &corpus.seeds {
        check::check_decode(data);
    }
    for body in corpus.mutations(Mutator::new(INTERESTING), 7, MUTATIONS) {
        check::check_decode(&body);
    }
}

#[test]
fn sflow_seeds_and_mutations_never_panic_nor_overgrow() {
    let corpus = Corpus::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/sflow"));
    assert!(corpus.seeds.len() >= 4, "the seeds are there");
    for (_, data) in &corpus.seeds {
        check::check_sflow(data);
    }
    for body in corpus.mutations(Mutator::new(INTERESTING), 11, MUTATIONS) {
        check::check_sflow(&body);
    }
}
