//! The `pyroscope` family: Datakit's `pyroscope` input, Pyroscope's push API (`POST /ingest`)
//! on the API port (9529) and on its own HTTP port (4040).
//!
//! Each upload is validated before it is answered (query, size, Content-Type, multipart
//! `profile` part) and becomes one profiling point (see [`ingest`]) that travels through the
//! durable queue; the Dataway sink uploads it as Datakit's multipart profile (ADR 0009). Pure
//! parts: [`query`], [`ingest`], [`config`] (multipart is `dk_proto::profile`, shared with the
//! Dataway sink); the serving lives in `input`.

pub mod config;
pub mod ingest;
mod input;
pub mod query;

pub use crate::input::{INPUT_NAME, PyroscopeInput};
