//! The fuzz seeds of `fuzz/seeds/pid_files` and seeded random mutations of them, given to
//! every host_processes parser on stable Rust: nothing panics.

use std::path::Path;

use dk_input_host::parse::pid::{check_all, parse_pid_stat};
use dk_worker::testing::{Corpus, Mutator};

const MUTATIONS: usize = 5_000;
const INTERESTING: &[u8] = b"()[]:/-\n\t \0 0A09socket:.scope";

fn seeds() -> Corpus {
    Corpus::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/pid_files"))
}

#[test]
fn pid_file_seeds_and_mutations_never_panic_a_parser() {
    let corpus = seeds();
    for (_, data) in &corpus.seeds {
        check_all(data);
    }
    for body in corpus.mutations(Mutator::new(INTERESTING), 1729, MUTATIONS) {
        check_all(&body);
    }
}

#[test]
fn the_stat_seeds_parse_except_the_truncated_one() {
    for (path, data) in seeds().seeds {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !name.contains("stat") || name.contains("status") {
            continue;
        }
        let text = String::from_utf8_lossy(&data);
        let parsed = parse_pid_stat(&text);
        assert_eq!(
            parsed.is_ok(),
            !name.contains("truncated"),
            "{name}: {parsed:?}"
        );
    }
}
