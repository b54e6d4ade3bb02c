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
        if input != INPUT_NAME {
            return vec![unknown_input(input)];
        }
        match config::parse(toml_text) {
            Ok(_) => Vec::new(),
            Err(problems) => problems,
        }
    }

    fn build(&self, config: &WorkerConfig) -> Result<Vec<Box<dyn Input>>, Vec<ConfigProblem>> {
        let mut inputs: Vec<Box<dyn Input>> = Vec::new();
        let mut problems = Vec::new();
        for spec in &config.inputs {
            if spec.name != INPUT_NAME {
                problems.push(unknown_input(&spec.name));
                continue;
            }
            match config::parse(&spec.toml) {
                Ok(cfg) => inputs.push(Box::new(SocketInput::from_config(cfg, &spec.source))),
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
            "input {input:?} does not belong to the socket family; only [[inputs.socket]] does"
        ),
    )
}

#[cfg(test)]
mod tests {
    use dk_proto::rpc::InputSpec;

    use super::*;

    /// The `[[inputs.socket]]` tables of a conf file, re-serialised as the supervisor does.
    fn instances(conf: &str) -> Vec<String> {
        let doc: toml::Table = toml::from_str(conf).expect("sample parses");
        let Some(toml::Value::Table(inputs)) = doc.get("inputs") else {
            panic!("no [inputs]");
        };
        let Some(toml::Value::Array(list)) = inputs.get("socket") else {
            panic!("no [[inputs.socket]]");
        };
        list.iter()
            .map(|v| toml::to_string(v).expect("re-serialise"))
            .collect()
    }

    fn spec(toml: &str) -> InputSpec {
        InputSpec {
            name: "socket".to_string(),
            source: "conf.d/network/socket.conf".to_string(),
            toml: toml.to_string(),
        }
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
        let tables = instances(SAMPLE);
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
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, vec!["dest_url[1]", "dest_url[2]", "udp_timeout"]);
    }

    #[test]
    fn validate_refuses_inputs_of_other_families() {
        let problems = SocketFamily.validate("cpu", "");
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.contains("\"cpu\""));
    }

    #[test]
    fn build_makes_one_input_per_instance() {
        let config = WorkerConfig {
            family: "socket".to_string(),
            inputs: vec![
                spec("dest_url = [\"tcp://127.0.0.1:1\"]"),
                spec("dest_url = [\"udp://127.0.0.1:2\"]"),
            ],
            ..WorkerConfig::default()
        };
        let inputs = SocketFamily
            .build(&config)
            .map_err(|p| format!("{p:?}"))
            .expect("builds");
        assert_eq!(inputs.len(), 2);
        assert!(inputs.iter().all(|i| i.name() == "socket"));
    }

    #[test]
    fn build_names_the_file_in_every_problem() {
        let config = WorkerConfig {
            inputs: vec![spec("dest_url = [\"tcp://h\"]\nelection = 1")],
            ..WorkerConfig::default()
        };
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
