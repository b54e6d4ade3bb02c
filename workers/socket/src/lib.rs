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
