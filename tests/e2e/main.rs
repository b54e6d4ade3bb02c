//! End-to-end tests: the real `datakit` binary, started as a process with its own work dir,
//! driven over its real ports and sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

mod api;
mod api_abuse;
mod beats;
mod cat;
mod chaos;
mod cloud;
mod config;
mod conn_cap;
mod container;
mod dca;
mod disk;
mod dk;
mod election;
mod graphite;
mod inputs;
mod lifecycle;
mod logfwd;
mod logging;
mod migrate;
mod monitor;
mod netflow;
mod operator;
mod otel;
mod packaging;
mod pyroscope;
mod sinks;
mod statsd;
mod tools;
mod upgrade;
mod worker_abuse;
