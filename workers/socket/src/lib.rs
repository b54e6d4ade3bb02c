//! The `socket` family: Datakit's TCP/UDP dial-test input (`[[inputs.socket]]`).
//!
//! Every `interval` (clamped to 10 s–60 s, ticks aligned to the interval) each instance probes
//! its `dest_url`s concurrently and feeds `tcp` and `udp` metric points, election-aware unless
//! `election = false`. TCP probes time the DNS lookup and the connect separately; UDP probes
//! are native (no `nc`): the sample config documents their exact semantics.

mod config;
mod input;
mod points;
mod probe;

use dk_proto::rpc::WorkerConfig;
use dk_worker::{ConfigProblem, Family, Input};

use crate::input::{INPUT_NAME, SocketInput};

/// The sample config (`conf.d/network/socket.conf`).
const SAMPLE: &str = include_str!("../../../conf.d/network/socket.conf");

/// The `socket` input family.
#[derive(Clone, Copy, Debug, Default)]
pub struct SocketFamily;

impl Family for SocketFamily {
    fn name(&self) -> &'static str {
        "socket"
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

    fn build(&self, config: &WorkerConfig) -> Result<Vec<Box<dyn Input>>, Vec<ConfigProblem>> {
        dk_worker::build_instances(self, config, |spec| {
            let cfg = config::parse(&spec.toml)?;
            Ok(SocketInput::from_config(cfg, &spec.source))
        })
    }
}

#[cfg(test)]
mod tests {
    use dk_proto::rpc::InputSpec;
    use dk_worker::testing::{instances, keys, worker_config};

    use super::*;

    fn spec(toml: &str) -> InputSpec {
        dk_worker::testing::spec(INPUT_NAME, "conf.d/network/socket.conf", toml)
    }

    #[test]
    fn family_names_its_input_and_sample() {
        let f = SocketFamily;
        assert_eq!(f.name(), "socket");
        assert_eq!(f.inputs(), &["socket"]);
        assert_eq!(f.samples().len(), 1);
        assert_eq!(f.samples()[0].0, "socket");
        assert!(f.samples()[0].1.contains("[[inputs.socket]]"));
    }

    #[test]
    fn sample_config_validates_without_problems() {
        let tables = instances(SAMPLE, INPUT_NAME);
        assert_eq!(tables.len(), 1);
        assert_eq!(SocketFamily.validate("socket", &tables[0]), Vec::new());
        let cfg = config::parse(&tables[0]).expect("sample is valid");
        assert_eq!(cfg.targets.len(), 2);
        assert_eq!(cfg.interval, config::DEFAULT_INTERVAL);
        assert!(cfg.election);
    }

    #[test]
    fn validate_lists_every_problem() {
        let problems = SocketFamily.validate(
            "socket",
            "dest_url = [\"tcp://a:1\", \"tcp://a\", \"gopher://a:70\"]\ninterval = 3\nudp_timeout = \"x\"",
        );
        let (warnings, errors): (Vec<_>, Vec<_>) =
            problems.into_iter().partition(|p| p.is_warning());
        let mut errors = keys(&errors);
        errors.sort_unstable();
        assert_eq!(errors, vec!["dest_url[1]", "dest_url[2]", "udp_timeout"]);
        assert_eq!(keys(&warnings), vec!["interval"]);
        assert!(
            warnings[0]
                .message
                .ends_with("raises it to its minimum 10s"),
            "{warnings:?}"
        );
    }

    #[test]
    fn validate_refuses_inputs_of_other_families() {
        let problems = SocketFamily.validate("cpu", "");
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.contains("\"cpu\""));
    }

    #[test]
    fn build_makes_one_input_per_instance() {
        let config = worker_config(
            "socket",
            [
                spec("dest_url = [\"tcp://127.0.0.1:1\"]"),
                spec("dest_url = [\"udp://127.0.0.1:2\"]"),
            ],
        );
        let inputs = SocketFamily
            .build(&config)
            .map_err(|p| format!("{p:?}"))
            .expect("builds");
        assert_eq!(inputs.len(), 2);
        assert!(inputs.iter().all(|i| i.name() == "socket"));
    }

    #[test]
    fn build_names_the_file_in_every_problem() {
        let config = worker_config("socket", [spec("dest_url = [\"tcp://h\"]\nelection = 1")]);
        let Err(problems) = SocketFamily.build(&config) else {
            panic!("bad config must not build");
        };
        assert_eq!(problems.len(), 2);
        assert!(
            problems
                .iter()
                .all(|p| p.message.starts_with("conf.d/network/socket.conf: "))
        );
    }
}
