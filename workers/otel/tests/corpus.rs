//! The fuzz seeds of `fuzz/seeds/` and seeded random mutations of them, run on stable Rust
//! through the same checks as the fuzz target.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use dk_worker::testing::{Corpus, Mutator};

#[path = "../fuzz/check.rs"]
mod check;

const MUTATIONS: usize = 3_000;
const INTERESTING: &[u8] = b"{}[]\":0123456789abcdef\x00\x01\x0a\x12\x1a\x22\xff\x7f\x80";

#[test]
fn http_body_seeds_and_mutations_never_panic_and_always_answer() {
    let corpus = Corpus::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/bodies"));
    assert!(corpus.seeds.len() >= 12, "the seeds are there");
    for (_, data) in &corpus.seeds {
        check::check_body(data);
    }
    for body in corpus.mutations(Mutator::new(INTERESTING), 1, MUTATIONS) {
        check::check_body(&body);
    }
}
