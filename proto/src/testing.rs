//! Test support (feature `test-util`): loading a fuzz seed directory and mutating its seeds
//! deterministically for the stable corpus tests of every parser, the Datakit WAL fixture, and
//! the one gate of every test that needs a peer or a privilege ([`require`]).
//!
//! Not part of the contract: only dev-dependencies enable the feature, so release builds do
//! not contain it. The functions panic with a message instead of returning errors.

use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How many seeds a fuzz target's seed directory must hold at least.
pub const MIN_SEEDS: usize = 12;

/// The seeds of one fuzz target, sorted by path.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// `(path, contents)` of every seed file.
    pub seeds: Vec<(PathBuf, Vec<u8>)>,
}

impl Corpus {
    /// Reads every file of `dir`.
    ///
    /// # Panics
    /// When the directory or a file cannot be read, or it holds fewer than [`MIN_SEEDS`].
    pub fn load(dir: impl AsRef<Path>) -> Corpus {
        let dir = dir.as_ref();
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("seed dir {}: {e}", dir.display()));
        let mut seeds: Vec<(PathBuf, Vec<u8>)> = entries
            .map(|entry| {
                let path = entry
                    .unwrap_or_else(|e| panic!("seed dir {}: {e}", dir.display()))
                    .path();
                let data =
                    std::fs::read(&path).unwrap_or_else(|e| panic!("seed {}: {e}", path.display()));
                (path, data)
            })
            .collect();
        seeds.sort();
        assert!(
            seeds.len() >= MIN_SEEDS,
            "{}: expected a dozen seeds, found {}",
            dir.display(),
            seeds.len()
        );
        Corpus { seeds }
    }

    /// `count` mutated inputs, the same on every run for the same `rng_seed`: each one picks a
    /// seed and a second seed to splice from, and applies [`Mutator::mutate`].
    pub fn mutations<'a>(
        &'a self,
        mutator: Mutator<'a>,
        rng_seed: u64,
        count: usize,
    ) -> impl Iterator<Item = Vec<u8>> + 'a {
        let mut rng = StdRng::seed_from_u64(rng_seed);
        (0..count).map(move |_| {
            let (_, data) = &self.seeds[rng.random_range(0..self.seeds.len())];
            let (_, other) = &self.seeds[rng.random_range(0..self.seeds.len())];
            mutator.mutate(&mut rng, data, other)
        })
    }
}

/// Random edits of an input: bit flips, special bytes, truncations, deletions, duplications
/// and splices with another seed.
#[derive(Debug, Clone, Copy)]
pub struct Mutator<'a> {
    /// Bytes that mean something to the parser under test; edits write and insert them.
    pub special: &'a [u8],
    /// Leading bytes no edit changes (a fuzz input's option header).
    pub keep: usize,
}

impl<'a> Mutator<'a> {
    /// A mutator that may edit every byte.
    pub const fn new(special: &'a [u8]) -> Mutator<'a> {
        Mutator { special, keep: 0 }
    }

    /// Leaves the first `keep` bytes of every input as they are.
    #[must_use]
    pub const fn keep(mut self, keep: usize) -> Mutator<'a> {
        self.keep = keep;
        self
    }

    /// One to four random edits of `data`; `other` is the seed splices copy from.
    pub fn mutate(&self, rng: &mut impl Rng, data: &[u8], other: &[u8]) -> Vec<u8> {
        let keep = self.keep;
        let mut d = data.to_vec();
        for _ in 0..rng.random_range(1..=4) {
            let len = d.len();
            match rng.random_range(0..7) {
                0 if len > keep => {
                    let i = rng.random_range(keep..len);
                    d[i] ^= 1 << rng.random_range(0..8);
                }
                1 if len > keep && !self.special.is_empty() => {
                    let i = rng.random_range(keep..len);
                    d[i] = self.special[rng.random_range(0..self.special.len())];
                }
                2 if len >= keep && !self.special.is_empty() => {
                    let i = rng.random_range(keep..=len);
                    d.insert(i, self.special[rng.random_range(0..self.special.len())]);
                }
                3 if len > keep => d.truncate(rng.random_range(keep..len)),
                4 if len > keep + 1 => {
                    let a = rng.random_range(keep..len);
                    let b = rng.random_range(a..len.min(a + 16) + 1);
                    d.drain(a..b.min(len));
                }
                5 if len > keep => {
                    let a = rng.random_range(keep..len);
                    let b = rng.random_range(a..=len.min(a + 32));
                    let chunk = d[a..b].to_vec();
                    let at = rng.random_range(keep..=len);
                    d.splice(at..at, chunk);
                }
                _ if !other.is_empty() && d.len() >= keep => {
                    let a = rng.random_range(0..other.len());
                    let b = rng.random_range(a..=other.len().min(a + 64));
                    let at = rng.random_range(keep..=d.len());
                    d.splice(at..at, other[a..b].iter().copied());
                }
                _ => {}
            }
        }
        d
    }
}

/// The `cache/dw-wal` that real Datakit 1.84.1 left behind (`tests/fixtures/`, with a `.md`
/// saying how it was made; copy it with [`copy_tree`] before adopting it).
pub fn datakit_wal_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/datakit-1.84-dw-wal")
}

/// The file name of the fail-cache file in [`datakit_wal_fixture`]`/fc`.
pub const DATAKIT_WAL_FC_FILE: &str = "data.00000000000000000000000000000000";

/// Copies a directory tree, making the copies writable.
///
/// # Panics
/// When a directory or file cannot be read or written.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    let entries = std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("{}: {e}", from.display()));
        let dest = to.join(entry.file_name());
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            copy_tree(&entry.path(), &dest);
        } else {
            let bytes = std::fs::read(entry.path())
                .unwrap_or_else(|e| panic!("{}: {e}", entry.path().display()));
            std::fs::write(&dest, bytes).unwrap_or_else(|e| panic!("{}: {e}", dest.display()));
        }
    }
}

/// The registry's text exposition.
///
/// # Panics
/// When the registry cannot be encoded.
pub fn exposition(registry: &prometheus_client::registry::Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)
        .unwrap_or_else(|e| panic!("encoding the registry: {e}"));
    out
}

/// The sum of the samples of `name` whose labels include every `labels` pair (0 if absent).
pub fn metric(
    registry: &prometheus_client::registry::Registry,
    name: &str,
    labels: &[(&str, &str)],
) -> f64 {
    exposition(registry)
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Decodes a line-protocol file written by the local sink (nanosecond times).
///
/// # Panics
/// When the file cannot be read, does not end with a newline, or does not decode.
pub fn decode_file(path: &Path) -> Vec<crate::Point> {
    let body = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        body.is_empty() || body.ends_with(b"\n"),
        "{} must end with a newline",
        path.display()
    );
    let options = crate::lineproto::DecodeOptions {
        precision: crate::lineproto::Precision::Ns,
        now_ns: 0,
    };
    crate::lineproto::decode(&body, &options).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A simple metric point: `cpu,cpu=<cpu> usage=<n>,n=<n>i <time>`.
pub fn metric_point(cpu: &str, n: i64) -> crate::Point {
    crate::Point::new("cpu", 1_700_000_000_000_000_000 + n)
        .tag("cpu", cpu)
        .field("usage", crate::Value::F(n as f64 + 0.5))
        .field("n", crate::Value::I(n))
}

/// Set to `1` (as `scripts/test.sh`, and so `.ci/run`, do), a test that needs a missing peer
/// program or privilege fails instead of skipping.
pub const REQUIRE_PEERS_VAR: &str = "DK_REQUIRE_PEERS";

/// Whether missing peers fail tests ([`REQUIRE_PEERS_VAR`] is `1`).
pub fn peers_required() -> bool {
    std::env::var(REQUIRE_PEERS_VAR).is_ok_and(|v| v.trim() == "1")
}

/// The gate of a test that needs `what` (a peer program, root, a cgroup controller...):
/// returns `true` when `available`. Otherwise it panics naming `what` and `how` to get it
/// when [`peers_required`], else prints a `SKIP` line and returns `false` (the test then
/// returns early).
///
/// # Panics
/// When `what` is not available and [`REQUIRE_PEERS_VAR`] is `1`.
pub fn require(what: &str, available: bool, how: &str) -> bool {
    if available {
        return true;
    }
    assert!(
        !peers_required(),
        "{what} is required ({REQUIRE_PEERS_VAR}=1) but not available: {how}"
    );
    // Test output only: visible with --nocapture and in nextest's output of the test.
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "SKIP: {what} is not available ({how}); set {REQUIRE_PEERS_VAR}=1 to fail instead"
        );
    }
    false
}

/// Whether `program` (a name looked up on `PATH`, or a path) is an executable file.
pub fn program_exists(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    let runnable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return runnable(Path::new(program));
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| runnable(&d.join(program))))
}

/// [`require`] for a program: `apt` names the Debian package that installs it.
///
/// # Panics
/// As [`require`].
pub fn require_program(program: &str, apt: &str) -> bool {
    require(
        &format!("the program {program}"),
        program_exists(program),
        &format!("apt-get install -y {apt}, or run scripts/test.sh, which installs it"),
    )
}

/// [`require`] for Python modules (real client libraries); `pip` names the PyPI packages.
///
/// # Panics
/// As [`require`].
pub fn require_python_modules(modules: &[&str], pip: &str) -> bool {
    let code = modules
        .iter()
        .map(|m| format!("import {m}"))
        .collect::<Vec<_>>()
        .join("; ");
    let ok = std::process::Command::new("python3")
        .args(["-c", &code])
        .output()
        .is_ok_and(|o| o.status.success());
    require(
        &format!("the python3 modules {}", modules.join(", ")),
        ok,
        &format!("python3 -m pip install {pip}, or run scripts/test.sh, which installs them"),
    )
}

/// Whether the process runs as root (effective uid 0, from `/proc/self/status`).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// [`require`] for root; `why` says what the test does with it.
///
/// # Panics
/// As [`require`].
pub fn require_root(why: &str) -> bool {
    require(
        &format!("root ({why})"),
        is_root(),
        "run the tests as root, as CI does",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_peer_is_reported_as_such_and_a_present_one_passes() {
        assert!(require("a peer that is there", true, "nothing to do"));
        assert!(program_exists("sh"), "sh is on PATH");
        assert!(program_exists("/bin/sh"));
        assert!(!program_exists("dk-no-such-program-anywhere"));
        assert!(!program_exists("/nonexistent/sh"));
        let missing =
            std::panic::catch_unwind(|| require("a peer that is not there", false, "install it"));
        if peers_required() {
            let msg = missing.expect_err("fails under DK_REQUIRE_PEERS=1");
            let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
            assert!(
                msg.contains("a peer that is not there is required"),
                "{msg}"
            );
            assert!(msg.contains("install it"), "{msg}");
        } else {
            assert_eq!(missing.ok(), Some(false));
        }
    }

    fn dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/lineproto_decode")
    }

    #[test]
    fn corpus_loads_every_seed_sorted_by_path() {
        let corpus = Corpus::load(dir());
        assert!(corpus.seeds.len() >= MIN_SEEDS);
        assert!(corpus.seeds.windows(2).all(|w| w[0].0 < w[1].0));
        let (path, data) = &corpus.seeds[0];
        assert_eq!(data, &std::fs::read(path).unwrap_or_default());
    }

    #[test]
    #[should_panic(expected = "expected a dozen seeds")]
    fn corpus_refuses_a_directory_with_few_seeds() {
        Corpus::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches"));
    }

    #[test]
    fn mutations_are_the_same_for_the_same_rng_seed() {
        let corpus = Corpus::load(dir());
        let m = Mutator::new(b",= \n");
        let a: Vec<Vec<u8>> = corpus.mutations(m, 7, 50).collect();
        let b: Vec<Vec<u8>> = corpus.mutations(m, 7, 50).collect();
        let c: Vec<Vec<u8>> = corpus.mutations(m, 8, 50).collect();
        assert_eq!(a.len(), 50);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(
            a.iter()
                .any(|body| !corpus.seeds.iter().any(|(_, s)| s == body))
        );
    }

    #[test]
    fn mutate_leaves_the_kept_prefix_alone() {
        let mut rng = StdRng::seed_from_u64(1);
        let m = Mutator::new(b"xyz").keep(2);
        let data = b"AB0123456789";
        for _ in 0..2_000 {
            let out = m.mutate(&mut rng, data, b"other seed");
            assert_eq!(&out[..2], b"AB", "{out:?}");
        }
        // Shorter than the kept prefix: nothing can be edited.
        assert_eq!(m.mutate(&mut rng, b"A", b"other"), b"A");
    }

    #[test]
    fn mutate_grows_an_empty_input_from_the_special_bytes() {
        let mut rng = StdRng::seed_from_u64(2);
        let m = Mutator::new(b"!");
        let outs: Vec<Vec<u8>> = (0..500).map(|_| m.mutate(&mut rng, b"", b"")).collect();
        assert!(outs.iter().any(|out| out.as_slice() == b"!"));
        assert!(outs.iter().all(|out| out.len() <= 64), "{outs:?}");
    }
}
