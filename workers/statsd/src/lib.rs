//! The `statsd` family (being written: it serves no input yet).

pub mod aggregate;
pub mod parser;

use dk_proto::rpc::WorkerConfig;
use dk_worker::{ConfigProblem, Family, Input};

/// The `statsd` input family.
#[derive(Clone, Copy, Debug, Default)]
pub struct StatsdFamily;

impl Family for StatsdFamily {
    fn name(&self) -> &'static str {
        "statsd"
    }

    fn inputs(&self) -> &'static [&'static str] {
        &[]
    }

    fn samples(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    fn validate(&self, _input: &str, _toml_text: &str) -> Vec<ConfigProblem> {
        Vec::new()
    }

    fn build(&self, _config: &WorkerConfig) -> Result<Vec<Box<dyn Input>>, Vec<ConfigProblem>> {
        Ok(Vec::new())
    }
}
