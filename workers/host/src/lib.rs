//! The `host` input family: Datakit's `cpu`, `mem`, `disk`, `diskio`, `net`, `system`,
//! `swap`, `hostobject` and `host_processes` inputs, reading Linux `/proc` and `/sys` directly.
//!
//! [`HostFamily`] is the only thing the worker runtime needs: it validates instances with
//! Datakit's keys and builds one [`dk_worker::Input`] per instance. The parsers in
//! [`parse`] are pure and tested on captured files; [`sys`] is the thin I/O shell.

pub mod config;
pub mod http;
pub mod inputs;
pub mod parse;
mod runner;
pub mod sys;

#[cfg(test)]
mod tests;

use dk_proto::rpc::WorkerConfig;
use dk_worker::{ConfigProblem, Family, Input};

use crate::config::InputConfig;
use crate::runner::HostInput;
use crate::sys::HostPaths;

/// The inputs of the host family.
pub const INPUTS: [&str; 10] = [
    "cpu",
    "mem",
    "disk",
    "diskio",
    "net",
    "system",
    "swap",
    "hostobject",
    "host_processes",
    "dk",
];

const SAMPLES: [(&str, &str); 10] = [
    ("cpu", include_str!("../../../conf.d/host/cpu.conf")),
    ("mem", include_str!("../../../conf.d/host/mem.conf")),
    ("disk", include_str!("../../../conf.d/host/disk.conf")),
    ("diskio", include_str!("../../../conf.d/host/diskio.conf")),
    ("net", include_str!("../../../conf.d/host/net.conf")),
    ("system", include_str!("../../../conf.d/host/system.conf")),
    ("swap", include_str!("../../../conf.d/host/swap.conf")),
    (
        "hostobject",
        include_str!("../../../conf.d/host/hostobject.conf"),
    ),
    (
        "host_processes",
        include_str!("../../../conf.d/host/host_processes.conf"),
    ),
    ("dk", include_str!("../../../conf.d/host/dk.conf")),
];

/// The `host` family.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostFamily;

impl HostFamily {
    /// Builds the input of one decoded instance, reading from `paths`.
    pub fn build_input(config: InputConfig, paths: HostPaths, hostname: &str) -> Box<dyn Input> {
        use inputs::*;
        match config {
            InputConfig::Cpu(c) => {
                let tags = c.tags.clone();
                Box::new(HostInput::new(cpu::Cpu::new(c, paths), tags))
            }
            InputConfig::Mem(c) => {
                let tags = c.tags.clone();
                Box::new(HostInput::new(mem::Mem::new(c, paths), tags))
            }
            InputConfig::Disk(c) => {
                let tags = c.tags.clone();
                Box::new(HostInput::new(disk::Disk::new(c, paths), tags))
            }
            InputConfig::Diskio(c) => {
                let tags = c.tags.clone();
                Box::new(HostInput::new(diskio::Diskio::new(c, paths), tags))
            }
            InputConfig::Net(c) => {
                let tags = c.tags.clone();
                Box::new(HostInput::new(net::Net::new(c, paths), tags))
            }
            InputConfig::System(c) => {
                let tags = c.tags.clone();
                Box::new(HostInput::new(system::System::new(c, paths), tags))
            }
            InputConfig::Swap(c) => {
                let tags = c.tags.clone();
                Box::new(HostInput::new(swap::Swap::new(c, paths), tags))
            }
            InputConfig::HostObject(c) => {
                let tags = c.tags.clone();
                let o = hostobject::HostObject::new(c, paths, hostname.to_string());
                Box::new(HostInput::new(o, tags))
            }
            InputConfig::HostProcesses(c) => {
                Box::new(process::ProcessesInput::new(c, paths, hostname))
            }
            InputConfig::Dk(c) => Box::new(dk::Dk::new(c, dk::Dk::url_from_env())),
        }
    }
}

impl Family for HostFamily {
    fn name(&self) -> &'static str {
        "host"
    }

    fn inputs(&self) -> &'static [&'static str] {
        &INPUTS
    }

    fn samples(&self) -> &'static [(&'static str, &'static str)] {
        &SAMPLES
    }

    fn validate(&self, input: &str, toml_text: &str) -> Vec<ConfigProblem> {
        config::check(input, toml_text).into_problems()
    }

    /// One input per instance. Like Datakit, which treats every host input as a
    /// singleton, only the first instance of each input is kept (the others are logged).
    fn build(&self, config: &WorkerConfig) -> Result<Vec<Box<dyn Input>>, Vec<ConfigProblem>> {
        let paths = HostPaths::from_env();
        let telemetry = dk_worker::Telemetry::new();
        let mut problems = Vec::new();
        let mut built: Vec<Box<dyn Input>> = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        for spec in &config.inputs {
            match config::decode(&spec.name, &spec.toml) {
                Ok(c) => {
                    if seen.contains(&spec.name.as_str()) {
                        tracing::warn!(
                            input = %spec.name,
                            source = %spec.source,
                            "{} is a singleton input; only its first instance runs",
                            spec.name
                        );
                        continue;
                    }
                    seen.push(&spec.name);
                    telemetry.instance(&spec.name);
                    let input = Self::build_input(c, paths.clone(), &config.hostname);
                    built.push(telemetry.registering(input));
                }
                Err(ps) => problems.extend(ps.into_iter().map(|p| {
                    ConfigProblem::new(
                        p.key,
                        format!("{} (inputs.{} in {})", p.message, spec.name, spec.source),
                    )
                })),
            }
        }
        if problems.is_empty() {
            Ok(built)
        } else {
            Err(problems)
        }
    }
}
