//! The `beats` family: Datakit's `beats_output` input, a lumberjack v2 server (what Beats'
//! `output.logstash` speaks) on TCP 5044.
//!
//! Windows of events (JSON frames, plain or zlib-compressed) become logging points (see
//! [`mapping`]); a window is acknowledged to the client only once the supervisor holds its
//! points in the durable queue, so a crash never loses what a client was told is safe. Pure
//! parts: [`frame`] (decoder and ack), [`mapping`] (event to point), [`config`]; the socket
//! lives in `input`. No TLS yet.

pub mod config;
pub mod frame;
mod input;
pub mod mapping;

use dk_worker::{ConfigProblem, Input, Kit, ListenSpec, SingleInput, Telemetry};

pub use crate::input::{BeatsInput, INPUT_NAME};

/// The `beats` input family.
#[derive(Clone, Copy, Debug, Default)]
pub struct BeatsFamily;

impl SingleInput for BeatsFamily {
    const FAMILY: &'static str = "beats";
    const INPUT: &'static str = INPUT_NAME;
    /// The sample config (`conf.d/beats_output/beats_output.conf`).
    const SAMPLE: &'static str = include_str!("../../../conf.d/beats_output/beats_output.conf");
    type Config = config::BeatsConfig;
    type Shared = ();

    fn parse(toml_text: &str) -> Result<Self::Config, Vec<ConfigProblem>> {
        config::parse(toml_text)
    }

    fn problems(toml_text: &str) -> Vec<ConfigProblem> {
        config::decode(toml_text).into_problems()
    }

    fn listeners_of_text(toml_text: &str) -> Vec<ListenSpec> {
        config::listeners(toml_text)
    }

    fn input(cfg: Self::Config, _source: &str, kit: &Kit<()>) -> Box<dyn Input> {
        let telemetry: Telemetry = kit.telemetry.clone();
        Box::new(BeatsInput::new(cfg, telemetry))
    }
}

#[cfg(test)]
mod tests {
    use dk_proto::rpc::ListenerKind;
    use dk_worker::Family;
    use dk_worker::testing::{instances, spec, worker_config};

    use super::*;

    #[test]
    fn the_sample_validates_and_listens_on_tcp_5044() {
        let tables = instances(BeatsFamily::SAMPLE, INPUT_NAME);
        assert_eq!(tables.len(), 1);
        assert_eq!(BeatsFamily.validate(INPUT_NAME, &tables[0]), Vec::new());
        assert_eq!(
            BeatsFamily.listeners(INPUT_NAME, &tables[0]),
            vec![ListenSpec::new("tcp://0.0.0.0:5044", ListenerKind::Tcp)]
        );
        assert_eq!(BeatsFamily.name(), "beats");
        assert_eq!(BeatsFamily.inputs(), &["beats_output"]);
    }

    #[test]
    fn build_makes_one_input_per_instance_and_names_bad_files() {
        let s = |toml: &str| spec(INPUT_NAME, "conf.d/beats_output/beats_output.conf", toml);
        let ok = worker_config(
            "beats",
            [s("listen = \"tcp://:5044\""), s("listen = \"tcp://:5045\"")],
        );
        assert_eq!(BeatsFamily.build(&ok).map(|v| v.len()).ok(), Some(2));
        let bad = worker_config("beats", [s("listen = \"5044\"")]);
        let problems = BeatsFamily.build(&bad).err().unwrap_or_default();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.starts_with("conf.d/beats_output/"));
    }
}
