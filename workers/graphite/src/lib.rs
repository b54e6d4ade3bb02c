//! The `graphite` family: Datakit's Graphite receiver (`[[inputs.graphite]]`).
//!
//! Each instance listens on `address` (default `:9109`) over TCP and UDP for the Graphite
//! plaintext protocol (`path[;tag=value...] value [timestamp]`), maps names with Datakit's
//! statsd_exporter-style `metric_mapper` rules and feeds metric points. Unlike Datakit, the
//! point time is the client's timestamp and `[inputs.graphite.tags]` are applied (the
//! supervisor adds the host tags). Pure parts: [`line`] (framing and parsing), [`mapper`]
//! (rules), [`process`] (points), [`config`]; the sockets live in `input`.

pub mod config;
mod input;
pub mod line;
pub mod mapper;
mod metrics;
pub mod process;

use dk_worker::{ConfigProblem, Input, Kit, ListenSpec, SingleInput};

pub use crate::input::{GraphiteInput, INPUT_NAME};
use crate::metrics::Metrics;
use crate::process::Processor;

/// The `graphite` input family.
#[derive(Clone, Copy, Debug, Default)]
pub struct GraphiteFamily;

impl SingleInput for GraphiteFamily {
    const FAMILY: &'static str = "graphite";
    const INPUT: &'static str = INPUT_NAME;
    /// The sample config (`conf.d/graphite/graphite.conf`).
    const SAMPLE: &'static str = include_str!("../../../conf.d/graphite/graphite.conf");
    type Config = (config::GraphiteConfig, mapper::Mapper);
    type Shared = Metrics;

    fn parse(toml_text: &str) -> Result<Self::Config, Vec<ConfigProblem>> {
        config::parse(toml_text)
    }

    fn problems(toml_text: &str) -> Vec<ConfigProblem> {
        config::decode(toml_text).into_problems()
    }

    /// Only the address matters here: other problems are reported by `validate`.
    fn listeners_of_text(toml_text: &str) -> Vec<ListenSpec> {
        config::listeners(toml_text)
    }

    fn input((cfg, mapper): Self::Config, _source: &str, kit: &Kit<Metrics>) -> Box<dyn Input> {
        let processor = Processor::new(mapper, cfg.strict_match, cfg.tags.clone());
        Box::new(GraphiteInput::new(
            cfg,
            processor,
            kit.shared.clone(),
            kit.telemetry.clone(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use dk_proto::rpc::ListenerKind;
    use dk_worker::Family;
    use dk_worker::testing::{instances, keys, spec, worker_config};

    use super::*;

    #[test]
    fn family_names_its_input_and_sample() {
        let f = GraphiteFamily;
        assert_eq!(f.name(), "graphite");
        assert_eq!(f.inputs(), &["graphite"]);
        assert_eq!(f.samples().len(), 1);
        assert!(f.samples()[0].1.contains("[[inputs.graphite]]"));
    }

    #[test]
    fn sample_config_validates_and_listens_on_9109_tcp_and_udp() {
        let tables = instances(GraphiteFamily::SAMPLE, INPUT_NAME);
        assert_eq!(tables.len(), 1);
        assert_eq!(GraphiteFamily.validate("graphite", &tables[0]), Vec::new());
        let (cfg, mapper) = config::parse(&tables[0]).expect("sample is valid");
        assert_eq!(cfg.address, ":9109");
        assert!(mapper.is_empty(), "the sample's rules are commented out");
        assert_eq!(
            GraphiteFamily.listeners("graphite", &tables[0]),
            vec![
                ListenSpec::new("tcp://:9109", ListenerKind::Tcp),
                ListenSpec::new("udp://:9109", ListenerKind::Udp),
            ]
        );
    }

    #[test]
    fn the_commented_sample_rules_are_valid_once_uncommented() {
        let uncommented: String = GraphiteFamily::SAMPLE
            .lines()
            .map(|l| {
                let t = l.trim_start();
                match t.strip_prefix("# ").or_else(|| t.strip_prefix('#')) {
                    Some(rest) if rest.starts_with('[') || rest.contains(" = ") => rest,
                    _ => l,
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let tables = instances(&uncommented, INPUT_NAME);
        let (cfg, mapper) = config::parse(&tables[0]).unwrap_or_else(|p| panic!("{p:?}"));
        assert_eq!(cfg.rules.len(), 3);
        assert!(cfg.strict_match);
        let m = mapper.map("foo_product.signup.facebook.failure").unwrap();
        assert_eq!(
            (m.measurement, m.name.as_str()),
            ("signup_set", "signup_events_total")
        );
    }

    #[test]
    fn validate_lists_every_problem_and_refuses_other_inputs() {
        let problems = GraphiteFamily.validate(
            "graphite",
            "address = \"9109\"\n[[metric_mapper.mappings]]\nmatch = \"a.*\"\n",
        );
        assert_eq!(
            keys(&problems),
            vec!["address", "metric_mapper.mappings[0].name"]
        );
        assert_eq!(GraphiteFamily.validate("statsd", "").len(), 1);
    }

    #[test]
    fn listeners_default_to_9109_and_skip_bad_addresses() {
        assert_eq!(GraphiteFamily.listeners("graphite", "").len(), 2);
        assert_eq!(
            GraphiteFamily.listeners("graphite", "address = \"[::1]:2003\"")[1],
            ListenSpec::new("udp://[::1]:2003", ListenerKind::Udp)
        );
        assert!(
            GraphiteFamily
                .listeners("graphite", "address = 5")
                .is_empty()
        );
        assert!(
            GraphiteFamily
                .listeners("graphite", "address = \"x\"")
                .is_empty()
        );
        assert!(
            GraphiteFamily
                .listeners("graphite", "not toml [")
                .is_empty()
        );
    }

    #[test]
    fn build_makes_one_input_per_instance() {
        let spec = |toml: &str| spec(INPUT_NAME, "conf.d/graphite/graphite.conf", toml);
        let config = worker_config(
            "graphite",
            [spec("address = \":2003\""), spec("address = \":2004\"")],
        );
        let inputs = GraphiteFamily
            .build(&config)
            .unwrap_or_else(|p| panic!("{p:?}"));
        assert_eq!(inputs.len(), 2);
        assert!(inputs.iter().all(|i| i.name() == "graphite"));
        let bad = worker_config("graphite", [spec("buffer_size = \"x\"")]);
        let problems = GraphiteFamily.build(&bad).err().unwrap();
        assert!(
            problems[0]
                .message
                .starts_with("conf.d/graphite/graphite.conf: ")
        );
    }
}
