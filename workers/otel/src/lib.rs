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
pub mod grpc;
mod input;
pub mod logs;
pub mod metric;
pub mod options;
pub mod receiver;
pub mod trace;

use dk_worker::{ConfigProblem, Input, Kit, ListenSpec, SingleInput};

pub use crate::input::OtelInput;
use crate::receiver::Receiver;

/// Datakit's input name.
pub const INPUT_NAME: &str = "opentelemetry";

/// The `otel` input family.
#[derive(Clone, Copy, Debug, Default)]
pub struct OtelFamily;

impl SingleInput for OtelFamily {
    const FAMILY: &'static str = "otel";
    const INPUT: &'static str = INPUT_NAME;
    /// The sample config (`conf.d/opentelemetry/opentelemetry.conf`).
    const SAMPLE: &'static str = include_str!("../../../conf.d/opentelemetry/opentelemetry.conf");
    type Config = config::OtelConfig;
    type Shared = ();

    fn parse(toml_text: &str) -> Result<Self::Config, Vec<ConfigProblem>> {
        config::parse(toml_text)
    }

    fn problems(toml_text: &str) -> Vec<ConfigProblem> {
        config::decode(toml_text).into_problems()
    }

    fn listeners_of_text(toml_text: &str) -> Vec<ListenSpec> {
        config::listeners(toml_text)
    }

    fn input(cfg: Self::Config, _source: &str, kit: &Kit<()>) -> Box<dyn Input> {
        let receiver = Receiver::new(cfg, &kit.telemetry);
        Box::new(OtelInput::new(receiver, kit.telemetry.clone()))
    }
}
