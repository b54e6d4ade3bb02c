//! The `logging` family: Datakit's socket logs (`[[inputs.logging]] sockets = [...]`).
//!
//! Each instance receives plain-text log lines on the TCP and UDP sockets it lists (bound by
//! the supervisor) and feeds one `logging` point per line (per joined record on TCP): the
//! measurement is `source`, the fields are `message`, `status = "info"` and
//! `message_length`. File tailing (`logfiles`) is not served yet: such keys are accepted
//! with a warning. The pure parts (splitting, joining, decoding, ANSI stripping) live in
//! their own modules and are fuzzed and benched.

pub mod ansi;
pub mod charset;
pub mod config;
pub mod input;
pub mod metrics;
pub mod multiline;
pub mod points;
pub mod record;
pub mod split;
pub mod status;

use std::sync::Arc;

use dk_proto::rpc::ListenerKind;
use dk_worker::{ConfigProblem, Input, Kit, ListenSpec, SingleInput};

use crate::config::{LoggingConfig, Proto};
use crate::input::{INPUT_NAME, LoggingInput};
use crate::metrics::Metrics;

/// The `logging` input family.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoggingFamily;

impl SingleInput for LoggingFamily {
    const FAMILY: &'static str = "logging";
    const INPUT: &'static str = INPUT_NAME;
    /// The sample config (`conf.d/log/logging.conf`).
    const SAMPLE: &'static str = include_str!("../../../conf.d/log/logging.conf");
    type Config = LoggingConfig;
    type Shared = Arc<Metrics>;
    /// Instances share nothing but the worker's counters: a reload keeps the unchanged ones
    /// running with their connections.
    const PER_INSTANCE: bool = true;

    fn parse(toml_text: &str) -> Result<LoggingConfig, Vec<ConfigProblem>> {
        config::parse(toml_text)
    }

    fn problems(toml_text: &str) -> Vec<ConfigProblem> {
        config::decode(toml_text).into_problems()
    }

    fn listeners_of(cfg: &LoggingConfig) -> Vec<ListenSpec> {
        cfg.sockets
            .iter()
            .map(|s| {
                let kind = match s.proto {
                    Proto::Tcp => ListenerKind::Tcp,
                    Proto::Udp => ListenerKind::Udp,
                };
                ListenSpec::new(s.address.clone(), kind)
            })
            .collect()
    }

    fn input(cfg: LoggingConfig, _source: &str, kit: &Kit<Arc<Metrics>>) -> Box<dyn Input> {
        Box::new(LoggingInput::new(
            cfg,
            kit.shared.clone(),
            kit.telemetry.clone(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use dk_proto::rpc::InputSpec;
    use dk_worker::Family;
    use dk_worker::testing::{instances, keys, worker_config};

    use super::*;

    fn spec(toml: &str) -> InputSpec {
        dk_worker::testing::spec(INPUT_NAME, "conf.d/log/logging.conf", toml)
    }

    #[test]
    fn family_names_its_input_and_sample() {
        let f = LoggingFamily;
        assert_eq!(f.name(), "logging");
        assert_eq!(f.inputs(), &["logging"]);
        assert_eq!(f.samples().len(), 1);
        assert!(f.samples()[0].1.contains("[[inputs.logging]]"));
    }

    #[test]
    fn sample_listens_on_tcp_9530_and_udp_9531() {
        let tables = instances(LoggingFamily::SAMPLE, INPUT_NAME);
        assert_eq!(tables.len(), 1);
        assert_eq!(LoggingFamily.validate("logging", &tables[0]), Vec::new());
        assert_eq!(
            LoggingFamily.listeners("logging", &tables[0]),
            vec![
                ListenSpec::new("tcp://0.0.0.0:9530", ListenerKind::Tcp),
                ListenSpec::new("udp://0.0.0.0:9531", ListenerKind::Udp),
            ]
        );
        let cfg = config::parse(&tables[0]).expect("valid");
        assert_eq!(cfg.source, "default");
        assert!(cfg.auto_multiline);
        assert!(cfg.warnings().is_empty(), "{:?}", cfg.warnings());
    }

    #[test]
    fn validate_lists_every_problem_and_refuses_other_inputs() {
        let problems = LoggingFamily.validate(
            "logging",
            "sockets = [\"tcp://:1\", \"sctp://:2\", \"udp://:0\"]\ncharacter_encoding = \"koi8\"",
        );
        assert_eq!(
            keys(&problems),
            vec!["character_encoding", "sockets[1]", "sockets[2]"]
        );
        assert_eq!(LoggingFamily.validate("tailf", "").len(), 1);
        assert!(LoggingFamily.listeners("logging", "sockets = 1").is_empty());
    }

    #[test]
    fn logfiles_alone_is_valid_and_listens_on_nothing() {
        let toml = "logfiles = [\"/var/log/syslog\"]";
        assert_eq!(LoggingFamily.validate("logging", toml), Vec::new());
        assert!(LoggingFamily.listeners("logging", toml).is_empty());
    }

    #[test]
    fn build_makes_one_input_per_instance_and_names_the_file_in_problems() {
        let config = worker_config(
            "logging",
            [spec("sockets = [\"tcp://:1\"]"), spec("source = \"b\"")],
        );
        let inputs = LoggingFamily
            .build(&config)
            .map_err(|p| format!("{p:?}"))
            .expect("builds");
        assert_eq!(inputs.len(), 2);
        let bad = worker_config("logging", [spec("sockets = [\"x\"]")]);
        let Err(problems) = LoggingFamily.build(&bad) else {
            panic!("bad config must not build");
        };
        assert!(problems[0].message.starts_with("conf.d/log/logging.conf: "));
    }
}
