//! The contract between the agent's processes.
//!
//! Everything a worker and the supervisor exchange is defined here: the [`Point`] model of
//! Datakit, its [`Category`] list with upload paths, the codecs (line protocol, protobuf
//! `com.guance.Point`, JSON), Datakit's normalisation rules, and the tarpc services of
//! [`rpc`]. Nothing in this crate does I/O beyond encoding and decoding bytes.

pub mod category;
pub mod clock;
pub mod config;
pub mod duration;
pub mod family;
pub mod json;
pub mod lineproto;
pub mod normalize;
pub mod pb;
pub mod point;
pub mod profile;
pub mod promtext;
pub mod rpc;
pub mod sink;
#[cfg(feature = "test-util")]
pub mod testing;

pub use category::Category;
pub use point::{FeedOpts, Point, Value};

/// The Datakit version this build is compatible with (the default of [`version`]).
pub const DATAKIT_VERSION: &str = "1.84.1";

/// Marks the version stamp inside the binary: `scripts/package.sh --version X.Y.Z` rewrites
/// the bytes after it in a copy of the binary (same length, NUL-padded), so a release of the
/// same code under another version needs no rebuild.
pub const VERSION_STAMP_MARK: &[u8] = b"DK-VERSION-STAMP:";
const VERSION_STAMP_LEN: usize = 64;

const fn stamp() -> [u8; VERSION_STAMP_LEN] {
    let mut out = [0u8; VERSION_STAMP_LEN];
    let mut i = 0;
    while i < VERSION_STAMP_MARK.len() {
        out[i] = VERSION_STAMP_MARK[i];
        i += 1;
    }
    let v = DATAKIT_VERSION.as_bytes();
    let mut j = 0;
    while j < v.len() {
        out[i + j] = v[j];
        j += 1;
    }
    out
}

static VERSION_STAMP: [u8; VERSION_STAMP_LEN] = stamp();

/// The version this binary reports (`/v1/ping`, `X-DataKit`, `datakit version`, uploads):
/// [`DATAKIT_VERSION`] unless the binary was stamped with another one.
pub fn version() -> &'static str {
    // Read through black_box: the bytes may have been rewritten in the file after compiling.
    let stamp: &'static [u8; VERSION_STAMP_LEN] = std::hint::black_box(&VERSION_STAMP);
    let rest = &stamp[VERSION_STAMP_MARK.len()..];
    let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
    match std::str::from_utf8(&rest[..end]) {
        Ok(v) if !v.is_empty() => v,
        _ => DATAKIT_VERSION,
    }
}

/// The build identity a worker and its supervisor must share (checked in the RPC hello).
pub fn build_id() -> String {
    format!(
        "{}+{}",
        env!("CARGO_PKG_VERSION"),
        option_env!("DK_GIT_SHA").unwrap_or("dev")
    )
}
