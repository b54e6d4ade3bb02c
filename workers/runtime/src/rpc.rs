//! Framing shared by both ends of the worker ⇄ supervisor sockets (defined by the contract,
//! re-exported here for the worker runtime).

pub use dk_proto::rpc::{UnixTransport, context_with_timeout, transport};
