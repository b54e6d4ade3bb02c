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

use dk_worker::http::RoutePath;
use dk_worker::{ConfigProblem, Input, Kit, ListenSpec, SingleInput};

/// The `pyroscope` input family.
#[derive(Clone, Copy, Debug, Default)]
pub struct PyroscopeFamily;

impl SingleInput for PyroscopeFamily {
    const FAMILY: &'static str = "pyroscope";
    const INPUT: &'static str = INPUT_NAME;
    /// The sample config (`conf.d/pyroscope/pyroscope.conf`).
    const SAMPLE: &'static str = include_str!("../../../conf.d/pyroscope/pyroscope.conf");
    type Config = config::PyroscopeConfig;
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

    fn routes_of(cfg: &Self::Config) -> Vec<RoutePath> {
        cfg.endpoints
            .iter()
            .map(|p| RoutePath {
                method: dk_worker::http::Method::Post,
                path: p.clone(),
            })
            .collect()
    }

    fn input(cfg: Self::Config, _source: &str, kit: &Kit<()>) -> Box<dyn Input> {
        Box::new(PyroscopeInput::new(cfg, kit.telemetry.clone()))
    }
}
