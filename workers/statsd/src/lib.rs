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

use dk_worker::{ConfigProblem, Input, Kit, ListenSpec, SingleInput};

use crate::config::StatsdConfig;
use crate::input::{INPUT_NAME, StatsdInput, StatsdMetrics};

/// The sample config (`conf.d/statsd/statsd.conf`).
pub const SAMPLE: &str = include_str!("../../../conf.d/statsd/statsd.conf");

/// The `statsd` input family.
#[derive(Clone, Copy, Debug, Default)]
pub struct StatsdFamily;

impl SingleInput for StatsdFamily {
    const FAMILY: &'static str = "statsd";
    const INPUT: &'static str = INPUT_NAME;
    const SAMPLE: &'static str = SAMPLE;
    type Config = StatsdConfig;
    type Shared = StatsdMetrics;

    fn parse(toml_text: &str) -> Result<StatsdConfig, Vec<ConfigProblem>> {
        config::parse(toml_text)
    }

    fn problems(toml_text: &str) -> Vec<ConfigProblem> {
        config::decode(toml_text).into_problems()
    }

    fn listeners_of(cfg: &StatsdConfig) -> Vec<ListenSpec> {
        cfg.listeners()
    }

    fn input(cfg: StatsdConfig, _source: &str, kit: &Kit<StatsdMetrics>) -> Box<dyn Input> {
        // The instances share the counters; the first one registers them.
        let first = kit.telemetry.instances(INPUT_NAME) == 1;
        let metrics = kit.shared.clone().with_telemetry(kit.telemetry.clone());
        Box::new(StatsdInput::new(cfg, metrics, first))
    }
}

#[cfg(test)]
mod tests {
    use dk_proto::rpc::{InputSpec, ListenerKind};
    use dk_worker::Family;
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
