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
            .map(|p| RoutePath::new(dk_worker::http::Method::Post, p.clone()))
            .collect()
    }

    fn input(cfg: Self::Config, _source: &str, kit: &Kit<()>) -> Box<dyn Input> {
        Box::new(PyroscopeInput::new(cfg, kit.telemetry.clone()))
    }
}

#[cfg(test)]
mod tests {
    use dk_proto::rpc::ListenerKind;
    use dk_proto::{Category, Value};
    use dk_worker::Family;
    use dk_worker::http::{HttpRequest, Method};
    use dk_worker::testing::{instances, spec, worker_config};

    use super::*;

    #[test]
    fn the_sample_validates_listens_on_4040_and_serves_ingest_on_the_api_port() {
        let tables = instances(PyroscopeFamily::SAMPLE, INPUT_NAME);
        assert_eq!(tables.len(), 1);
        assert_eq!(PyroscopeFamily.validate(INPUT_NAME, &tables[0]), Vec::new());
        assert_eq!(
            PyroscopeFamily.listeners(INPUT_NAME, &tables[0]),
            vec![ListenSpec::new("tcp://0.0.0.0:4040", ListenerKind::Tcp)]
        );
        assert_eq!(
            PyroscopeFamily.routes(INPUT_NAME, &tables[0]),
            vec![RoutePath::new(Method::Post, "/ingest")]
        );
        assert_eq!(PyroscopeFamily.name(), "pyroscope");
    }

    #[test]
    fn the_running_inputs_routes_answer_profiles_and_refuse_bad_uploads_with_400() {
        let cfg = worker_config(
            "pyroscope",
            [spec(
                INPUT_NAME,
                "conf.d/pyroscope/pyroscope.conf",
                "endpoints = [\"/ingest\", \"/p/ingest\"]\nlisten = \"\"\nelection = false\n[tags]\nteam = \"core\"\n",
            )],
        );
        let inputs = PyroscopeFamily
            .build(&cfg)
            .unwrap_or_else(|p| panic!("{p:?}"));
        let routes = inputs[0].routes();
        assert_eq!(
            routes.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
            vec!["/ingest", "/p/ingest"]
        );
        assert!(!routes[0].feed.election);
        let ok = routes[1].handler.handle(HttpRequest {
            query: "name=app&from=1700000000&until=1700000010&spyName=pyspy".into(),
            headers: vec![("content-type".into(), "binary/octet-stream".into())],
            body: b"PPROF".to_vec(),
        });
        assert_eq!(ok.status, 200);
        assert_eq!(ok.points[0].0, Category::Profiling);
        let p = &ok.points[0].1[0];
        assert_eq!(p.get_tag("team"), Some("core"));
        assert_eq!(
            p.get_field("auto.pprof"),
            Some(&Value::D(b"PPROF".to_vec()))
        );
        let bad = routes[0].handler.handle(HttpRequest {
            query: "name=app&from=1&until=2".into(),
            headers: vec![("content-type".into(), "text/plain".into())],
            body: b"x".to_vec(),
        });
        assert_eq!(bad.status, 400);
        assert!(bad.points.is_empty());
        let body = String::from_utf8_lossy(&bad.body);
        assert!(
            body.contains("unsupported Content-Type \"text/plain\""),
            "{body}"
        );
    }
}
