//! End-to-end tests: the real `datakit` binary, started as a process with its own work dir,
//! driven over its real ports and sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

mod api;
mod api_abuse;
mod beats;
mod chaos;
mod config;
mod conn_cap;
mod dca;
mod disk;
mod election;
mod graphite;
mod inputs;
mod lifecycle;
mod logging;
mod migrate;
mod netflow;
mod operator;
mod packaging;
mod pyroscope;
mod sinks;
mod statsd;
mod upgrade;
mod worker_abuse;
