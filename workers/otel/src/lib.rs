//! The `otel` family: Datakit's OpenTelemetry receiver (`[[inputs.opentelemetry]]`).
//!
//! OTLP over gRPC (`[grpc] addr`, default 127.0.0.1:4317) and over HTTP on the API port
//! (`[http] trace_api`, `metric_api`, `logs_api`; protobuf or JSON, gzip). Spans become
//! tracing points of measurement `opentelemetry`, metrics `otel_service` metric points, log
//! records logging points. Pure parts: [`attrs`], [`trace`], [`metric`], [`logs`] (the
//! mappings), [`body`] (HTTP bodies) and [`config`].

pub mod attrs;
pub mod body;
pub mod config;
pub mod logs;
pub mod metric;
pub mod options;
pub mod trace;
