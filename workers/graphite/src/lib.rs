//! The `graphite` family (being written: it serves no input yet).

pub mod line;
pub mod mapper;
pub mod process;

use dk_proto::rpc::WorkerConfig;
use dk_worker::{ConfigProblem, Family, Input};

/// The `graphite` input family.
#[derive(Clone, Copy, Debug, Default)]
pub struct GraphiteFamily;

impl Family for GraphiteFamily {
    fn name(&self) -> &'static str {
        "graphite"
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
