//! The worker runtime: what every input family builds on.
//!
//! A worker process runs one [`Family`]. The family validates its inputs' config (the
//! supervisor calls the same code before anything starts), builds [`Input`]s, and each input
//! runs until shutdown, handing points to its [`Emitter`]. The runtime batches those points and
//! pushes them to the supervisor over tarpc (see `dk_proto::rpc`), answers health checks, and
//! applies pause/resume and shutdown.
//!
//! The input kit: [`SingleInput`] (a one-input family as its config, listeners and input),
//! [`serve`] (TCP and datagram serving with caps, timeouts, drain and kernel-drop counting),
//! [`telemetry`] (the self-metrics every family exposes), [`http`] (routes on the API port)
//! and one clock ([`now_ns`]).

pub mod batch;
pub mod config;
pub mod emitter;
pub mod family;
pub mod fdpass;
pub mod http;
pub mod link;
pub mod listen;
pub mod misbehave;
pub mod rpc;
pub mod sender;
pub mod serve;
pub mod single;
pub mod telemetry;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod worker;

pub use config::{ConfigProblem, build_instances, unknown_input, validate_instance};
pub use dk_proto::clock::now_ns;
pub use emitter::{Emitter, Feed, FeedOpts};
pub use family::{Family, Input, InputContext, ListenSpec};
pub use single::{Kit, SingleInput};
pub use telemetry::Telemetry;
