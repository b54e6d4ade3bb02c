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

use dk_worker::http::{Method, RoutePath};
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

    /// `[http] trace_api`, `metric_api` and `logs_api`, POST only.
    fn routes_of(cfg: &Self::Config) -> Vec<RoutePath> {
        [&cfg.trace_api, &cfg.metric_api, &cfg.logs_api]
            .into_iter()
            .map(|path| RoutePath::new(Method::Post, path.clone()))
            .collect()
    }

    fn input(cfg: Self::Config, _source: &str, kit: &Kit<()>) -> Box<dyn Input> {
        let receiver = Receiver::new(cfg, &kit.telemetry);
        Box::new(OtelInput::new(receiver, kit.telemetry.clone()))
    }
}

#[cfg(test)]
mod tests {
    use dk_proto::Category;
    use dk_proto::rpc::ListenerKind;
    use dk_worker::Family;
    use dk_worker::http::{HttpRequest, RouteTable};
    use dk_worker::testing::{instances, keys, spec, worker_config};

    use super::*;

    const TRACES: &[u8] = include_bytes!("../fixtures/python-sdk-traces.pb");

    #[test]
    fn the_sample_validates_listens_on_4317_and_declares_the_three_routes() {
        let tables = instances(OtelFamily::SAMPLE, INPUT_NAME);
        assert_eq!(tables.len(), 1);
        assert_eq!(OtelFamily.validate(INPUT_NAME, &tables[0]), Vec::new());
        assert_eq!(
            OtelFamily.listeners(INPUT_NAME, &tables[0]),
            vec![ListenSpec::new("tcp://127.0.0.1:4317", ListenerKind::Tcp)]
        );
        let paths: Vec<String> = OtelFamily
            .routes(INPUT_NAME, &tables[0])
            .into_iter()
            .map(|r| format!("{:?} {}", r.method, r.path))
            .collect();
        assert_eq!(
            paths,
            [
                "Post /otel/v1/traces",
                "Post /otel/v1/metrics",
                "Post /otel/v1/logs"
            ]
        );
        let uncommented = dk_worker::testing::uncommented(OtelFamily::SAMPLE);
        let all = instances(&uncommented, INPUT_NAME);
        let problems = OtelFamily.validate(INPUT_NAME, &all[0]);
        assert!(problems.iter().all(|p| p.is_warning()), "{problems:?}");
    }

    #[test]
    fn bad_keys_are_all_reported_and_claim_no_port() {
        let text = "customer_tags = [\"reg:(\"]\n[grpc]\naddr = \"4317\"\nmax_payload = 0\n[http]\ntrace_api = \"otel\"\n[sampler]\nsampling_rate = 2.0\n";
        let problems = OtelFamily.validate(INPUT_NAME, text);
        assert_eq!(
            keys(&problems),
            vec![
                "customer_tags[0]",
                "sampler.sampling_rate",
                "grpc.addr",
                "grpc.max_payload",
                "http.trace_api"
            ]
        );
        assert!(OtelFamily.listeners(INPUT_NAME, text).is_empty());
        let custom = "[http]\ntrace_api = \"/t\"\n[grpc]\naddr = \"0.0.0.0:14317\"\n";
        assert_eq!(
            OtelFamily.listeners(INPUT_NAME, custom),
            vec![ListenSpec::new("tcp://0.0.0.0:14317", ListenerKind::Tcp)]
        );
        assert_eq!(OtelFamily.routes(INPUT_NAME, custom)[0].path, "/t");
        // Datakit's misspelled key and the deprecated one still work.
        let cfg = config::parse("spilt_service_name = false\ncostomer_tags_all = true\n").unwrap();
        assert!(!cfg.options.split_service_name && cfg.options.extract.all);
    }

    #[test]
    fn the_running_inputs_routes_answer_otlp_http_with_points() {
        let inputs = OtelFamily
            .build(&worker_config("otel", [spec(INPUT_NAME, "o.conf", "")]))
            .unwrap_or_else(|p| panic!("{p:?}"));
        let mut table = RouteTable::default();
        for r in inputs[0].routes() {
            table.add(r).unwrap();
        }
        let req = |ct: &str, body: &[u8]| HttpRequest {
            headers: vec![("content-type".into(), ct.into())],
            body: body.to_vec(),
            ..HttpRequest::default()
        };
        let ok = table.handle(
            dk_worker::http::Method::Post,
            "/otel/v1/traces",
            req("application/x-protobuf", TRACES),
        );
        assert_eq!(
            (ok.status, ok.content_type),
            (200, "application/x-protobuf")
        );
        assert_eq!(ok.points[0].0, Category::Tracing);
        assert_eq!(ok.points[0].1.len(), 3);
        let json = table.handle(
            dk_worker::http::Method::Post,
            "/otel/v1/logs",
            req("application/json", b"{}"),
        );
        assert_eq!((json.status, json.content_type), (200, "application/json"));
        assert!(json.body.starts_with(b"{"));
        let bad = table.handle(
            dk_worker::http::Method::Post,
            "/otel/v1/metrics",
            req("text/plain", b"x"),
        );
        assert_eq!(bad.status, 400);
        assert!(bad.points.is_empty());
    }
}
