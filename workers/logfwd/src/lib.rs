//! The `logfwd` family: Datakit's `logfwdserver` input, the WebSocket server (TCP 9533,
//! path `/logfwd`) the logfwd sidecar sends its log lines to, one JSON message per frame.
//!
//! Pure parts: [`ws`] (the upgrade, frames, caps), [`message`] (a message to a logging
//! point), [`config`]; the socket lives in `input`, on the kit's TCP serving.

pub mod config;
mod input;
pub mod message;
pub mod ws;

use dk_worker::{ConfigProblem, Input, Kit, ListenSpec, SingleInput, Telemetry};

pub use crate::input::{CLOSE_GRACE, INPUT_NAME, LogfwdInput};

/// The `logfwd` input family.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogfwdFamily;

impl SingleInput for LogfwdFamily {
    const FAMILY: &'static str = "logfwd";
    const INPUT: &'static str = INPUT_NAME;
    /// The sample config (`conf.d/log/logfwdserver.conf`: Datakit's catalog is `log`).
    const SAMPLE: &'static str = include_str!("../../../conf.d/log/logfwdserver.conf");
    type Config = config::LogfwdConfig;
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
        Box::new(LogfwdInput::new(cfg, telemetry))
    }
}

#[cfg(test)]
mod tests {
    use dk_proto::rpc::ListenerKind;
    use dk_worker::Family;
    use dk_worker::testing::{instances, spec, worker_config};

    use super::*;

    #[test]
    fn the_sample_validates_and_listens_on_tcp_9533() {
        let tables = instances(LogfwdFamily::SAMPLE, INPUT_NAME);
        assert_eq!(tables.len(), 1);
        assert_eq!(LogfwdFamily.validate(INPUT_NAME, &tables[0]), Vec::new());
        assert_eq!(
            LogfwdFamily.listeners(INPUT_NAME, &tables[0]),
            vec![ListenSpec::new("tcp://0.0.0.0:9533", ListenerKind::Tcp)]
        );
        assert_eq!(LogfwdFamily.name(), "logfwd");
        assert_eq!(LogfwdFamily.inputs(), &["logfwdserver"]);
    }

    #[test]
    fn build_names_a_bad_file() {
        let s = |toml: &str| spec(INPUT_NAME, "conf.d/log/logfwdserver.conf", toml);
        let ok = worker_config("logfwd", [s("address = \"0.0.0.0:9533\"")]);
        assert_eq!(LogfwdFamily.build(&ok).map(|v| v.len()).ok(), Some(1));
        let bad = worker_config("logfwd", [s("address = \"9533\"")]);
        let problems = LogfwdFamily.build(&bad).err().unwrap_or_default();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.starts_with("conf.d/log/"));
    }
}
