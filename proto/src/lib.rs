//! The contract between the agent's processes.
//!
//! Everything a worker and the supervisor exchange is defined here: the [`Point`] model of
//! Datakit, its [`Category`] list with upload paths, the codecs (line protocol, protobuf
//! `com.guance.Point`, JSON), Datakit's normalisation rules, and the tarpc services of
//! [`rpc`]. Nothing in this crate does I/O beyond encoding and decoding bytes.

pub mod category;
pub mod duration;
pub mod json;
pub mod lineproto;
pub mod normalize;
pub mod pb;
pub mod point;
pub mod rpc;
#[cfg(feature = "test-util")]
pub mod testing;

pub use category::Category;
pub use point::{FeedOpts, Point, Value};

/// The Datakit version this build is compatible with, reported by `/v1/ping` and `X-DataKit`.
pub const DATAKIT_VERSION: &str = "1.84.1";

/// The build identity a worker and its supervisor must share (checked in the RPC hello).
pub fn build_id() -> String {
    format!(
        "{}+{}",
        env!("CARGO_PKG_VERSION"),
        option_env!("DK_GIT_SHA").unwrap_or("dev")
    )
}
