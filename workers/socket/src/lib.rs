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

use dk_worker::{ConfigProblem, Input, Kit, SingleInput};

use crate::input::{INPUT_NAME, SocketInput};

/// The `socket` input family.
#[derive(Clone, Copy, Debug, Default)]
pub struct SocketFamily;

impl SingleInput for SocketFamily {
    const FAMILY: &'static str = "socket";
    const INPUT: &'static str = INPUT_NAME;
    /// The sample config (`conf.d/network/socket.conf`).
    const SAMPLE: &'static str = include_str!("../../../conf.d/network/socket.conf");
    type Config = config::SocketConfig;
    type Shared = ();

    fn parse(toml_text: &str) -> Result<config::SocketConfig, Vec<ConfigProblem>> {
        config::parse(toml_text)
    }

    fn problems(toml_text: &str) -> Vec<ConfigProblem> {
        config::decode(toml_text).into_problems()
    }

    fn input(cfg: config::SocketConfig, source: &str, kit: &Kit<()>) -> Box<dyn Input> {
        kit.telemetry
            .registering(Box::new(SocketInput::from_config(cfg, source)))
    }
}

#[cfg(test)]
mod tests {
    use dk_proto::rpc::InputSpec;
    use dk_worker::Family;
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
        let tables = instances(SocketFamily::SAMPLE, INPUT_NAME);
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
        // `interval = 3` is a warning (a bare number is seconds for this key), the rest errors.
        assert_eq!(
            keys(&problems),
            vec!["interval", "udp_timeout", "dest_url[1]", "dest_url[2]"]
        );
        assert!(problems[0].is_warning(), "{problems:?}");
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
