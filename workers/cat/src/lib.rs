//! The `cat` family: Datakit's `cat` input, a server for Dianping CAT clients speaking NT1 on
//! TCP 2280, and the `GET /cat/s/router` route on the API port that tells clients where to
//! send (see [`config::Kvs`]).
//!
//! Pure parts: [`nt1`] (framing and decoding), [`status`] (the heartbeat XML), [`mapping`]
//! (a message tree to one span or heartbeat metrics), [`config`]; the socket lives in
//! `input`.

pub mod config;
mod input;
pub mod mapping;
pub mod nt1;
pub mod status;

use dk_worker::http::{HttpAnswer, HttpRequest, Method, RoutePath};
use dk_worker::{ConfigProblem, Input, Kit, ListenSpec, SingleInput, Telemetry};

pub use crate::input::{CatInput, INPUT_NAME, local_utc_offset};

/// The path CAT clients fetch their settings from.
pub const ROUTER_PATH: &str = "/cat/s/router";

/// The answer of `GET /cat/s/router`: the instance's client settings as `{"kvs":{…}}`.
pub fn router_answer(kvs: &config::Kvs, _request: HttpRequest) -> HttpAnswer {
    HttpAnswer {
        status: 200,
        content_type: "application/json",
        body: kvs.router_body(),
        points: Vec::new(),
    }
}

/// The `cat` input family.
#[derive(Clone, Copy, Debug, Default)]
pub struct CatFamily;

impl SingleInput for CatFamily {
    const FAMILY: &'static str = "cat";
    const INPUT: &'static str = INPUT_NAME;
    /// The sample config (`conf.d/cat/cat.conf`).
    const SAMPLE: &'static str = include_str!("../../../conf.d/cat/cat.conf");
    type Config = config::CatConfig;
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

    fn routes_of(_cfg: &Self::Config) -> Vec<RoutePath> {
        vec![RoutePath::new(Method::Get, ROUTER_PATH)]
    }

    fn input(cfg: Self::Config, _source: &str, kit: &Kit<()>) -> Box<dyn Input> {
        let telemetry: Telemetry = kit.telemetry.clone();
        Box::new(CatInput::new(cfg, telemetry))
    }
}

#[cfg(test)]
mod tests {
    use dk_proto::rpc::ListenerKind;
    use dk_worker::Family;
    use dk_worker::testing::{instances, spec, worker_config};

    use super::*;

    #[test]
    fn the_sample_validates_and_listens_on_tcp_2280() {
        let tables = instances(CatFamily::SAMPLE, INPUT_NAME);
        assert_eq!(tables.len(), 1);
        assert_eq!(CatFamily.validate(INPUT_NAME, &tables[0]), Vec::new());
        assert_eq!(
            CatFamily.listeners(INPUT_NAME, &tables[0]),
            vec![ListenSpec::new("tcp://0.0.0.0:2280", ListenerKind::Tcp)]
        );
        assert_eq!(CatFamily.name(), "cat");
        assert_eq!(CatFamily.inputs(), &["cat"]);
        assert_eq!(
            CatFamily.routes(INPUT_NAME, &tables[0]),
            vec![RoutePath::new(Method::Get, "/cat/s/router")]
        );
    }

    #[test]
    fn build_makes_one_input_per_instance_and_names_bad_files() {
        let s = |toml: &str| spec(INPUT_NAME, "conf.d/cat/cat.conf", toml);
        let ok = worker_config("cat", [s("tcp_port = \"2280\""), s("tcp_port = \"2281\"")]);
        assert_eq!(CatFamily.build(&ok).map(|v| v.len()).ok(), Some(2));
        let bad = worker_config("cat", [s("tcp_port = \"none\"")]);
        let problems = CatFamily.build(&bad).err().unwrap_or_default();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.starts_with("conf.d/cat/"));
    }

    #[test]
    fn the_router_route_answers_the_instances_kvs_as_json() {
        let cfg = config::parse("sample = \"0.1\"").unwrap_or_else(|p| panic!("{p:?}"));
        let input = CatInput::new(cfg, Telemetry::default());
        let routes = input.routes();
        assert_eq!(routes.len(), 1);
        assert_eq!(
            (routes[0].method, routes[0].path.as_str()),
            (Method::Get, ROUTER_PATH)
        );
        let a = routes[0].handler.handle(HttpRequest::default());
        assert_eq!((a.status, a.content_type), (200, "application/json"));
        let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap_or_default();
        assert_eq!(v["kvs"]["sample"], "0.1");
        assert_eq!(v["kvs"]["matchTransactionTypes"], "SQL");
        assert!(a.points.is_empty());
    }
}
