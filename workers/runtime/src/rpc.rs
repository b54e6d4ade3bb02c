//! Framing shared by both ends of the worker ⇄ supervisor sockets.

use dk_proto::rpc::MAX_FRAME_BYTES;
use serde::{Deserialize, Serialize};
use tarpc::serde_transport::Transport;
use tarpc::tokio_serde::formats::Bincode;
use tarpc::tokio_util::codec::length_delimited::LengthDelimitedCodec;
use tokio::net::UnixStream;

/// A bincode-over-length-delimited tarpc transport on a Unix stream.
pub type UnixTransport<In, Out> = Transport<UnixStream, In, Out, Bincode<In, Out>>;

/// Wraps a connected Unix stream into a tarpc transport with the project's frame limit.
pub fn transport<In, Out>(stream: UnixStream) -> UnixTransport<In, Out>
where
    In: for<'de> Deserialize<'de>,
    Out: Serialize,
{
    let framed = LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME_BYTES)
        .new_framed(stream);
    tarpc::serde_transport::new(framed, Bincode::default())
}

/// A tarpc context whose deadline is `timeout` from now.
pub fn context_with_timeout(timeout: std::time::Duration) -> tarpc::context::Context {
    let mut ctx = tarpc::context::current();
    ctx.deadline = std::time::Instant::now() + timeout;
    ctx
}
