//! The `netflow` family: Datakit's NetFlow/IPFIX collector (`[[inputs.netflow]]`).
//!
//! Each `[[inputs.netflow.listeners]]` is a UDP port receiving NetFlow v5, v9, IPFIX or sFlow
//! v5 from exporters. Flows are decoded ([`decode`], [`sflow`]), aggregated as Datakit does
//! ([`aggregate`]: key, 10 s flush, 300 s re-emit, port rollup to `*`) and fed as `netflow`
//! logging points ([`payload`]). Pure parts: [`decode`], [`sflow`], [`aggregate`],
//! [`payload`], [`config`]; the sockets live in `input`.

pub mod aggregate;
pub mod config;
pub mod decode;
mod input;
pub mod payload;
pub mod sflow;

use dk_worker::{ConfigProblem, Input, Kit, ListenSpec, SingleInput};

pub use crate::input::{INPUT_NAME, NetflowInput};

/// The `netflow` input family.
#[derive(Clone, Copy, Debug, Default)]
pub struct NetflowFamily;

impl SingleInput for NetflowFamily {
    const FAMILY: &'static str = "netflow";
    const INPUT: &'static str = INPUT_NAME;
    /// The sample config (`conf.d/netflow/netflow.conf`).
    const SAMPLE: &'static str = include_str!("../../../conf.d/netflow/netflow.conf");
    type Config = config::NetflowConfig;
    type Shared = ();

    fn parse(toml_text: &str) -> Result<Self::Config, Vec<ConfigProblem>> {
        config::parse(toml_text)
    }

    fn problems(toml_text: &str) -> Vec<ConfigProblem> {
        config::decode(toml_text).into_problems()
    }

    /// The valid listeners, whatever else is wrong.
    fn listeners_of_text(toml_text: &str) -> Vec<ListenSpec> {
        config::listeners(toml_text)
    }

    fn input(cfg: Self::Config, _source: &str, kit: &Kit<()>) -> Box<dyn Input> {
        Box::new(NetflowInput::new(cfg, kit.telemetry.clone()))
    }
}

#[cfg(test)]
mod family_tests;
#[cfg(test)]
mod sflow_tests;
#[cfg(test)]
mod tests;
