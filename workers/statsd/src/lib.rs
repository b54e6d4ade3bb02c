//! The `statsd` family: Datakit's StatsD/DogStatsD input (`[[inputs.statsd]]`).
//!
//! Each instance receives datagrams on UDP (`service_address`) and a Unix datagram socket
//! (`service_unix_address`), parses StatsD and DogStatsD lines ([`parser`]), aggregates them
//! per series ([`aggregate`]) and emits metric points (and keyevent points for DogStatsD
//! events) every `interval`. The receive path ([`input`]) batches with `recvmmsg` on
//! dedicated threads and counts packets, bytes, parse errors, its own drops and the kernel's.

pub mod aggregate;
pub mod config;
pub mod input;
pub mod parser;
pub mod procnet;
pub mod recv;

use dk_proto::rpc::WorkerConfig;
use dk_worker::{ConfigProblem, Family, Input, ListenSpec};

use crate::input::{INPUT_NAME, StatsdInput, StatsdMetrics};

/// The sample config (`conf.d/statsd/statsd.conf`).
pub const SAMPLE: &str = include_str!("../../../conf.d/statsd/statsd.conf");

/// The `statsd` input family.
#[derive(Clone, Copy, Debug, Default)]
pub struct StatsdFamily;

impl Family for StatsdFamily {
    fn name(&self) -> &'static str {
        "statsd"
    }

    fn inputs(&self) -> &'static [&'static str] {
        &[INPUT_NAME]
    }

    fn samples(&self) -> &'static [(&'static str, &'static str)] {
        &[(INPUT_NAME, SAMPLE)]
    }

    fn validate(&self, input: &str, toml_text: &str) -> Vec<ConfigProblem> {
        if input != INPUT_NAME {
            return vec![unknown_input(input)];
        }
        match config::parse(toml_text) {
            Ok(_) => Vec::new(),
            Err(problems) => problems,
        }
    }

    fn listeners(&self, input: &str, toml_text: &str) -> Vec<ListenSpec> {
        if input != INPUT_NAME {
            return Vec::new();
        }
        config::parse(toml_text)
            .map(|cfg| cfg.listeners())
            .unwrap_or_default()
    }

    fn build(&self, config: &WorkerConfig) -> Result<Vec<Box<dyn Input>>, Vec<ConfigProblem>> {
        let metrics = StatsdMetrics::default();
        let mut inputs: Vec<Box<dyn Input>> = Vec::new();
        let mut problems = Vec::new();
        for spec in &config.inputs {
            if spec.name != INPUT_NAME {
                problems.push(unknown_input(&spec.name));
                continue;
            }
            match config::parse(&spec.toml) {
                Ok(cfg) => inputs.push(Box::new(StatsdInput::new(
                    cfg,
                    metrics.clone(),
                    inputs.is_empty(),
                ))),
                Err(found) => {
                    problems.extend(found.into_iter().map(|p| {
                        ConfigProblem::new(p.key, format!("{}: {}", spec.source, p.message))
                    }))
                }
            }
        }
        if problems.is_empty() {
            Ok(inputs)
        } else {
            Err(problems)
        }
    }
}

fn unknown_input(input: &str) -> ConfigProblem {
    ConfigProblem::new(
        "",
        format!(
            "input {input:?} does not belong to the statsd family; only [[inputs.statsd]] does"
        ),
    )
}

#[cfg(test)]
mod tests {
    use dk_proto::rpc::{InputSpec, ListenerKind};

    use super::*;

    /// The `[[inputs.statsd]]` tables of a conf file, re-serialised as the supervisor does.
    fn instances(conf: &str) -> Vec<String> {
        let doc: toml::Table = toml::from_str(conf).expect("sample parses");
        let Some(toml::Value::Table(inputs)) = doc.get("inputs") else {
            panic!("no [inputs]");
        };
        let Some(toml::Value::Array(list)) = inputs.get("statsd") else {
            panic!("no [[inputs.statsd]]");
        };
        list.iter()
            .map(|v| toml::to_string(v).expect("re-serialise"))
            .collect()
    }

    fn spec(toml: &str) -> InputSpec {
        InputSpec {
            name: "statsd".to_string(),
            source: "conf.d/statsd/statsd.conf".to_string(),
            toml: toml.to_string(),
        }
    }

    #[test]
    fn family_names_its_input_and_sample() {
        let f = StatsdFamily;
        assert_eq!(f.name(), "statsd");
        assert_eq!(f.inputs(), &["statsd"]);
        assert_eq!(f.samples()[0].0, "statsd");
        assert!(f.samples()[0].1.contains("[[inputs.statsd]]"));
    }

    #[test]
    fn sample_config_validates_and_listens_on_datakit_defaults() {
        let tables = instances(SAMPLE);
        assert_eq!(tables.len(), 1);
        assert_eq!(StatsdFamily.validate("statsd", &tables[0]), Vec::new());
        assert_eq!(
            StatsdFamily.listeners("statsd", &tables[0]),
            vec![
                ListenSpec::new(":8125", ListenerKind::Udp),
                ListenSpec::new("/var/run/datakit/statsd.sock", ListenerKind::UnixDatagram)
                    .optional(),
            ]
        );
        let cfg = config::parse(&tables[0]).expect("valid");
        assert!(cfg.datadog_extensions && cfg.aggregate.distributions);
        assert_eq!(cfg.aggregate.percentiles.len(), 6);
    }

    #[test]
    fn validate_refuses_inputs_of_other_families() {
        let problems = StatsdFamily.validate("cpu", "");
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.contains("\"cpu\""));
        assert!(StatsdFamily.listeners("cpu", "").is_empty());
    }

    #[test]
    fn build_makes_one_input_per_instance_and_names_the_file_in_problems() {
        let config = WorkerConfig {
            family: "statsd".to_string(),
            inputs: vec![
                spec("service_address = \":1\"\nservice_unix_address = \"\""),
                spec("service_address = \":2\"\nservice_unix_address = \"\""),
            ],
            ..WorkerConfig::default()
        };
        let inputs = StatsdFamily
            .build(&config)
            .map_err(|p| format!("{p:?}"))
            .expect("builds");
        assert_eq!(inputs.len(), 2);
        let bad = WorkerConfig {
            inputs: vec![spec("protocol = \"tcp\"")],
            ..WorkerConfig::default()
        };
        let Err(problems) = StatsdFamily.build(&bad) else {
            panic!("tcp must not build");
        };
        assert!(
            problems[0]
                .message
                .starts_with("conf.d/statsd/statsd.conf: ")
        );
    }
}
