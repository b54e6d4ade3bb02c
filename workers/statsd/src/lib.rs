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
        dk_worker::validate_instance(self, input, toml_text, config::decode)
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
        let mut first = true;
        dk_worker::build_instances(self, config, |spec| {
            let cfg = config::parse(&spec.toml)?;
            let input = StatsdInput::new(cfg, metrics.clone(), first);
            first = false;
            Ok(input)
        })
    }
}

#[cfg(test)]
mod tests {
    use dk_proto::rpc::{InputSpec, ListenerKind};
    use dk_worker::testing::{instances, worker_config};

    use super::*;

    fn spec(toml: &str) -> InputSpec {
        dk_worker::testing::spec(INPUT_NAME, "conf.d/statsd/statsd.conf", toml)
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
        let tables = instances(SAMPLE, INPUT_NAME);
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
        let config = worker_config(
            "statsd",
            [
                spec("service_address = \":1\"\nservice_unix_address = \"\""),
                spec("service_address = \":2\"\nservice_unix_address = \"\""),
            ],
        );
        let inputs = StatsdFamily
            .build(&config)
            .map_err(|p| format!("{p:?}"))
            .expect("builds");
        assert_eq!(inputs.len(), 2);
        let bad = worker_config("statsd", [spec("protocol = \"tcp\"")]);
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
