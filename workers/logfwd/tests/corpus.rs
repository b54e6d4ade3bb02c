//! The fuzz seeds of `fuzz/seeds/` and seeded random mutations of them, run on stable Rust
//! through the same checks as the fuzz targets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use dk_worker::testing::{Corpus, Mutator};

#[path = "../fuzz/check.rs"]
mod check;

const MUTATIONS: usize = 3_000;
const INTERESTING: &[u8] = b"{}\":,\r\n\x00\x01\x02\x08\x09\x0a\x7e\x7f\x80\x81\x88\xff";

fn seeds() -> Corpus {
    Corpus::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/stream"))
}

#[test]
fn stream_seeds_and_mutations_never_panic_and_do_not_depend_on_read_sizes() {
    let corpus = seeds();
    for (_, data) in &corpus.seeds {
        check::check_stream(data);
    }
    for body in corpus.mutations(Mutator::new(INTERESTING), 1, MUTATIONS) {
        check::check_stream(&body);
    }
}

#[test]
fn upgrade_requests_and_mutations_never_panic() {
    check::check_handshake(&dk_input_logfwd::ws::client_request("/logfwd"));
    for body in seeds().mutations(Mutator::new(INTERESTING), 2, MUTATIONS) {
        check::check_handshake(&body);
    }
}
