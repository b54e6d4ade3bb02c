//! The fuzz seeds of `fuzz/seeds/` and seeded random mutations of them, run on stable Rust
//! through the same checks as the fuzz target: nothing panics, what is accepted is a
//! well-formed profile, multipart bodies round-trip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;

use dk_input_pyroscope::ingest::{MAX_BODY_BYTES, Upload, accept};
use dk_worker::testing::{Corpus, Mutator};

#[path = "../fuzz/check.rs"]
mod check;

const MUTATIONS: usize = 4_000;

const INTERESTING: &[u8] = b"\r\n-{}=,&%+\"; \x00\xff0123456789";

fn seeds() -> Corpus {
    Corpus::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/ingest"))
}

#[test]
fn ingest_seeds_and_mutations_never_panic() {
    let corpus = seeds();
    assert!(corpus.seeds.len() >= 5);
    for (_, data) in &corpus.seeds {
        check::check_upload(data);
    }
    for data in corpus.mutations(Mutator::new(INTERESTING), 1, MUTATIONS) {
        check::check_upload(&data);
    }
}

#[test]
fn the_seeds_are_accepted_or_refused_as_their_names_say() {
    let corpus = seeds();
    let mut seen = 0;
    for (name, data) in &corpus.seeds {
        let (q, ct, body) = check::split(data);
        let got = accept(
            Upload {
                query: &q,
                content_type: &ct,
                body,
            },
            &BTreeMap::new(),
            MAX_BODY_BYTES,
        );
        let name = name.file_name().unwrap().to_string_lossy().into_owned();
        match &name[..2] {
            "01" => {
                let p = got.unwrap();
                assert_eq!(p.event.attachments, vec!["delta-heap.pprof"]);
                assert_eq!(p.tags["__session_id__"], "718f");
            }
            "02" => assert_eq!(got.unwrap().event.language, "python"),
            "03" => {
                let p = got.unwrap();
                assert_eq!((p.event.format, p.event.language), ("jfr", "java"));
                assert_eq!(p.attachments.len(), 2, "the jfr and its labels");
            }
            "04" => assert_eq!(got.unwrap_err().reason(), "no_name"),
            "05" => assert_eq!(got.unwrap_err().reason(), "bad_multipart"),
            "06" => assert_eq!(got.unwrap().event.language, "nodejs"),
            "07" => {
                let p = got.unwrap();
                assert_eq!(
                    p.attachments[0],
                    ("delta-mutex.pprof".into(), b"MUTEX".to_vec())
                );
                assert_eq!(p.attachments.len(), 3);
            }
            "08" => assert_eq!(got.unwrap().event.attachments, vec!["goroutines.pprof"]),
            "09" => assert_eq!(got.unwrap_err().reason(), "content_type"),
            "10" => assert_eq!(got.unwrap_err().reason(), "bad_time"),
            "11" => assert_eq!(got.unwrap_err().reason(), "empty_body"),
            "12" => {
                let p = got.unwrap();
                assert_eq!(p.event.language, "ruby");
                assert_eq!(p.attachments, vec![("auto.pprof".into(), b"RB".to_vec())]);
            }
            "13" => {
                let p = got.unwrap();
                assert_eq!(p.event.language, "rust");
                assert_eq!(p.tags["runtime-id"], "abc");
                assert_eq!(p.event.end, "2023-11-14T22:13:30Z");
            }
            other => panic!("unexpected seed {other}"),
        }
        seen += 1;
    }
    assert_eq!(seen, corpus.seeds.len());
}
